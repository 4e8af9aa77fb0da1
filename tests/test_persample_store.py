"""Per-sample scores in the store (`sample_scores`, `bench.persample`): each image's CLIP Score is stored, equal to
the accumulator's own per-image score, and their mean is the stored clip_score; a re-run replaces them; `bench merge`
carries them (and kept features); a store of the previous release (no table) opens, reads as empty and gains the
table on its first write. `PerSampleAccumulator.sorted_state` orders the merged rows by sample id."""

from __future__ import annotations

import duckdb
import pytest
import torch

import bench.store
from bench import features, persample
from bench.cell import CellSpec
from bench.engine import sorted_state
from bench.merge import merge
from bench.metrics.base import PerSampleAccumulator
from bench.metrics.clip_score import ClipScore, PickScore
from bench.metrics.image_reward import ImageReward
from bench.runner import Runner
from bench.store import DDL, SCHEMA_VERSION, ResultStore
from bench.suite import Suite

# the toy generator (tests/toy_extractor's Inception stand-in) with the mini world's tiny CLIP: 30 samples a cell
SUITE = """
suite: persample
seed: 42
batch_size: 16
samples: {{plan: per_class, n: 3}}
keep_samples: 1
keep_features: {keep}
timing: {{enabled: false}}
datasets:
{datasets}
metrics:
  fid_is_kid: {{feature_extractor: toy-extractor, kid_subset_size: 10, kid_subsets: 5}}
  clip_score: {{backend: mini, model: clip, batch_size: 16}}
models:
  - {{id: toy, adapter: toy, steps: {steps}, cfg: [1.0]}}
"""
VAL = "  - {id: mini-val, options: {size: 60}}"


def suite(keep: bool = False, steps: str = "[1, 2]", datasets: str = VAL) -> Suite:
    return Suite.parse(SUITE.format(keep=str(keep).lower(), steps=steps, datasets=datasets), "persample.yaml")


def run(db, keep: bool = False, **kw) -> Runner:
    runner = Runner(suite(keep, **{k: v for k, v in kw.items() if k in ("steps", "datasets")}), db=db,
                    progress=False, **{k: v for k, v in kw.items() if k not in ("steps", "datasets")})
    s = runner.run()
    assert (s.failed, s.exit_code) == (0, 0), s.failures
    return runner


def test_per_sample_is_declared_by_the_score_metrics():
    assert ClipScore.per_sample == {"score": "clip_score"} and PickScore.per_sample == {"score": "pickscore"}
    assert ImageReward.per_sample == {"score": "image_reward"}
    from bench.metrics.fid_is_kid import FidIsKid
    assert FidIsKid.per_sample == {}


def test_sorted_state_orders_rows_by_sample_id_and_rebuilds_the_result():
    acc = PerSampleAccumulator(lambda im, y, p: {"f": im.float().mean(1, keepdim=True), "s": im[:, 0].double()},
                               lambda rows, y: {"m": float((rows["f"][:, 0] * torch.arange(len(y))).sum())})
    ids = torch.tensor([5, 1, 4, 0, 3, 2])
    images = torch.arange(12).reshape(6, 2)
    acc.update(images[:3], ids[:3] % 2, [""] * 3, ids[:3])
    acc.update(images[3:], ids[3:] % 2, [""] * 3, ids[3:])
    st = acc.sorted_state()
    assert st["ids"].tolist() == [0, 1, 2, 3, 4, 5] and st["labels"].tolist() == [0, 1, 0, 1, 0, 1]
    assert st["rows"]["s"].tolist() == [6.0, 2.0, 10.0, 8.0, 4.0, 0.0] and st["rows"]["s"].dtype == torch.float64
    fresh = PerSampleAccumulator(None, acc._finalize)
    fresh.add_state(features.as_add_state(st))
    assert fresh.result() == acc.result()
    dup = PerSampleAccumulator(None, None)
    dup.add_state(acc.state())
    dup.add_state(acc.state())
    with pytest.raises(ValueError, match="duplicate sample ids"):
        dup.sorted_state()


