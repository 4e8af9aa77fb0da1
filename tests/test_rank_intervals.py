"""Rank intervals (bench.stats.ranks), sample-size curves (bench.stats.samplesize) and their place in the report
(bench.report.ranks): synthetic boards whose order is known, and a tiny mini-world run with kept features."""

import shutil

import numpy as np
import pandas as pd
import pytest

from bench import composite
from bench.stats import paired, ranks, samplesize
from bench.stats.source import CellData, Recompute
from tests.stats_world import mini_store

INPUTS = [composite.COLUMNS[m] for m in composite.METRICS]


def board(spec: dict[str, dict[str, np.ndarray]]):
    """A tidy-like board and its `CellData` from model -> input -> per-sample values (their means: the stored
    values; MMHM over the board as `bench.composite.add_mmhm` computes it)."""
    rows, cells = [], {}
    for i, (model, cols) in enumerate(spec.items()):
        key = f"k{i}".ljust(16, "0")
        row = {"key": key, "model": model, "family": "syn", "status": "ok", "suite": "s", "dataset": "d",
               "steps": 1, "cfg": 1.0, **{c: float(np.mean(v)) for c, v in cols.items()}}
        rows.append(row)
        cells[key] = CellData(key, pd.Series(row), {},
                              scores={c: pd.Series(v, index=np.arange(len(v))) for c, v in cols.items()})
    g = composite.add_mmhm(pd.DataFrame(rows), by=["suite", "dataset"])
    return g, cells, dict(zip(g["model"], g["key"]))


def inputs(rng, fid, is_, clip, pick, n=200, noise=1.0, z=None):
    z = rng.normal(0, 1, n) if z is None else z
    return {"fid": fid + noise * z, "is": is_ + 0.1 * z, "clip_score": clip + noise * z, "pickscore": pick + 0.1 * z}


def test_separated_models_get_single_ranks_and_only_the_best_is_marked():
    rng = np.random.default_rng(0)
    g, cells, picks = board({"good": inputs(rng, 5, 9, 35, 22), "mid": inputs(rng, 20, 6, 30, 20),
                             "bad": inputs(rng, 60, 2, 22, 16)})
    r = ranks.rank_intervals(g, picks, cells, Recompute("unused"), resamples=100).set_index("model")
    assert list(r["rank_text"]) == ["rank 1", "rank 2", "rank 3"]
    assert list(r["tie"]) == ["best", "", ""] and r.attrs["note"] == ""
    assert list(r["value"]) == list(g["mmhm"])                             # point values: the stored MMHM


def test_two_models_within_noise_share_a_rank_interval_and_are_tied():
    rng = np.random.default_rng(1)
    z = rng.normal(0, 1, 300)
    a = inputs(rng, 10, 7, 32, 21, n=300, noise=3.0, z=z)
    b = {k: v + rng.normal(0, 3.0, 300) * 0.5 for k, v in a.items()}      # the same means, independent noise
    g, cells, picks = board({"a": a, "b": b, "far": inputs(rng, 70, 2, 20, 15, n=300)})
    r = ranks.rank_intervals(g, picks, cells, Recompute("unused"), resamples=200, seed=3).set_index("model")
    assert r.loc["a", "rank_text"] == "rank 1-2" and r.loc["b", "rank_text"] == "rank 1-2"
    assert sorted(r.loc[["a", "b"], "tie"]) == ["best", "tie"] and r.loc["far", "tie"] == ""
    assert r.loc["far", "rank_text"] == "rank 3" and r.loc["far", "diff_hi"] < 0


def test_mmhm_per_replicate_recomputes_bounds_and_matches_the_composite_on_the_full_sample():
    rng = np.random.default_rng(2)
    g, cells, _ = board({"a": inputs(rng, 5, 9, 35, 22), "b": inputs(rng, 20, 6, 30, 20),
                         "c": inputs(rng, 40, 3, 25, 18)})
    ids = ranks.common_ids(cells)
    full = ranks.mmhm_replicates(g, cells, Recompute("unused"), np.arange(len(ids))[None], ids)
    assert np.allclose([full[k][0] for k in g["key"]], g["mmhm"], rtol=1e-12)
    idx = paired.draws(len(ids), 20, 0)
    reps = ranks.mmhm_replicates(g, cells, Recompute("unused"), idx, ids)
    best = np.stack([reps[k] for k in g["key"]]).max(axis=0)
    assert np.allclose(best, 4 / sum(1 / (composite.EPS + 1.0) for _ in range(4)))  # each replicate's own bounds


