"""`bench compare` and `bench.compare`: cell references (keys, prefixes, model:steps:cfg@dataset), one-line errors
with exit code 2, per-metric verdicts by stored direction, and a tiny mini-world run with kept features."""

import json
import shutil

import numpy as np
import pytest

import bench
from bench.cli import main
from bench.stats.compare import NO_FEATURES
from bench.stats.source import CellRefError
from tests.stats_world import mini_store, synthetic_store


@pytest.fixture(scope="module")
def syn(tmp_path_factory):
    rng = np.random.default_rng(0)
    z = rng.normal(0, 3, 200)
    cells = {("m-a", 1, 1.0): {"clip_score": 30 + z + rng.normal(0, 0.3, 200), "pickscore": 20 + z},
             ("m-a", 2, 1.0): {"clip_score": 28 + z + rng.normal(0, 0.3, 200), "pickscore": 20 + z},
             ("m-b", 1, 1.0): {"clip_score": 30 + z, "pickscore": 20 + z}}
    db = tmp_path_factory.mktemp("syn") / "b.duckdb"
    keys = synthetic_store(db, cells, fid={k: 10.0 + i for i, k in enumerate(cells)})
    return db, keys


def test_references_by_key_prefix_and_model_steps_cfg(syn):
    db, keys = syn
    k = keys[("m-a", 2, 1.0)]
    for ref in (k, k[:6], "m-a:2:1@syn-val", "m-a:2:1.0", "m-a:2:1"):
        df = bench.compare(db, ref, "m-b:1:1@syn-val", resamples=50)
        assert df.attrs["a"] == k, ref


def test_a_clear_difference_is_a_verdict_by_direction_and_pairing_is_exact(syn):
    db, keys = syn
    df = bench.compare(db, "m-a:1:1", "m-a:2:1", resamples=300, seed=3).set_index("metric")
    clip = df.loc["clip_score"]
    assert clip["ci_low"] > 0 and clip["verdict"] == "A better" and clip["p_value"] == pytest.approx(1 / 301)
    assert clip["diff"] == pytest.approx(2.0, abs=0.15)
    pick = df.loc["pickscore"]                              # identical per-sample rows: exactly 0, a tie
    assert (pick["diff"], pick["ci_low"], pick["ci_high"], pick["verdict"]) == (0.0, 0.0, 0.0, "tie")
    assert (clip["resamples"], clip["seed"], clip["n"]) == (300, 3, 200)
    fid = df.loc["fid"]                                     # stored, no features: value and difference only
    assert fid["diff"] == pytest.approx(-1.0) and np.isnan(fid["ci_low"]) and fid["note"] == NO_FEATURES


def test_cli_prints_values_interval_p_and_the_sample_size_line(syn, capsys):
    db, _ = syn
    assert main(["compare", "--db", str(db), "m-a:1:1", "m-a:2:1", "--resamples", "100", "--seed", "9"]) == 0
    out = capsys.readouterr().out
    assert "CLIP Score ↑" in out and "A better" in out and "100 resamples, seed 9" in out
    assert "centred-difference" in out and "spread at n=200" in out and "keep_features" in out
    assert main(["compare", "--db", str(db), "m-a:1:1", "m-b:1:1", "--json", "--resamples", "20"]) == 0
    doc = json.loads(capsys.readouterr().out)
    assert doc["resamples"] == 20 and {r["metric"] for r in doc["rows"]} == {"clip_score", "pickscore", "fid"}


@pytest.mark.parametrize("a, b, says", [
    ("m-c:1:1", "m-a:1:1", "did you mean m-b:1:1@syn-val"),
    ("0", "m-a:1:1", "unique key prefix"),
    ("m-a:1", "m-a:1:1", "expected model:steps:cfg@dataset"),
    ("m-a:x:1", "m-a:1:1", "must be numbers"),
    ("m-a:1:1@nope", "m-a:1:1", "no ok cell matches"),
])
def test_bad_references_are_one_line_and_exit_2(syn, capsys, a, b, says):
    db, _ = syn
    assert main(["compare", "--db", str(db), a, b]) == 2
    err = capsys.readouterr().err.strip()
    assert says in err and len(err.splitlines()) == 1 and "Traceback" not in err