def test_stored_rows_are_the_accumulators_scores_and_their_mean_is_clip_score(tmp_path):
    db = tmp_path / "b.duckdb"
    runner = run(db)
    df = bench.store.load(db)
    assert len(df) == 2
    cells = {c.steps: c for c in runner.cells()}
    for _, row in df.iterrows():
        sc = persample.scores(db, row["key"])
        assert list(sc.columns) == ["sample_id", "metric", "value"] and set(sc["metric"]) == {"clip_score"}
        assert sc["sample_id"].tolist() == list(range(30))          # sorted by sample id, one row per image
        values = torch.tensor(sc["value"].to_numpy())
        assert float(values.mean()) == row["clip_score"]             # the stored mean is the rows' mean, exactly
        # the accumulator's own per-image scores of the same cell, computed again
        cs = CellSpec(cells[row["steps"]], row["key"], "")
        shard = runner.engine.run_shard(cs, 0, None, with_latency=False)
        state = sorted_state([shard.states["clip_score"]])
        assert torch.equal(state["rows"]["score"], values) and state["ids"].tolist() == list(range(30))
    assert persample.scores(db, "no-such-key").empty
    both = persample.many(db)
    assert len(both) == 60 and list(both.columns) == ["key", "sample_id", "metric", "value"]


def test_overwrite_replaces_the_rows(tmp_path):
    db = tmp_path / "b.duckdb"
    run(db)
    run(db, overwrite="always")
    with ResultStore(db, read_only=True) as st:
        n = st.con.execute("SELECT count(*), count(DISTINCT (key, sample_id)) FROM sample_scores").fetchone()
    assert n == (60, 60)


def previous_release_store(path):
    """A store as the previous release wrote it: schema version 2 without ``sample_scores`` (its DDL)."""
    con = duckdb.connect(str(path))
    con.execute(DDL)
    con.execute("INSERT INTO schema_version VALUES (?)", [SCHEMA_VERSION])
    con.close()
    return path


def test_a_previous_release_store_opens_reads_empty_and_gains_the_table(tmp_path):
    db = previous_release_store(tmp_path / "old.duckdb")
    with ResultStore(db, read_only=True) as st:
        assert not persample.has_table(st.con)
        assert persample.scores(st, "k").empty and persample.many(st.con).empty
    assert bench.store.load(db).empty
    run(db)                                           # a writable open adds the table; the run writes rows
    with ResultStore(db, read_only=True) as st:
        assert persample.has_table(st.con) and len(persample.many(st)) == 60
    from tests.test_store_migrate import make_v1_store
    v1 = make_v1_store(tmp_path / "v1.duckdb")
    assert persample.scores(v1, "k1").empty           # read-only: migrates nothing, reads no rows
    with ResultStore(v1) as st:                       # writable: migrated, and the table is there
        assert persample.has_table(st.con) and persample.scores(st, "k1").empty


def test_merge_carries_sample_scores_and_features(tmp_path):
    (tmp_path / "a").mkdir()
    a, out = tmp_path / "a" / "part.duckdb", tmp_path / "out" / "merged.duckdb"
    run(a, keep=True)
    old = previous_release_store(tmp_path / "old.duckdb")          # an input without the table: merged fine
    report = merge(out, [a, old])
    assert report.inputs[0].copied == 2 and report.unresolved == 0
    assert persample.many(out).equals(persample.many(a))
    for key in bench.store.load(a)["key"]:
        assert features.available(features.root_for(out), key) == ["clip_score", "fid_is_kid"]
        for m in ("clip_score", "fid_is_kid"):
            assert features.path_for(features.root_for(out), key, m).read_bytes() == \
                features.path_for(features.root_for(a), key, m).read_bytes()
    again = merge(out, [a])                                       # identical: kept once
    assert again.inputs[0].identical == 2 and len(persample.many(out)) == 60
