import subprocess
import sys
from pathlib import Path

import pytest

from bench.suite import Suite, SuiteError

ROOT = Path(__file__).resolve().parent.parent


def test_valid_suite_expands_to_the_full_grid(toy_suite_text):
    s = Suite.parse(toy_suite_text(steps="[1, 2, 4]", cfg="[1.0, 1.5]"), "toy.yaml")
    cells = s.expand()
    assert len(cells) == s.count() == 6
    assert {(c.steps, c.cfg) for c in cells} == {(a, b) for a in (1, 2, 4) for b in (1.0, 1.5)}
    assert len({c.config()["steps"] for c in cells}) == 3


def test_cell_keys_change_with_every_input(toy_suite_text):
    from dataclasses import replace
    c = Suite.parse(toy_suite_text(), "toy.yaml").expand()[0]
    base = dict(adapter_version="v1", weights_id="w", dataset_fingerprint="d", metric_versions={"m": "1"})
    k = c.key(**base)
    assert k == c.key(**base)
    assert k != c.key(**{**base, "weights_id": "w2"})
    assert k != c.key(**{**base, "adapter_version": "v2"})
    assert k != c.key(**{**base, "dataset_fingerprint": "d2"})
    assert k != c.key(**{**base, "metric_versions": {"m": "2"}})
    assert k != replace(c, cfg=7.0).key(**base)
    assert k != replace(c, seed=1).key(**base)
    assert k == replace(c, batch_size=999).key(**base), "batch size must not change the key"


BAD = [
    ("stepz: [1]", "models[0]", "unknown key (did you mean 'steps'?)"),
    ("steps: one", "models[0].steps", "got 'one'"),
    ("adapter: mini-sitt", "models[0].adapter", "did you mean 'mini-sit'?"),
    ("steps: []", "models[0].steps", "at least one"),
    ("cfg: [.nan]", "models[0].cfg", "finite"),
    ("steps: [0]", "models[0].steps", ">= 1"),
]


@pytest.mark.parametrize("line,key,expect", BAD)
def test_malformed_model_entries_name_file_and_key(toy_suite_text, line, key, expect):
    text = toy_suite_text().replace("    adapter: toy", "    adapter: toy\n    " + line) if not line.startswith(
        ("steps", "cfg", "adapter")) else None
    if text is None:
        field = line.split(":")[0]
        lines = [ln for ln in toy_suite_text().splitlines() if not ln.strip().startswith(field + ":")]
        text = "\n".join(lines).replace("    adapter: toy", "    adapter: toy\n    " + line) \
            if field != "adapter" else "\n".join(lines).replace("    steps:", "    " + line + "\n    steps:")
    with pytest.raises(SuiteError) as e:
        Suite.parse(text, "suites/bad.yaml")
    msg = str(e.value)
    assert msg.startswith("suites/bad.yaml: ") and key in msg and expect in msg, msg
    assert "\n" not in msg


def test_top_level_and_metric_errors(toy_suite_text):
    with pytest.raises(SuiteError, match=r"bad.yaml: batch_sise: unknown key \(did you mean 'batch_size'\?\)"):
        Suite.parse(toy_suite_text() + "batch_sise: 4\n", "bad.yaml")
    with pytest.raises(SuiteError, match=r"metrics.fid_is_kid.kid_subset: unknown option \(did you mean"):
        Suite.parse(toy_suite_text().replace("kid_subset_size", "kid_subset"), "bad.yaml")
    with pytest.raises(SuiteError, match=r"metrics.fid: unknown metric 'fid'; did you mean 'fid_is_kid'"):
        Suite.parse(toy_suite_text().replace("fid_is_kid:", "fid:"), "bad.yaml")
    with pytest.raises(SuiteError, match=r"datasets\[0\].id: unknown dataset 'mini-vall'"):
        Suite.parse(toy_suite_text().replace("id: mini-val", "id: mini-vall"), "bad.yaml")
    with pytest.raises(SuiteError, match=r"duplicate model ids"):
        t = toy_suite_text()
        Suite.parse(t + t[t.index("  - id: toy"):], "bad.yaml")
    with pytest.raises(SuiteError, match=r"invalid YAML at line"):
        Suite.parse("suite: [unclosed\n", "bad.yaml")
    with pytest.raises(SuiteError, match=r"could not determine a constructor|invalid YAML"):
        Suite.parse("suite: !!python/object/apply:os.system ['echo hacked']\n", "bad.yaml")


def test_real_adapter_takes_no_steps(toy_suite_text):
    text = toy_suite_text() + "  - id: real\n    adapter: real\n"
    assert Suite.parse(text, "s.yaml").count() == 5
    with pytest.raises(SuiteError, match=r"models\[1\].steps: adapter 'real' takes no steps"):
        Suite.parse(text + "    steps: [1]\n", "s.yaml")