def test_without_material_there_are_point_ranks_only_and_a_note():
    rng = np.random.default_rng(3)
    g, cells, picks = board({"a": inputs(rng, 5, 9, 35, 22), "b": inputs(rng, 20, 6, 30, 20)})
    r = ranks.rank_intervals(g, picks, {}, Recompute("unused"))
    assert r.attrs["note"] == ranks.NO_FEATURES and list(r["rank_text"]) == ["rank 1", "rank 2"]
    assert r["rank_lo"].isna().all()
    only_clip = {k: CellData(k, c.row, {}, scores={"clip_score": c.scores["clip_score"]}) for k, c in cells.items()}
    r = ranks.rank_intervals(g, picks, only_clip, Recompute("unused"))        # MMHM needs all four inputs
    assert r.attrs["note"] == ranks.NO_FEATURES
    r = ranks.rank_intervals(g, picks, only_clip, Recompute("unused"), metric="clip_score", resamples=50)
    assert r.attrs["note"] == "" and list(r["rank_text"]) == ["rank 1", "rank 2"]   # a per-sample metric has them


def test_sample_sizes_are_nested_halvings():
    assert samplesize.sizes_for(500) == [62, 125, 250, 500]
    assert samplesize.sizes_for(60) == [60]
    assert samplesize.sizes_for(30) == [30]


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    return mini_store(tmp_path_factory.mktemp("ranks") / "w", sit_steps="[1, 4]")


def test_report_shows_rank_intervals_and_a_sample_size_plot_from_kept_features(world, tmp_path, monkeypatch):
    import bench
    from bench.report import plots, write_report
    monkeypatch.setattr(plots, "make_plots", lambda *a: ([], []))        # the other figures: not this test's
    df = bench.load(world)
    paths = write_report(df, tmp_path / "rep", db=world)
    md = next(p for p in paths if p.name == "leaderboard.md").read_text()
    assert "Rank interval:" in md and "| mini-sit | " in md and "FID's spread at n=100" in md
    assert any(p.name.startswith("samplesize-mini-val") for p in paths)
    html = next(p for p in paths if p.name == "index.html").read_text()
    assert "Rank intervals (MMHM)" in html


def test_sample_size_rows_end_at_the_stored_fid_and_a_store_without_features_says_so(world, tmp_path):
    import bench
    from bench.report.directions import from_store
    from bench.report.leaderboard import markdown
    from bench.report.ranks import board_stats
    from bench.store import ResultStore
    df = bench.load(world)
    g = df[df["status"] == "ok"]
    with ResultStore(world, read_only=True) as st:
        cells = ranks.board_cells(st.con, world, g)
    s = samplesize.sample_size(g, list(g["key"]), cells, Recompute(world.parent / "cache"), resamples=20)
    assert sorted(s["n"].unique()) == [50, 100] and (s["fid_spread"] > 0).all()
    top = s[s["n"] == 100].set_index("key")
    for k, fid in zip(g["key"], g["fid"]):
        assert top.at[k, "fid"] == pytest.approx(fid, rel=1e-6)
        assert top.at[k, "mmhm"] == pytest.approx(g.set_index("key").at[k, "mmhm"], rel=1e-6)
    bare = tmp_path / "bare" / "bench.duckdb"                            # the same store, no feature folder
    bare.parent.mkdir()
    shutil.copy(world, bare)
    specs = from_store(bare)
    stats = board_stats(bare, df, specs)                                  # what write_report passes on
    md = markdown(df, "tiny-stats", specs, ranks=stats)
    assert "only per-sample metrics (CLIP Score, PickScore: their stored bootstrap intervals) have intervals" in md
    assert "Rank interval:" not in md


def test_min_ranks_are_scipys_min_method_with_failed_replicates_last():
    from scipy.stats import rankdata
    x = np.random.default_rng(0).integers(0, 4, (50, 6)).astype(float)
    x[0, 0] = np.inf
    assert (ranks.min_ranks(x) == rankdata(x, method="min", axis=1)).all()
