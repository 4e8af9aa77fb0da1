"""The feature store (`bench.features`, suite ``keep_features: true``): one safetensors file per cell key and
metric beside the store, the accumulator's rows exactly (dtype kept), sorted by sample id, with metadata; written
only when the suite asks, never left behind by a failed store write, kept by a resume and rewritten by
``--overwrite always``; a metric recomputed from them equals the stored value."""

from __future__ import annotations

import duckdb
import pytest
import torch

import bench.store
from bench import features
from bench.metrics.base import PerSampleAccumulator
from bench.store import ResultStore, StoreError
from tests.test_persample_store import run


def test_save_load_round_trip_is_exact_and_atomic(tmp_path):
    state = {"rows": {"f": torch.randn(7, 3), "s": torch.randn(7, dtype=torch.float64)},
             "ids": torch.arange(7), "labels": torch.tensor([0, 1, 2, 0, 1, 2, 0])}
    path = features.save(tmp_path, "k" * 64, "m", state, {"version_key": "m-1", "options": {"a": 1}})
    assert path == tmp_path / ("k" * 64) / "m.safetensors"
    assert [p.name for p in path.parent.iterdir()] == ["m.safetensors"]          # no temp file left
    got, meta = features.load(tmp_path, "k" * 64, "m")
    for name, t in state["rows"].items():
        assert got["rows"][name].dtype == t.dtype and torch.equal(got["rows"][name], t)
    assert torch.equal(got["ids"], state["ids"]) and torch.equal(got["labels"], state["labels"])
    assert meta["version_key"] == "m-1" and meta["options"] == {"a": 1} and meta["n"] == 7
    assert features.available(tmp_path, "k" * 64) == ["m"] and features.available(tmp_path, "other") == []
    with pytest.raises(features.FeaturesError, match="keep_features: true"):
        features.load(tmp_path, "other", "m")
    with pytest.raises(features.FeaturesError):
        features.path_for(tmp_path, "../x", "m")
    features.discard(tmp_path, "k" * 64, ["m"])
    assert not (tmp_path / ("k" * 64)).exists()


def test_features_are_written_only_with_keep_features(tmp_path):
    (tmp_path / "off").mkdir()
    (tmp_path / "on").mkdir()
    off, on = tmp_path / "off" / "b.duckdb", tmp_path / "on" / "b.duckdb"
    run(off)
    assert not features.root_for(off).exists()
    run(on, keep=True)
    df = bench.store.load(on)
    assert bench.store.load(off)[["key", "fid", "kid", "clip_score"]].equals(df[["key", "fid", "kid", "clip_score"]])
    root = features.root_for(on)
    assert sorted(p.name for p in root.iterdir()) == sorted(df["key"])
    for key in df["key"]:
        assert features.available(root, key) == ["clip_score", "fid_is_kid"]
        st, meta = features.load(root, key, "fid_is_kid")
        assert st["ids"].tolist() == list(range(30)) and st["rows"]["fid"].dtype == torch.float32
        assert {"version_key", "options", "dataset_fingerprint"} <= set(meta) and meta["metric"] == "fid_is_kid"
        assert meta["options"]["kid_subsets"] == 5 and meta["cell_key"] == key
        sc, _ = features.load(root, key, "clip_score")
        assert sc["rows"]["score"].dtype == torch.float64


def test_a_metric_recomputed_from_features_equals_the_stored_values(tmp_path):
    db = tmp_path / "b.duckdb"
    runner = run(db, keep=True)
    with ResultStore(db, read_only=True) as st:
        stored = st.frame("SELECT key, metric, value FROM metrics")
    cell = runner.cells()[0]                      # the metrics and dataset of every cell of this suite
    for key in bench.store.load(db)["key"]:
        for name, metric in runner.engine.metrics(cell).items():
            state, _ = features.load(features.root_for(db), key, name)
            acc = metric.accumulator(runner.engine.dataset(cell))
            acc.add_state(features.as_add_state(state))
            want = stored[stored["key"] == key].set_index("metric")["value"]
            got = acc.result()
            assert got and all(want[k] == v for k, v in got.items()), name


