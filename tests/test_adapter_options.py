"""Every registered adapter's options are checked at ``bench validate``: a misspelt key and a wrong-typed value
exit 2 naming ``models[i].options.<key>``. The loop runs over the registry, so a new adapter is covered without
an edit here; so are the metrics and dataset sources. Validated options (defaults filled in) make the cell key."""

from __future__ import annotations

import contextlib
import io

import pytest
import yaml

from bench import registry
from bench.cli import main
from bench.options import OptionsError
from bench.suite import Suite

CANDIDATES = ({"a": {"b": 1}}, [[1, 2]], "not-a-number", 12345, 1.5, True, None)


def cli(*args):
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        code = main(list(args))
    return code, out.getvalue(), err.getvalue()


def suite_with(adapter: str, options: dict, index: int = 1) -> str:
    cls = registry.resolve("model adapter", adapter)
    models = [{"id": "first", "adapter": "toy", "steps": [1], "cfg": [1.0]}]
    m = {"id": "m", "adapter": adapter, "options": options}
    if cls.sweeps:
        m.update(steps=[1], cfg=[1.0])
    models.insert(index, m)
    return yaml.safe_dump({"suite": "opts", "datasets": [{"id": "mini-val", "options": {"size": 10}}],
                           "metrics": {}, "models": models})


def wrong_value(model, key: str):
    """A value of the wrong type for ``key`` (the first candidate the Options model refuses)."""
    for v in CANDIDATES:
        try:
            model.model_validate({key: v})
        except Exception:
            return v
    pytest.fail(f"{model.__name__}.{key} accepts every candidate value")


@pytest.mark.parametrize("name", registry.MODELS.names())
def test_a_misspelt_and_a_wrong_typed_option_exit_2_naming_the_key(name, tmp_path):
    cls = registry.resolve("model adapter", name)
    fields = list(cls.Options.model_fields)
    typo = (fields[0][:-1] + fields[0][-1] * 2) if fields else "zzz"
    path = tmp_path / "s.yaml"
    path.write_text(suite_with(name, {typo: 1}))
    code, out, err = cli("validate", str(path))
    assert code == 2 and out == "" and "Traceback" not in err, (name, err)
    assert f"error: {path}: models[1].options.{typo}: unknown option" in err, err
    if fields:
        assert f"did you mean {fields[0]!r}" in err
        key = fields[0]
        path.write_text(suite_with(name, {key: wrong_value(cls.Options, key)}))
        code, out, err = cli("validate", str(path))
        assert code == 2 and out == "" and f"error: {path}: models[1].options.{key}: " in err, (name, err)


@pytest.mark.parametrize("name", registry.MODELS.names())
def test_defaults_spelt_out_validate_to_the_same_options(name):
    cls = registry.resolve("model adapter", name)
    filled = cls.validate_options({})
    assert cls.validate_options(filled) == filled          # idempotent: a stored cell's options validate to themselves
    with pytest.raises(OptionsError):
        cls.validate_options({"surely_not_an_option": 1})


@pytest.mark.parametrize("kind", ["metric", "dataset"])
def test_metrics_and_datasets_refuse_unknown_options_too(kind):
    for name in registry.KINDS[kind].names():
        cls = registry.resolve(kind, name)
        with pytest.raises(OptionsError) as e:
            cls.validate_options({"surely_not_an_option": 1})
        assert "surely_not_an_option" in [k for k, _ in e.value.problems], name


def test_the_cell_key_uses_validated_options():
    text = suite_with("toy", {}, index=0)
    spelt = suite_with("toy", registry.resolve("model adapter", "toy").validate_options({}), index=0)
    a, b = Suite.parse(text, "a.yaml").expand()[0], Suite.parse(spelt, "b.yaml").expand()[0]
    other = Suite.parse(suite_with("toy", {"resolution": 8}, index=0), "c.yaml").expand()[0]
    args = dict(adapter_version="v", weights_id="w", dataset_fingerprint="d", metric_versions={})
    assert a.model.options == b.model.options and a.key(**args) == b.key(**args)
    assert other.key(**args) != a.key(**args)
