"""`bench merge` (`bench.merge`) and the SLURM-array workflow it completes.

Four parts of a toy suite run in four concurrent processes (`python -m bench.cli run ... --part i/4`), each with
its own store and one shared `--cache` (concurrent writers of the same reference statistics), and their merge
equals a single run's store. A conflicting duplicate is reported with both provenances and not written unless
--prefer says which wins; an identical one is kept once; merging a store into itself changes nothing; a merge
killed during an input leaves OUT as it was before that input; a schema-1 input is migrated in a copy, a newer
one refused with one line."""

from __future__ import annotations

import hashlib
import os
import shutil
import signal
import subprocess
import sys
from pathlib import Path

import duckdb
import pytest

import bench
from bench import merge as merging
from bench.cli import main
from bench.outputs import Output
from bench.store import ResultStore
from tests.test_store_migrate import make_v1_store

ROOT = Path(__file__).resolve().parent.parent

# bench.load columns that legitimately differ between two runs of the same cells: wall-clock time and the moment
# a cell finished, and the measured timings (generate/score seconds, batch-1 latency, throughput and their
# spreads). Everything else must be equal: keys, config, n, status, every metric, counted NFE, MMHM. Run ids are
# not a bench.load column (a merged store holds the four parts' runs: checked apart).
MEASURED = ["seconds", "finished", "generate_s", "score_s", "latency_s", "latency_iqr_s", "latency_repeats",
            "latency_flagged", "throughput_ips", "throughput_iqr_s"]
TABLE_ORDER = {"runs": "run_id", "cells": "key", "metrics": "key, metric", "timings": "key, name",
               "samples": "key, sample_id", "schema_version": "version"}


def _env() -> dict:
    return {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")]),
            "OMP_NUM_THREADS": "1"}