def test_ambiguous_references_and_a_missing_store_are_one_line(syn, tmp_path, capsys):
    db = tmp_path / "two.duckdb"
    cells = {("m", 1, 1.0): {"clip_score": np.arange(10.0)}, ("m", 2, 1.0): {"clip_score": np.arange(10.0)}}
    synthetic_store(db, cells, dataset="d1", prefix="zzzz")
    synthetic_store(db, cells, dataset="d2", prefix="yyyy")
    with pytest.raises(CellRefError, match="2 cells match .in syn/d1, syn/d2.; add @dataset"):
        bench.compare(db, "m:1:1", "m:2:1@d1", resamples=5)
    with pytest.raises(CellRefError, match="2 keys start with it"):
        bench.compare(db, "zzzz", "m:2:1@d1", resamples=5)
    assert bench.compare(db, "m:1:1@d2", "zzzz01", resamples=5).attrs["label_b"] == "m:2:1@d1"
    assert main(["compare", "--db", str(tmp_path / "none.duckdb"), "a", "b"]) == 2
    assert "no such result store" in capsys.readouterr().err
    with pytest.raises(SystemExit):                          # argparse: resamples must be a whole number >= 1
        main(["compare", "--db", str(db), "m:1:1@d1", "m:1:1@d2", "--resamples", "0"])


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    return mini_store(tmp_path_factory.mktemp("cmp") / "w")


def test_mini_world_with_kept_features_fid_interval_and_stored_values(world):
    db = world
    df = bench.compare(db, "mini-meanflow:1:1@mini-val", "mini-sit:1:1@mini-val", resamples=200)
    t = bench.load(db)
    a, b = (t[t["key"] == df.attrs[k]].iloc[0] for k in ("a", "b"))
    d = df.set_index("metric")
    for m in ("fid", "is", "clip_score", "pickscore"):         # values: the stored ones (full-sample draw)
        assert d.at[m, "value_a"] == pytest.approx(a[m], rel=1e-9) and d.at[m, "value_b"] == pytest.approx(b[m],
                                                                                                           rel=1e-9)
    assert d.at["fid", "basis"].startswith("set (features") and np.isfinite(d.at["fid", "ci_low"])
    assert d.at["fid", "ci_high"] < 0 and d.at["fid", "verdict"] == "A better"   # meanflow's FID is far lower
    assert "FID's spread at n=100" in df.attrs["spread_line"] and df.attrs["features"]
    same = bench.compare(db, "mini-sit:1:1", "mini-sit:1:1", resamples=30).set_index("metric")
    assert (same["diff"] == 0).all() and (same.loc[["fid", "is"], "ci_high"] == 0).all()


def test_an_unreadable_features_file_is_one_line_and_exit_2(world, tmp_path, capsys):
    shutil.copytree(world.parent, tmp_path / "w")
    db = tmp_path / "w" / world.name
    key = bench.compare(db, "mini-sit:1:1", "mini-sit:1:1", resamples=2).attrs["a"]
    (db.parent / "features" / key / "fid_is_kid.safetensors").write_bytes(b"not a safetensors file")
    assert main(["compare", "--db", str(db), key, "mini-meanflow:1:1", "--resamples", "5"]) == 2
    err = capsys.readouterr().err.strip()
    assert "unreadable features file" in err and len(err.splitlines()) == 1


def test_exact_recomputes_set_values_by_the_metric_itself_on_the_same_draws(world):
    db = world
    a, b = "mini-meanflow:1:1@mini-val", "mini-sit:1:1@mini-val"
    fast = bench.compare(db, a, b, resamples=8, seed=1).set_index("metric")
    exact = bench.compare(db, a, b, resamples=8, seed=1, exact=True).set_index("metric")
    assert exact.at["fid", "basis"] == "set (features, metric accumulator)"
    for c in ("ci_low", "ci_high"):                            # the same draws, the metric's own FID and IS
        assert exact.loc[["fid", "is"], c].to_numpy() == pytest.approx(fast.loc[["fid", "is"], c].to_numpy(),
                                                                      rel=1e-6)
    assert np.isfinite(exact.at["kid", "ci_low"]) and np.isnan(fast.at["kid", "ci_low"])   # KID: --exact only
    assert exact.loc["clip_score"].equals(fast.loc["clip_score"])          # per-sample means: unchanged
