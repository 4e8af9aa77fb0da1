"""Cell-key completeness: every input that changes a cell's numbers changes its key, one at a time, and what must
not change the numbers (batch size, the store's path, progress output) does not change it. A stale cell reused
because its key forgot an input is the classic cache-key failure of evaluation harnesses.

Option-level inputs are checked on the cell (`Cell.key` over its config); content-level inputs (weights bytes,
dataset files, metric weights) through the runner's key, which hashes them."""

from __future__ import annotations

import copy
import os
import time

import numpy as np
import pytest
import yaml
from PIL import Image

from bench import registry
from bench.runner import Runner
from bench.suite import Suite

BASE = {
    "suite": "keys", "seed": 42, "batch_size": 16, "dtype": "float32",
    "samples": {"plan": "per_class", "n": 2},
    "timing": {"warmup": 0, "repeats": 1, "throughput_repeats": 1},
    "datasets": [{"id": "mini-val", "options": {"size": 30}}],
    "metrics": {"fid_is_kid": {"feature_extractor": "toy-extractor", "kid_subset_size": 10, "kid_subsets": 5},
                "clip_score": {"backend": "mini", "model": "clip"}},
    "models": [{"id": "m", "adapter": "mini-sit", "steps": [2], "cfg": [1.5], "solver": ["euler"]}],
}
ARGS = dict(adapter_version="v", weights_id="w", dataset_fingerprint="d", metric_versions={})


def cell_of(doc):
    return Suite.parse(yaml.safe_dump(doc), "k.yaml").expand()[0]


def cell_key(doc) -> str:
    return cell_of(doc).key(**ARGS)


def runner_key(doc, tmp_path) -> str:
    suite = Suite.parse(yaml.safe_dump(doc), "k.yaml")
    cell = suite.expand()[0]
    adapter = registry.resolve("model adapter", cell.model.adapter)()
    return Runner(suite, db=tmp_path / "k.duckdb", progress=False).key(cell, adapter, adapter.weights_id(cell.model))


def changed(value, field):
    """Another valid value of an option (by its type and default)."""
    if isinstance(value, bool):
        return not value
    if isinstance(value, int):
        return value + 1
    if isinstance(value, float):
        return value * 0.5 if 0 < value < 1 else value + 0.5
    if value is None and "float" in str(field.annotation):
        return 0.25
    if value is None and "str" in str(field.annotation):
        return "feat"
    return None


def edits():
    """(what, edit(doc)) for every option-level input of a cell."""
    def at(path, value):
        def edit(doc):
            node = doc
            for p in path[:-1]:
                node = node[p]
            node[path[-1]] = value
        return edit
    out = [
        ("model id", at(("models", 0, "id"), "m2")),
        ("adapter", lambda d: d["models"][0].update(adapter="mini-meanflow", solver=None)),
        ("steps", at(("models", 0, "steps"), [3])),
        ("cfg", at(("models", 0, "cfg"), [2.0])),
        ("solver", at(("models", 0, "solver"), ["heun"])),
        ("seed", at(("seed",), 43)),
        ("plan kind", at(("samples",), {"plan": "uniform", "n": 20})),
        ("plan n", at(("samples", "n"), 3)),
        ("dtype", at(("dtype",), "bfloat16")),
        ("dataset options", at(("datasets", 0, "options", "size"), 31)),
        ("dataset source", at(("datasets", 0), {"id": "mini-val", "source": "mini-v2", "options": {"size": 30}})),
        ("a metric added", lambda d: d["metrics"].update(pickscore={"backend": "mini", "model": "pick"})),
    ]
    for metric in ("fid_is_kid", "clip_score"):
        cls = registry.resolve("metric", metric)
        defaults = cls.validate_options(BASE["metrics"][metric])
        for name, field in cls.Options.model_fields.items():
            new = changed(defaults.get(name, field.default), field)     # keyed-when-set options: not dumped
            if new is not None:
                out.append((f"{metric}.{name}", at(("metrics", metric, name), new)))
    return out


EDITS = edits()


def test_every_option_of_every_metric_is_covered():
    names = {w for w, _ in EDITS}
    for metric in ("fid_is_kid", "clip_score"):
        fields = registry.resolve("metric", metric).Options.model_fields
        missing = [f for f in fields if f"{metric}.{f}" not in names]
        assert missing in ([], ["feature_extractor", "backend", "model"], ["feature_extractor"],
                           ["backend", "model"]), missing       # names of other extractors / backends, below


@pytest.mark.parametrize("what,edit", EDITS, ids=[w.replace(" ", "_") for w, _ in EDITS])
def test_each_input_changes_the_key(what, edit):
    doc = copy.deepcopy(BASE)
    edit(doc)
    assert cell_key(doc) != cell_key(BASE), what


