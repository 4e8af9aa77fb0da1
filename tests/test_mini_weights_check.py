"""`mini_training.check.compare`: a retrained copy is judged tensor by tensor and by its training record."""

from __future__ import annotations

import shutil

import torch

from bench.mini import weights as W
from mini_training.check import compare


def _save(d, name="net", value=1.0, seed=1, config=None):
    W.save(name, {"w": torch.full((3, 2), value), "b": torch.zeros(2)}, config or {"width": 2}, seed=seed, steps=5,
           losses={"final": 0.1}, train_seconds=1.0, directory=d)


def test_identical_copies_agree_even_when_timings_differ(tmp_path):
    a, b = tmp_path / "a", tmp_path / "b"
    _save(a)
    _save(b)
    m = W.read_manifest(b)
    m["net"]["train_seconds"] = 99.0                   # timings are not part of the recipe's output
    (b / W.MANIFEST).write_text(__import__("json").dumps(m))
    assert compare(a, b) == {"net": []}


def test_a_changed_tensor_a_changed_seed_and_a_missing_entry_are_named(tmp_path):
    a, b = tmp_path / "a", tmp_path / "b"
    _save(a)
    _save(a, name="other")
    _save(b, value=1.0 + 2 ** -9, seed=2)              # two fp16 ulps from the shipped value
    got = compare(a, b)
    assert got["other"] == ["not retrained"]
    assert any("seed" in d for d in got["net"]) and any("1 of 2 tensors differ (first: w)" in d for d in got["net"])


def test_the_shipped_weights_compare_equal_to_a_copy_of_themselves(tmp_path):
    shutil.copytree(W.WEIGHTS_DIR, tmp_path / "w")
    got = compare(W.WEIGHTS_DIR, tmp_path / "w")
    assert set(got) == {"classifier", "clip", "pick", "sit", "meanflow", "distill"} and not any(got.values())


def test_timings_inside_the_config_are_not_part_of_the_record(tmp_path):
    a, b = tmp_path / "a", tmp_path / "b"
    _save(a, config={"width": 2, "teacher_seconds": 95.9})
    _save(b, config={"width": 2, "teacher_seconds": 49.2})
    assert compare(a, b) == {"net": []}
    _save(b, config={"width": 3, "teacher_seconds": 49.2})
    assert compare(a, b)["net"] == ["manifest config: shipped {'width': 2}, fresh {'width': 3}"]
