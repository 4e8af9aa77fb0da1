"""The store under contention: a second writer is refused without touching the store, a report reads a consistent
snapshot while another process writes, and stores of another schema version (or not stores at all) are refused
with one line, never misread. Every holder is a real second process."""

from __future__ import annotations

import contextlib
import hashlib
import io
import subprocess
import sys
import time
from pathlib import Path

import duckdb
import pytest

import bench
from bench.cli import main
from bench.report.source import snapshot
from bench.store import SCHEMA_VERSION, ResultStore, StoreError
from tests.conftest import TOY_SUITE

ROOT = Path(__file__).resolve().parent.parent
METRICS = ("fid", "is", "kid", "clip_score", "pickscore")


def cli(*args: str) -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        code = main(list(args))
    return code, out.getvalue(), err.getvalue()


def _row(i: int) -> dict:
    return {"run_id": "holder", "suite": "toy", "model_id": f"m{i}", "adapter": "toy", "family": "flow",
            "dataset": "mini-val", "steps": i, "cfg": 1.0, "seed": 42, "plan": "per_class:1", "n": 10,
            "status": "ok", "config": {"i": i}, "provenance": {"w": "x"}, "seconds": 0.1}


def contents(db: Path) -> dict:
    """Everything in the store, as sorted rows per table."""
    with ResultStore(db, read_only=True) as st:
        return {t: sorted(map(str, st.con.execute(f"SELECT * FROM {t}").fetchall()))
                for t in ("runs", "cells", "metrics", "timings", "samples", "schema_version")}


HOLDER = """
import sys, time
sys.path.insert(0, sys.argv[2])
from bench.store import ResultStore
st = ResultStore(sys.argv[1])
mode = sys.argv[3]
st.con.execute("INSERT INTO runs (run_id, suite, status) VALUES ('holder', 'toy', 'running')")
row = lambda i: {"run_id": "holder", "suite": "toy", "model_id": f"m{i}", "adapter": "toy", "family": "flow",
                 "dataset": "mini-val", "steps": i, "cfg": 1.0, "seed": 42, "plan": "per_class:1", "n": 10,
                 "status": "ok", "config": {"i": i}, "provenance": {"w": "x"}, "seconds": 0.1}
metrics = lambda i: {m: (float(i), "src", "v1", {}) for m in ("fid", "is", "kid", "clip_score", "pickscore")}
timings = {"nfe": (1.0, "evals/image"), "latency_s": (0.01, "s")}
for i in range(1, 4):
    st.write(f"k{i}", row(i), metrics(i), timings)
if mode == "hold":
    print("held", flush=True)
    time.sleep(120)
# mode "write": keep writing one cell per transaction (a big sample blob each, so checkpoints happen) until killed
print("writing", flush=True)
i = 4
while True:
    st.write(f"k{i}", row(i), metrics(i), timings, [(j, j % 10, bytes(2000)) for j in range(20)])
    if i % 25 == 0:
        st.con.execute("CHECKPOINT")
    i += 1
"""


@contextlib.contextmanager
def holder(db: Path, mode: str):
    p = subprocess.Popen([sys.executable, "-c", HOLDER, str(db), str(ROOT), mode], stdout=subprocess.PIPE,
                         stderr=subprocess.PIPE, text=True)
    try:
        line = p.stdout.readline().strip()
        assert line in ("held", "writing"), p.stderr.read()
        yield p
    finally:
        p.kill()
        p.wait()


def _files(db: Path):
    return {f.name: hashlib.sha256(f.read_bytes()).hexdigest() for f in db.parent.glob(db.name + "*")}


# -- two writers ----------------------------------------------------------------------------------------------------
def test_second_bench_run_is_refused_and_touches_nothing(tmp_path):
    db = tmp_path / "results" / "bench.duckdb"
    db.parent.mkdir()
    suite = tmp_path / "toy.yaml"
    suite.write_text(TOY_SUITE.format(n=1, steps="[1]", cfg="[1.0]"))
    ResultStore(db).close()
    with holder(db, "hold"):
        files_before = _files(db)
        code, out, err = cli("run", str(suite), "--db", str(db), "-q")
        assert code == 2, (out, err)
        assert err.strip().count("\n") == 0 and "Traceback" not in err
        assert err.startswith(f"error: {db}: the store is in use by another process"), err
        assert _files(db) == files_before                   # not a byte changed while the holder had it
        assert not (db.parent / "cache").exists()           # nothing written beside it either
    after = contents(db)                                     # the holder's cells, and no run or cell of ours
    assert [r for r in after["runs"]] == [str(("holder", "toy", None, None, None, None, "running", None))]
    assert len(after["cells"]) == 3 and len(after["metrics"]) == 15


# -- a report while a run writes ------------------------------------------------------------------------------------
def _consistent(db: Path) -> int:
    """Cells in a snapshot; every one complete (all metric and timing rows, no orphans). Raises if torn."""
    with ResultStore(db, read_only=True) as st:
        con = st.con
        cells = {r[0] for r in con.execute("SELECT key FROM cells").fetchall()}
        per_cell = dict(con.execute("SELECT key, count(*) FROM metrics GROUP BY key").fetchall())
        timing = dict(con.execute("SELECT key, count(*) FROM timings GROUP BY key").fetchall())
        samples = dict(con.execute("SELECT key, count(*) FROM samples GROUP BY key").fetchall())
    assert set(per_cell) == cells and set(timing) == cells, "rows of a cell without the cell, or the reverse"
    assert all(n == len(METRICS) for n in per_cell.values()) and all(n == 2 for n in timing.values())
    assert all(n == 20 for n in samples.values()) and all(int(k[1:]) >= 4 for k in samples)
    return len(cells)


