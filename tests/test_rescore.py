"""`bench rescore`: set metrics recomputed from kept features, stored as new cells, generating nothing. The suite's
own settings reproduce every stored value exactly (==) under a new key; another KID setting or reference set gives
another key and other values; a cell without features gets one line saying to keep them, and exit 2 when nothing
could be rescored; bad options are one line, exit 2."""

from __future__ import annotations

import json

import pytest

import bench.store
from bench import features, persample
from bench.cli import main
from bench.models.toy import ToyFlow
from bench.rescore import rescore_key
from bench.store import ResultStore
from tests.test_persample_store import SUITE, VAL, run

TWO = VAL + "\n  - {id: mini-v2, options: {size: 60}}"


@pytest.fixture(scope="module")
def kept(tmp_path_factory):
    """A store of two cells (toy, steps 1 and 2, on mini-val) with kept features, and the suite file."""
    d = tmp_path_factory.mktemp("rescore")
    suite = d / "s.yaml"
    suite.write_text(SUITE.format(keep="true", steps="[1, 2]", datasets=VAL))
    run(d / "b.duckdb", keep=True)
    return suite, d / "b.duckdb"


def _no_generation(monkeypatch):
    def refuse(*a, **k):
        raise AssertionError("bench rescore generated or loaded a model")
    monkeypatch.setattr(ToyFlow, "generate", refuse)
    monkeypatch.setattr(ToyFlow, "load", refuse)


def _metrics(db, key) -> dict[str, float]:
    with ResultStore(db, read_only=True) as st:
        return dict(st.con.execute("SELECT metric, value FROM metrics WHERE key = ?", [key]).fetchall())


def _cell(db, key) -> dict:
    with ResultStore(db, read_only=True) as st:
        cur = st.con.execute("SELECT * FROM cells WHERE key = ?", [key])
        return dict(zip([c[0] for c in cur.description], cur.fetchone()))


def _rescored(db) -> dict[str, str]:
    """new key -> source key, of every rescored cell."""
    df = bench.store.load(db, latest=False, rescored=True)
    return dict(df.loc[df["rescored_from"].notna(), ["key", "rescored_from"]].itertuples(index=False))


def test_same_settings_reproduce_every_stored_value_exactly(kept, monkeypatch, capsys):
    suite, db = kept
    sources = list(bench.store.load(db)["key"])
    _no_generation(monkeypatch)
    assert main(["rescore", str(suite), "--db", str(db), "--metrics", "fid_is_kid,clip_score"]) == 0
    out = capsys.readouterr().out
    assert "2 of 2 stored cells rescored" in out
    new = {src: k for k, src in _rescored(db).items()}
    assert sorted(new) == sorted(sources)
    for src, key in new.items():
        assert key != src
        want, got = _metrics(db, src), _metrics(db, key)
        assert got == want and len(got) > 10                 # every row, per-class too: ==, not approx
        assert persample.scores(db, key).equals(persample.scores(db, src))
        prov = json.loads(_cell(db, key)["provenance"])
        assert prov["rescored_from"] == src and src in prov["note"]
        config = json.loads(_cell(db, key)["config"])
        assert config["rescore"]["from"] == src and config["rescore"]["reference"] == "mini-val"
    # the default view shows the generated cells only; rescored cells are points of their own when asked
    assert sorted(bench.store.load(db)["key"]) == sorted(sources)
    assert len(bench.store.load(db, rescored=True)) == 4
    # the same settings again: the same keys (the cells are replaced, not duplicated)
    assert main(["rescore", str(suite), "--db", str(db), "--metrics", "fid_is_kid,clip_score"]) == 0
    assert {src: k for k, src in _rescored(db).items()} == new


def test_other_kid_settings_give_a_new_key_and_kid(kept, monkeypatch):
    suite, db = kept
    src = sorted(bench.store.load(db)["key"])[0]
    base = _metrics(db, src)
    _no_generation(monkeypatch)
    before = set(_rescored(db))
    assert main(["rescore", str(suite), "--db", str(db), "--metrics", "fid_is_kid",
                 "--set", "fid_is_kid.kid_subsets=7", "--set", "fid_is_kid.kid_seed=3"]) == 0
    kid = {k for k, s in _rescored(db).items() if s == src} - before
    assert len(kid) == 1
    kid_key = kid.pop()
    got = _metrics(db, kid_key)
    assert got["fid"] == base["fid"] and got["kid"] != base["kid"] and "clip_score" not in got
    assert json.loads(_cell(db, kid_key)["config"])["metrics"]["fid_is_kid"]["kid_subsets"] == 7
    # the same KID settings again: that cell again (replaced), not a third one
    assert main(["rescore", str(suite), "--db", str(db), "--metrics", "fid_is_kid",
                 "--set", "fid_is_kid.kid_seed=3", "--set", "fid_is_kid.kid_subsets=7"]) == 0
    assert {k for k, s in _rescored(db).items() if s == src} - before == {kid_key}