@pytest.fixture(scope="module")
def runs(tmp_path_factory, request):
    """A single run of a 6-cell toy suite, and its four parts run concurrently with a shared --cache."""
    d = tmp_path_factory.mktemp("parts")
    from tests.conftest import TOY_SUITE
    suite = d / "toy.yaml"
    suite.write_text(TOY_SUITE.format(n=4, steps="[1, 2, 3]", cfg="[1.0, 2.0]"))
    toy = str(ROOT / "tests" / "toy_extractor.py")
    procs = [subprocess.Popen([sys.executable, "-m", "bench.cli", "run", str(suite), "--include", toy, "-q",
                               "--part", f"{i}/4", "--db", str(d / f"part-{i}.duckdb"), "--cache", str(d / "shared")],
                              cwd=ROOT, env=_env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
             for i in range(4)]
    outs = [p.communicate(timeout=600) for p in procs]
    for p, (_, err) in zip(procs, outs):
        assert p.returncode == 0, err[-3000:]
    assert main(["run", str(suite), "--db", str(d / "single.duckdb"), "-q", "--cache", str(d / "own")]) == 0
    return d, [d / f"part-{i}.duckdb" for i in range(4)], d / "single.duckdb", outs


def dump(db: Path) -> dict[str, list[tuple]]:
    """Every row of every table, ordered: what "OUT changed" is measured by."""
    con = duckdb.connect(str(db), read_only=True)
    try:
        return {t: con.execute(f"SELECT * FROM {t} ORDER BY {o}").fetchall() for t, o in TABLE_ORDER.items()}
    finally:
        con.close()


def copy(src: Path, dst: Path) -> Path:
    shutil.copyfile(src, dst)
    return dst


def test_four_parts_in_four_processes_merge_to_the_single_run_store(runs, tmp_path, capsys):
    d, part_dbs, single, outs = runs
    planned = [int(out.split(" cells planned")[0].rsplit(" ", 1)[-1]) for out, _ in outs]
    assert sum(planned) == 6 and all(planned), planned
    shared = list((d / "shared" / "refstats").iterdir())
    assert shared and all(p.suffix == ".safetensors" for p in shared), "entries only, no temporary files left over"
    assert sorted(p.name for p in shared) == sorted(p.name for p in (d / "own" / "refstats").iterdir())
    out = tmp_path / "merged.duckdb"
    assert main(["merge", str(out), *map(str, part_dbs)]) == 0
    printed = capsys.readouterr().out
    assert printed.count("cells copied") == 4 and "in conflict" in printed
    merged, one = bench.load(out), bench.load(single)
    assert set(MEASURED) <= set(one.columns) and list(merged.columns) == list(one.columns)
    a = merged.drop(columns=MEASURED).sort_values("key").reset_index(drop=True)   # tidy's ORDER BY has ties
    b = one.drop(columns=MEASURED).sort_values("key").reset_index(drop=True)
    assert len(a) == 6 and a.equals(b)
    assert merged[MEASURED].notna().all().all(), "each cell's measured timings travel with it"
    m, s = dump(out), dump(single)
    for table in ("metrics", "samples"):                        # long rows (per-class, kept PNGs) all copied
        assert m[table] == s[table] and m[table]
    assert [r[:2] + r[3:] for r in m["timings"] if r[1] in merging.COUNTED] == \
        [r[:2] + r[3:] for r in s["timings"] if r[1] in merging.COUNTED]
    cell_runs = {r[1] for r in m["cells"]}
    assert len(m["runs"]) == 4 and {r[0] for r in m["runs"]} == cell_runs, "the four parts' runs, no other"


def test_merging_again_or_into_itself_changes_nothing(runs, tmp_path, capsys):
    _, part_dbs, single, _ = runs
    out = tmp_path / "m.duckdb"
    merging.merge(out, part_dbs)
    before = dump(out)
    report = merging.merge(out, [*part_dbs, single, out, copy(out, tmp_path / "m-copy.duckdb")])
    assert dump(out) == before
    assert [r.copied + r.replaced for r in report.inputs] == [0] * 7 and not report.conflicts
    assert report.inputs[4].identical == 6, "a re-run of the same cells is an identical duplicate: kept once"
    assert report.inputs[5].note == "is OUT itself: nothing to merge"
    assert report.inputs[6].identical == 6
    mine = copy(single, tmp_path / "s.duckdb")
    before = dump(mine)
    assert main(["merge", str(mine), str(mine)]) == 0 and dump(mine) == before
    capsys.readouterr()


def test_a_merge_killed_during_an_input_leaves_out_as_it_was_before_that_input(runs, tmp_path):
    _, part_dbs, _, _ = runs
    out = tmp_path / "k.duckdb"
    merging.merge(out, part_dbs[:1])
    expected = tmp_path / "expected.duckdb"
    merging.merge(expected, part_dbs[:2])
    # copy_rows runs once per table (cells, metrics, timings, samples) inside an input's transaction: the 6th call
    # is the second input's metrics, after its cells rows were inserted
    code = ("import os, signal, sys; import bench.merge as m; orig = m.copy_rows; calls = []\n"
            "def killing(*a):\n"
            "    calls.append(a)\n"
            "    if len(calls) == 6: os.kill(os.getpid(), signal.SIGKILL)\n"
            "    orig(*a)\n"
            "m.copy_rows = killing; m.merge(sys.argv[1], sys.argv[2:])")
    r = subprocess.run([sys.executable, "-c", code, str(out), *map(str, part_dbs[1:3])], cwd=ROOT, env=_env(),
                       capture_output=True, text=True, timeout=300)
    assert r.returncode == -signal.SIGKILL, r.stderr[-2000:]
    after = dump(out)
    assert after == dump(expected), "the first input committed, the killed one left no row"
    report = merging.merge(out, part_dbs[1:3])                        # the same merge again finishes it
    assert report.inputs[0].identical == len(dump(part_dbs[1])["cells"]) and report.inputs[1].copied > 0
    assert {r[0] for r in dump(out)["cells"]} == {r[0] for p in part_dbs[:3] for r in dump(p)["cells"]}


# -- the rules, on small hand-made stores ---------------------------------------------------------------------
FID = Output("fid", False, "FID")


def store(path: Path, cells: dict[str, tuple], finished: dict[str, str] | None = None, env=None) -> Path:
    """A store with ``key -> (status, fid)`` cells (one run); ``finished``: key -> timestamp to set."""
    with ResultStore(path) as st:
        run = st.begin_run("s", "s.yaml", "sha", env or {"git_sha": "abc1234567890", "device_name": "cpu"})
        for key, (status, fid) in cells.items():
            row = {"run_id": run, "suite": "s", "model_id": "m", "adapter": "toy", "family": "flow", "dataset": "d",
                   "steps": 1, "cfg": 1.0, "seed": 42, "plan": "per_class:1", "n": 10, "status": status,
                   "error": None if status == "ok" else "boom", "config": {}, "provenance": {"device": "cpu"}}
            metrics = {} if fid is None else {"fid": (fid, "fid_is_kid", "1", {}, FID)}
            st.write(key, row, metrics, {"nfe": (1.0, "evals/image"), "latency_s": (0.1 * (fid or 1), "s")},
                     [(0, 3, b"png")])
        for key, when in (finished or {}).items():
            st.con.execute("UPDATE cells SET finished = ?::TIMESTAMP WHERE key = ?", [when, key])
    return path


def fids(db: Path) -> dict[str, tuple]:
    with ResultStore(db, read_only=True) as st:
        rows = st.con.execute("SELECT c.key, c.status, m.value FROM cells c LEFT JOIN metrics m USING (key)").fetchall()
    return {k: (s, v) for k, s, v in rows}


def test_a_conflicting_duplicate_is_reported_with_both_provenances_and_not_written(tmp_path, capsys):
    a = store(tmp_path / "a.duckdb", {"k1": ("ok", 10.0), "k2": ("ok", 5.0)}, {"k1": "2026-01-01 10:00:00"})
    b = store(tmp_path / "b.duckdb", {"k1": ("ok", 11.0), "k3": ("ok", 7.0)}, {"k1": "2026-01-02 10:00:00"},
              env={"git_sha": "fedcba9876543", "device_name": "NVIDIA H200", "part": "3/16"})
    out = tmp_path / "out.duckdb"
    assert main(["merge", str(out), str(a), str(b)]) == 1
    err = capsys.readouterr().err
    line = next(x for x in err.splitlines() if x.startswith("conflict"))
    assert "k1" in line and "fid 10.0 vs 11.0" in line and str(a) in line and str(b) in line
    assert "git abc1234567" in line and "on NVIDIA H200" in line and "part 3/16" in line and "not written" in line
    assert fids(out) == {"k2": ("ok", 5.0), "k3": ("ok", 7.0)}, "neither copy of k1 is written"
    before = dump(out)
    mine = store(tmp_path / "mine.duckdb", {"k1": ("ok", 10.0)})            # OUT has its own copy: it keeps it
    assert main(["merge", str(mine), str(b)]) == 1 and fids(mine)["k1"] == ("ok", 10.0)
    assert main(["merge", str(out), str(a), str(b)]) == 1 and dump(out) == before, "again: still not written"
    capsys.readouterr()


@pytest.mark.parametrize("prefer, kept", [("first", 10.0), ("newest", 11.0)])
def test_prefer_says_which_copy_of_a_conflict_wins(tmp_path, capsys, prefer, kept):
    a = store(tmp_path / "a.duckdb", {"k1": ("ok", 10.0)}, {"k1": "2026-01-01 10:00:00"})
    b = store(tmp_path / "b.duckdb", {"k1": ("ok", 11.0)}, {"k1": "2026-01-02 10:00:00"})
    out = tmp_path / "out.duckdb"
    assert main(["merge", str(out), str(a), str(b), "--prefer", prefer]) == 0
    assert fids(out) == {"k1": ("ok", kept)}
    assert f"(--prefer {prefer})" in capsys.readouterr().out
    rows = dump(out)
    assert [r[2] for r in rows["timings"] if r[1] == "latency_s"] == [pytest.approx(kept / 10)], \
        "the winner's rows travel together"
    assert len(rows["runs"]) == 1 and rows["runs"][0][0] == rows["cells"][0][1]


def test_ok_beats_failed_and_the_newest_failure_is_kept(tmp_path):
    out = store(tmp_path / "out.duckdb", {"k1": ("failed", None), "k2": ("ok", 3.0), "k3": ("failed", None)},
                {"k3": "2026-01-01 00:00:00"})
    inp = store(tmp_path / "in.duckdb", {"k1": ("ok", 4.0), "k2": ("failed", None), "k3": ("failed", None)},
                {"k3": "2026-02-01 00:00:00"})
    report = merging.merge(out, [inp])
    r = report.inputs[0]
    assert (r.replaced, r.superseded, r.copied, r.conflicts) == (2, 1, 0, 0) and not report.conflicts
    assert fids(out) == {"k1": ("ok", 4.0), "k2": ("ok", 3.0), "k3": ("failed", None)}
    with ResultStore(out, read_only=True) as st:
        when = st.frame("SELECT finished FROM cells WHERE key = 'k3'")["finished"][0]
    assert str(when).startswith("2026-02-01")


def test_a_schema_1_input_is_migrated_in_a_copy_and_a_newer_one_refused(tmp_path, capsys):
    v1 = make_v1_store(tmp_path / "old.duckdb")
    sha = hashlib.sha256(v1.read_bytes()).hexdigest()
    out = tmp_path / "out.duckdb"
    assert main(["merge", str(out), str(v1)]) == 0
    assert "(schema 1, migrated in a temporary copy): 2 cells copied" in capsys.readouterr().out
    assert hashlib.sha256(v1.read_bytes()).hexdigest() == sha and sorted(p.name for p in tmp_path.iterdir()) == \
        ["old.duckdb", "out.duckdb"], "the input is never written, no backup or temporary copy left beside it"
    with ResultStore(out, read_only=True) as st:
        rows = st.con.execute("SELECT higher_is_better, label FROM metrics WHERE key = 'k1' AND metric = 'fid'"
                              ).fetchall()
    assert rows == [(False, "FID")], "read through bench.store's migration"
    new = store(tmp_path / "new.duckdb", {"k9": ("ok", 1.0)})
    con = duckdb.connect(str(new))
    con.execute("UPDATE schema_version SET version = 99")
    con.close()
    before = dump(out)
    not_a_store = tmp_path / "notes.duckdb"
    not_a_store.write_text("hello")
    for bad, says in ((new, "schema version 99"), (not_a_store, "not a stepbench result store"),
                      (tmp_path / "none.duckdb", "no such result store")):
        assert main(["merge", str(out), str(v1), str(bad)]) == 2
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and says in err[0] and "Traceback" not in err[0], err
        assert dump(out) == before, "a bad input is refused before OUT is written"
    assert main(["merge", str(tmp_path / "fresh.duckdb"), str(new)]) == 2 and not (tmp_path / "fresh.duckdb").exists()