def test_cli_validate_exit_codes(tmp_path, toy_suite_text, capsys):
    from types import SimpleNamespace

    from bench.cli import main

    def _cli(*args):
        code = main(list(args))
        out = capsys.readouterr()
        return SimpleNamespace(returncode=code, stdout=out.out, stderr=out.err)

    good = tmp_path / "good.yaml"
    good.write_text(toy_suite_text())
    r = _cli("validate", str(good))
    assert r.returncode == 0, r.stderr
    # 40 images per cell; NFE per image 1, 2 (cfg), 2 (steps), 4 (both)
    assert "4 cells" in r.stdout and "total images: 160" in r.stdout and "total declared NFE: 360" in r.stdout
    for i, bad_text in enumerate([toy_suite_text().replace("steps:", "stepz:"),
                                  toy_suite_text().replace("adapter: toy", "adapter: nope"),
                                  toy_suite_text().replace("steps: [1, 2]", "steps: []"),
                                  "suite: x\n\xff"]):
        bad = tmp_path / f"bad{i}.yaml"
        bad.write_bytes(bad_text.encode("latin-1") if i == 3 else bad_text.encode())
        r = _cli("validate", str(bad))
        assert r.returncode == 2, (r.stdout, r.stderr)
        err = r.stderr.strip()
        assert err.startswith(f"error: {bad}: ") and "\n" not in err and "Traceback" not in err, err


def test_console_entry_exits_2_without_traceback(tmp_path, toy_suite_text):
    bad = tmp_path / "bad.yaml"
    bad.write_text(toy_suite_text().replace("cfg:", "cgf:"))
    r = subprocess.run([sys.executable, "-m", "bench.cli", "validate", str(bad)], capture_output=True, text=True,
                       cwd=ROOT)
    assert r.returncode == 2 and "Traceback" not in r.stderr
    assert r.stderr.strip() == f"error: {bad}: models[0].cgf: unknown key (did you mean 'cfg'?)"


def test_default_mini_suite_is_valid_and_covers_the_protocol():
    s = Suite.load(ROOT / "suites" / "mini.yaml")
    cells = s.expand()
    assert len(cells) == 135
    assert {c.dataset for c in cells} == {"mini-val", "mini-v2", "mini-ood"}
    assert set(s.spec.metrics) == {"fid_is_kid", "clip_score", "pickscore"}
    adapters = {c.model.adapter for c in cells}
    assert adapters == {"mini-sit", "mini-meanflow", "mini-distill", "real"}
    sit_steps = {c.steps for c in cells if c.model.adapter == "mini-sit"}
    assert sit_steps == {1, 2, 4, 8, 16} and len({c.cfg for c in cells if c.cfg is not None}) >= 3


def test_every_error_of_a_file_is_reported_at_once_one_line_each(tmp_path):
    import contextlib
    import io

    from bench.cli import main
    text = """
suite: many
modles: []
datasets: [{id: mini-val, options: {size: 0}}]
metrics: {fid_is_kid: {feature_extractr: mini-classifier}}
"""
    path = tmp_path / "many.yaml"
    path.write_text(text)
    err = io.StringIO()
    with contextlib.redirect_stderr(err), contextlib.redirect_stdout(io.StringIO()):
        code = main(["validate", str(path)])
    lines = err.getvalue().splitlines()
    assert code == 2 and all(ln.startswith(f"error: {path}: ") for ln in lines), lines
    text_ = "\n".join(lines)
    assert "modles: unknown key (did you mean 'models'?)" in text_          # named although models is missing
    assert "models: required key is missing" in text_
    assert "datasets[0].options.size:" in text_
    assert "metrics.fid_is_kid.feature_extractr: unknown option (did you mean 'feature_extractor'?)" in text_
    assert len(lines) == 4, lines


def test_two_bad_models_give_two_lines(toy_suite_text):
    bad = toy_suite_text().replace("    cfg: [1.0, 2.0]\n", "    cfg: [1.0, 2.0]\n    options: {resolutoin: 8}\n")
    bad += "  - {id: two, adapter: toy, steps: [1], cfg: [1.0], options: {init_seed: '3'}}\n"
    with pytest.raises(SuiteError) as e:
        Suite.parse(bad, "two.yaml")
    assert len(e.value.lines) == 2, e.value.lines
    assert e.value.lines[0].startswith("two.yaml: models[0].options.resolutoin: unknown option (did you mean")
    assert e.value.lines[1].startswith("two.yaml: models[1].options.init_seed: ")