def test_reports_read_consistent_snapshots_while_another_process_writes(tmp_path):
    db = tmp_path / "bench.duckdb"
    ResultStore(db).close()
    seen, notes, errors = [], [], []
    deadline = time.monotonic() + 60                          # a bound for a loaded machine; idle it takes ~1 s
    with holder(db, "write"):
        while time.monotonic() < deadline and (len(seen) < 6 or seen[-1] <= 3):
            try:
                with snapshot(db, notify=notes.append) as path:
                    assert path != db                         # locked: a copy
                    seen.append(_consistent(path))
                    if len(seen) == 3:                        # the pandas view of a snapshot agrees with its rows
                        df = bench.load(path)
                        assert len(df) == seen[-1] and df["fid"].notna().all()
            except StoreError as e:                          # a copy torn by a checkpoint three times running
                errors.append(str(e))
                assert "no consistent copy could be read" in str(e)
    assert len(seen) >= 6, (seen, errors)
    assert seen == sorted(seen) and seen[-1] > 3             # the writer made progress and no snapshot went back
    assert notes and all("locked by a running writer" in n for n in notes)
    final = _consistent(db)                                  # the store itself: intact after the writer was killed
    assert final >= seen[-1]


def test_cli_report_while_a_writer_holds_the_store(tmp_path):
    db = tmp_path / "bench.duckdb"
    ResultStore(db).close()
    with holder(db, "hold"):
        before = _files(db)
        code, out, err = cli("show", "--db", str(db))
        assert code == 0 and "m1" in out and "m3" in out, err
        assert _files(db) == before


# -- other schema versions and files that are not stores ------------------------------------------------------------
def _versioned(tmp_path: Path, version) -> Path:
    db = tmp_path / f"v{version}.duckdb"
    with ResultStore(db) as st:
        st.write("k1", _row(1), {"fid": (1.0, "src", "v1", {})}, {})
    con = duckdb.connect(str(db))
    if version is None:
        con.execute("DELETE FROM schema_version")
    else:
        con.execute("UPDATE schema_version SET version = ?", [version])
    con.close()
    return db


@pytest.mark.parametrize("version,expect", [
    (0, "schema version 0, this stepbench reads version 2; refusing to read or write it: use the stepbench that "
        "wrote it"),
    (999, "schema version 999, this stepbench reads version 2; refusing to read or write it: written by a newer "
          "stepbench; upgrade stepbench"),
    (None, "no schema version recorded"),
])
def test_other_schema_versions_are_refused_never_misread(tmp_path, version, expect):
    """Version 1 is migrated (tests/test_store_migrate.py); any other version but the current one is refused."""
    assert SCHEMA_VERSION == 2
    db = _versioned(tmp_path, version)
    before = _files(db)
    suite = tmp_path / "toy.yaml"
    suite.write_text(TOY_SUITE.format(n=1, steps="[1]", cfg="[1.0]"))
    for ro in (False, True):
        with pytest.raises(StoreError, match=expect.replace("(", r"\(")):
            ResultStore(db, read_only=ro)
    with pytest.raises(StoreError, match="schema version"):
        bench.load(db)
    for cmd in (["run", str(suite), "--db", str(db), "-q"], ["show", "--db", str(db)], ["ls", "--db", str(db)],
                ["report", "--db", str(db), "--out", str(tmp_path / "rep")],
                ["export", "--db", str(db), "--out", str(tmp_path / "x.csv")]):
        code, out, err = cli(*cmd)
        assert code == 2, (cmd, out, err)
        assert err.startswith(f"error: {db}: ") and expect in err and err.count("\n") == 1, (cmd, err)
    assert _files(db) == before and not (tmp_path / "rep").exists() and not (tmp_path / "x.csv").exists()


@pytest.mark.parametrize("content,expect", [
    (b"", "an empty file"),
    (b"SQLite format 3\x00" + bytes(4080), "a SQLite database"),
    (b"x" * 5000, "no DuckDB header"),
])
def test_files_that_are_not_stores_are_refused(tmp_path, content, expect):
    db = tmp_path / "bench.duckdb"
    db.write_bytes(content)
    for ro in (False, True):
        with pytest.raises(StoreError, match=f"not a stepbench result store \\({expect}\\)"):
            ResultStore(db, read_only=ro)
    code, out, err = cli("show", "--db", str(db))
    assert code == 2 and err.count("\n") == 1 and expect in err
    assert db.read_bytes() == content


def test_a_foreign_duckdb_file_is_not_written(tmp_path):
    db = tmp_path / "other.duckdb"
    con = duckdb.connect(str(db))
    con.execute("CREATE TABLE results (x INT)")
    con.execute("INSERT INTO results VALUES (1)")
    con.close()
    before = _files(db)
    suite = tmp_path / "toy.yaml"
    suite.write_text(TOY_SUITE.format(n=1, steps="[1]", cfg="[1.0]"))
    code, out, err = cli("run", str(suite), "--db", str(db), "-q")
    assert code == 2 and "without a stepbench schema" in err
    assert _files(db) == before