def test_a_failed_store_write_leaves_no_features(tmp_path, monkeypatch):
    db, calls = tmp_path / "b.duckdb", []
    real = ResultStore._write_cell

    def flaky(self, *a):
        calls.append(1)
        if len(calls) == 2:
            raise duckdb.IOException("IO Error: No space left on device")
        return real(self, *a)

    monkeypatch.setattr(ResultStore, "_write_cell", flaky)
    with pytest.raises(StoreError, match="No space left"):
        run(db, keep=True)
    monkeypatch.undo()
    stored = list(bench.store.load(db)["key"])
    assert len(stored) == 1
    assert [p.name for p in features.root_for(db).iterdir()] == stored       # the failed cell's files are gone
    assert features.available(features.root_for(db), stored[0]) == ["clip_score", "fid_is_kid"]


def test_a_failed_features_write_stores_no_cell(tmp_path, monkeypatch):
    db = tmp_path / "b.duckdb"
    real = features.save

    def full(root, key, metric, state, meta):
        if metric == "clip_score":                       # the second metric of the suite: fid_is_kid's is saved
            raise OSError(28, "No space left on device")
        return real(root, key, metric, state, meta)

    monkeypatch.setattr(features, "save", full)
    with pytest.raises(StoreError, match="No space left on device"):
        run(db, keep=True)
    assert bench.store.load(db).empty
    assert not any(features.root_for(db).iterdir())            # fid_is_kid's file, saved first, removed again


def test_resume_keeps_features_and_overwrite_rewrites_them(tmp_path, monkeypatch):
    db = tmp_path / "b.duckdb"
    run(db, keep=True)
    root = features.root_for(db)
    files = sorted(root.glob("*/*.safetensors"))
    before = {p: (p.stat().st_mtime_ns, p.read_bytes()) for p in files}
    saves = []
    real = features.save
    monkeypatch.setattr(features, "save", lambda *a: saves.append(a[1:3]) or real(*a))
    runner = run(db, keep=True)
    assert runner.summary.skipped == 2 and saves == []
    assert {p: (p.stat().st_mtime_ns, p.read_bytes()) for p in files} == before
    run(db, keep=True, overwrite="always")
    assert len(saves) == 4 and sorted(root.glob("*/*.safetensors")) == files
    assert all(p.read_bytes() == before[p][1] for p in files)          # the same content, written again


def test_rows_of_a_split_cell_are_sorted_whatever_the_shards(tmp_path):
    from bench.engine import sorted_state
    acc = PerSampleAccumulator(lambda im, y, p: {"f": im.float()}, lambda rows, y: {})
    acc.update(torch.arange(6).reshape(6, 1), torch.zeros(6), [""] * 6, torch.tensor([3, 4, 5, 0, 1, 2]))
    st = acc.state()
    halves = [{"rows": {"f": [st["rows"]["f"][0][i:i + 3]]}, "ids": [st["ids"][0][i:i + 3]],
               "labels": [st["labels"][0][i:i + 3]]} for i in (3, 0)]
    merged = sorted_state(halves)
    assert merged["ids"].tolist() == list(range(6)) and merged["rows"]["f"][:, 0].tolist() == [3, 4, 5, 0, 1, 2]


def test_a_stored_cell_that_fails_when_re_run_loses_its_features(tmp_path, monkeypatch):
    from bench.models.toy import ToyFlow
    db = tmp_path / "b.duckdb"
    run(db, keep=True)
    keys = list(bench.store.load(db)["key"])
    monkeypatch.setattr(ToyFlow, "generate", lambda *a: (_ for _ in ()).throw(RuntimeError("broken now")))
    from bench.runner import Runner
    from tests.test_persample_store import suite
    s = Runner(suite(keep=True), db=db, progress=False, overwrite="always").run()
    assert s.failed == 2
    assert all(features.available(features.root_for(db), k) == [] for k in keys)