def test_model_options_change_the_key():
    doc = copy.deepcopy(BASE)
    doc["models"][0] = {"id": "m", "adapter": "toy", "steps": [2], "cfg": [1.5]}
    other = copy.deepcopy(doc)
    other["models"][0]["options"] = {"resolution": 8}
    assert cell_key(doc) != cell_key(other)
    spelt = copy.deepcopy(doc)
    spelt["models"][0]["options"] = {"resolution": 16}      # the default, spelt out: the same cell
    assert cell_key(doc) == cell_key(spelt)


def test_prompts_and_class_names_change_the_key(tmp_path):
    root = tmp_path / "folder"
    for c in ("cat", "dog"):
        (root / c).mkdir(parents=True)
        Image.new("RGB", (8, 8), (10, 20, 30)).save(root / c / "a.png")
    doc = copy.deepcopy(BASE)
    doc["datasets"] = [{"id": "f", "source": "imagefolder", "options": {"root": str(root), "resolution": 8}}]
    base = cell_key(doc)
    for opts in ({"prompt_template": "an image of a {class_name}"}, {"classes": ["dog", "cat"]}):
        other = copy.deepcopy(doc)
        other["datasets"][0]["options"].update(opts)
        assert cell_key(other) != base, opts


def test_content_changes_the_key_weights_dataset_files_and_metric_weights(tmp_path):
    npz = tmp_path / "s.npz"
    rng = np.random.default_rng(0)
    np.savez(npz, arr_0=rng.integers(0, 256, (20, 8, 8, 3), dtype=np.uint8))
    root = tmp_path / "folder"
    for c in ("cat", "dog"):
        (root / c).mkdir(parents=True)
        Image.new("RGB", (8, 8), (10, 20, 30)).save(root / c / "a.png")
    w = tmp_path / "extractor.bin"
    w.write_bytes(b"one")
    doc = copy.deepcopy(BASE)
    doc["models"] = [{"id": "s", "adapter": "samples", "weights": str(npz)}]
    doc["datasets"] = [{"id": "f", "source": "imagefolder", "options": {"root": str(root), "resolution": 8,
                                                                         "workers": 0}}]
    doc["samples"] = {"plan": "per_reference"}
    doc["metrics"] = {"fid_is_kid": {"feature_extractor": "toy-extractor", "feature_extractor_weights_path": str(w)}}
    keys = [runner_key(doc, tmp_path)]
    np.savez(npz, arr_0=rng.integers(0, 256, (20, 8, 8, 3), dtype=np.uint8))            # new sample bytes
    keys.append(runner_key(doc, tmp_path))
    time.sleep(0.01)
    Image.new("RGB", (8, 8), (99, 20, 30)).save(root / "dog" / "a.png")                  # a reference image
    keys.append(runner_key(doc, tmp_path))
    w.write_bytes(b"two")                                                                # the metric's weights
    os.utime(w, (time.time() + 5, time.time() + 5))
    keys.append(runner_key(doc, tmp_path))
    assert len(set(keys)) == 4, keys


def test_what_must_not_change_the_key(tmp_path):
    doc = copy.deepcopy(BASE)
    ref = runner_key(doc, tmp_path / "a")
    other = copy.deepcopy(doc)
    other["batch_size"] = 7
    other["keep_samples"] = 3
    other["timing"] = {"warmup": 2, "repeats": 4}
    other["description"] = "another description"
    assert runner_key(other, tmp_path / "b") == ref            # batch size, kept samples, timing, --db
    suite = Suite.parse(yaml.safe_dump(doc), "k.yaml")
    cell = suite.expand()[0]
    adapter = registry.resolve("model adapter", cell.model.adapter)()
    quiet = Runner(suite, db=tmp_path / "c" / "k.duckdb", progress=True, overwrite="always")
    assert quiet.key(cell, adapter, adapter.weights_id(cell.model)) == ref


def test_a_changed_metric_option_reruns_the_cell(tmp_path, toy_suite_text):
    db = tmp_path / "r.duckdb"
    text = toy_suite_text(n=2, steps="[1]", cfg="[1.0]")
    first = Runner(Suite.parse(text, "t.yaml"), db=db, progress=False).run()
    again = Runner(Suite.parse(text, "t.yaml"), db=db, progress=False).run()
    changed_ = Runner(Suite.parse(text.replace("kid_subsets: 10", "kid_subsets: 11"), "t.yaml"), db=db,
                      progress=False).run()
    assert (first.ran, again.ran, again.skipped, changed_.ran, changed_.skipped) == (1, 0, 1, 1, 0)