def test_a_reference_of_the_suite_gives_a_new_key_and_fid(tmp_path, monkeypatch):
    db = tmp_path / "b.duckdb"
    suite = tmp_path / "two.yaml"
    suite.write_text(SUITE.format(keep="true", steps="[1]", datasets=TWO))
    run(db, keep=True, steps="[1]", datasets=TWO)
    df = bench.store.load(db)
    val = df.loc[df["dataset"] == "mini-val", "key"].item()
    _no_generation(monkeypatch)
    assert main(["rescore", str(suite), "--db", str(db), "--metrics", "fid_is_kid", "--reference", "mini-v2"]) == 0
    new = {s: k for k, s in _rescored(db).items()}
    assert len(new) == 2 and new[val] != val
    assert _metrics(db, new[val])["fid"] != _metrics(db, val)["fid"]
    on_v2 = df.loc[df["dataset"] == "mini-v2", "key"].item()       # mini-v2's own cell against mini-v2: unchanged
    got = _metrics(db, new[on_v2])
    assert "fid" in got and got == {k: v for k, v in _metrics(db, on_v2).items() if k in got}
    prov = json.loads(_cell(db, new[val])["provenance"])
    assert prov["reference"]["dataset"] == "mini-v2" and _cell(db, new[val])["dataset"] == "mini-val"
    # naming the cell's own dataset as the reference is no change: the key of no --reference
    assert main(["rescore", str(suite), "--db", str(db), "--metrics", "fid_is_kid"]) == 0
    by_source = {s: sorted(k for k, s2 in _rescored(db).items() if s2 == s) for s in (val, on_v2)}
    assert by_source[on_v2] == [new[on_v2]] and len(by_source[val]) == 2


def test_rescore_key_changes_with_every_input():
    base = rescore_key("a" * 64, {"fid_is_kid": {"kid_subsets": 5}}, {"fid_is_kid": "v"}, "fp")
    assert base != "a" * 64
    assert base == rescore_key("a" * 64, {"fid_is_kid": {"kid_subsets": 5}}, {"fid_is_kid": "v"}, "fp")
    for other in (rescore_key("b" * 64, {"fid_is_kid": {"kid_subsets": 5}}, {"fid_is_kid": "v"}, "fp"),
                  rescore_key("a" * 64, {"fid_is_kid": {"kid_subsets": 6}}, {"fid_is_kid": "v"}, "fp"),
                  rescore_key("a" * 64, {"fid_is_kid": {"kid_subsets": 5}}, {"fid_is_kid": "w"}, "fp"),
                  rescore_key("a" * 64, {"fid_is_kid": {"kid_subsets": 5}}, {"fid_is_kid": "v"}, "fp2")):
        assert other != base


def test_without_features_one_line_per_cell_and_exit_2(tmp_path, capsys):
    db = tmp_path / "b.duckdb"
    suite = tmp_path / "s.yaml"
    suite.write_text(SUITE.format(keep="false", steps="[1, 2]", datasets=VAL))
    run(db)
    assert main(["rescore", str(suite), "--db", str(db), "--metrics", "fid_is_kid"]) == 2
    err = capsys.readouterr().err
    lines = [ln for ln in err.splitlines() if ln.startswith("cannot rescore")]
    assert len(lines) == 2 and all("keep_features: true" in ln and "toy / mini-val / steps=" in ln for ln in lines)
    assert "error: nothing could be rescored" in err and "Traceback" not in err
    # one cell with features (steps 1, run again with keep_features), one without: one rescored, one named; exit 1
    df = bench.store.load(db)
    one = df.loc[df["steps"] == 1, "key"].item()
    run(db, keep=True, overwrite="always", steps="[1]")
    assert features.available(features.root_for(db), one) == ["clip_score", "fid_is_kid"]
    assert main(["rescore", str(suite), "--db", str(db), "--metrics", "fid_is_kid"]) == 1
    err = capsys.readouterr().err
    assert list(_rescored(db).values()) == [one]
    assert len([ln for ln in err.splitlines() if "keep_features: true" in ln and "steps=2" in ln]) == 1


@pytest.mark.parametrize("args, says", [
    (["--metrics", "nope"], "not a metric of suite"),
    (["--metrics", "fid_is_kid", "--set", "fid_is_kid.kid_subsets"], "expected metric.option=value"),
    (["--metrics", "fid_is_kid", "--set", "clip_score.bootstrap=10"], "not among --metrics"),
    (["--metrics", "fid_is_kid", "--set", "fid_is_kid.feature_extractor=x"], "chooses the metric's network"),
    (["--metrics", "fid_is_kid", "--set", "fid_is_kid.kid_subsetz=3"], "kid_subsetz"),
    (["--metrics", "fid_is_kid", "--reference", "no-such-set"], "no-such-set"),
])
def test_bad_input_is_one_line_and_exit_2(kept, capsys, args, says):
    suite, db = kept
    assert main(["rescore", str(suite), "--db", str(db), *args]) == 2
    err = capsys.readouterr().err
    assert says in err and len(err.strip().splitlines()) == 1 and "Traceback" not in err, err


def test_a_missing_store_is_one_line_and_not_created(kept, tmp_path, capsys):
    suite, _ = kept
    db = tmp_path / "typo.duckdb"
    assert main(["rescore", str(suite), "--db", str(db), "--metrics", "fid_is_kid"]) == 2
    assert "no such result store" in capsys.readouterr().err and not db.exists()


def test_features_of_another_metric_version_are_refused_for_that_cell(tmp_path, capsys):
    db = tmp_path / "b.duckdb"
    suite = tmp_path / "s.yaml"
    suite.write_text(SUITE.format(keep="true", steps="[1, 2]", datasets=VAL))
    run(db, keep=True)
    df = bench.store.load(db)
    one = df.loc[df["steps"] == 1, "key"].item()
    state, meta = features.load(features.root_for(db), one, "fid_is_kid")
    features.save(features.root_for(db), one, "fid_is_kid", state, {**meta, "version_key": "fid_is_kid-0|other"})
    assert main(["rescore", str(suite), "--db", str(db), "--metrics", "fid_is_kid"]) == 1
    err = capsys.readouterr().err
    assert "steps=1" in err and "fid_is_kid-0|other" in err and "Traceback" not in err
    assert list(_rescored(db).values()) == [df.loc[df["steps"] == 2, "key"].item()]
