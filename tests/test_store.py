import subprocess
import sys

import duckdb
import pytest

import bench
from bench.store import ResultStore, StoreError


def _row(**kw):
    base = {"run_id": "r", "suite": "s", "model_id": "m", "adapter": "toy", "family": "flow", "dataset": "d",
            "steps": 1, "cfg": 1.0, "solver": None, "seed": 0, "plan": "per_class:1", "n": 10, "status": "ok",
            "error": None, "config": {"a": 1}, "provenance": {"w": "x"}, "seconds": 1.0}
    return {**base, **kw}


def test_write_replace_and_tidy_frame(tmp_path):
    db = tmp_path / "b.duckdb"
    with ResultStore(db) as st:
        st.write("k1", _row(), {"fid": (5.0, "fid_is_kid", "v1", {}), "is": (2.0, "fid_is_kid", "v1", {})},
                 {"nfe": (2.0, "evals/image")})
        st.write("k2", _row(steps=2), {"fid": (3.0, "fid_is_kid", "v1", {})}, {})
        assert st.has("k1") and not st.has("k3")
        st.write("k1", _row(), {"fid": (4.0, "fid_is_kid", "v1", {})}, {})   # replaces all rows of k1
        assert st.frame("SELECT count(*) AS n FROM metrics WHERE key = 'k1'")["n"][0] == 1
    df = bench.load(db)
    assert list(df["key"]) == ["k1", "k2"]
    assert df.set_index("key").loc["k1", "fid"] == 4.0 and df.set_index("key").loc["k2", "fid"] == 3.0
    assert "is" not in df.columns and "mmhm" in df   # the replaced cell lost its IS row


def test_a_failing_write_leaves_no_partial_cell(tmp_path):
    with ResultStore(tmp_path / "b.duckdb") as st:
        with pytest.raises(Exception):
            st.write("k1", _row(), {"fid": (object(), "x", "v", {})}, {})   # float(object()) fails mid-write
        assert st.status("k1") is None
        assert st.frame("SELECT count(*) AS n FROM cells")["n"][0] == 0


def test_foreign_or_future_databases_are_refused(tmp_path):
    other = tmp_path / "other.duckdb"
    con = duckdb.connect(str(other))
    con.execute("CREATE TABLE t (x INT)")
    con.close()
    with pytest.raises(StoreError, match="without a stepbench schema"):
        ResultStore(other)
    future = tmp_path / "future.duckdb"
    ResultStore(future).close()
    con = duckdb.connect(str(future))
    con.execute("UPDATE schema_version SET version = 99")
    con.close()
    with pytest.raises(StoreError, match="schema version 99"):
        ResultStore(future)
    with pytest.raises(StoreError, match="no such result store"):
        ResultStore(tmp_path / "missing.duckdb", read_only=True)


def test_second_writer_gets_a_clear_lock_message(tmp_path):
    db = tmp_path / "b.duckdb"
    ResultStore(db).close()
    holder = subprocess.Popen([sys.executable, "-c", f"import duckdb, time; c = duckdb.connect({str(db)!r}); "
                               "print('held', flush=True); time.sleep(30)"], stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "held"
        with pytest.raises(StoreError, match="in use by another process"):
            ResultStore(db)
    finally:
        holder.kill()
        holder.wait()


def test_a_new_measurement_of_a_sweep_point_supersedes_the_old_one(tmp_path):
    db = tmp_path / "b.duckdb"
    with ResultStore(db) as st:
        st.write("old", _row(), {"fid": (9.0, "fid_is_kid", "v1", {})}, {})
        st.write("other", _row(steps=2), {"fid": (7.0, "fid_is_kid", "v1", {})}, {})
        st.write("new", _row(), {"fid": (5.0, "fid_is_kid", "v2", {})}, {})   # same point, new weights/code
    df = bench.load(db)
    assert sorted(df["key"]) == ["new", "other"] and df.set_index("key").loc["new", "fid"] == 5.0
    assert sorted(bench.load(db, latest=False)["key"]) == ["new", "old", "other"]


def test_per_class_rows_stay_long_and_out_of_the_wide_table(tmp_path):
    db = tmp_path / "b.duckdb"
    rows = {"clip_score": (25.0, "clip_score", "v", {})}
    rows.update({f"clip_score/class/{c}": (20.0 + c, "clip_score", "v", {}) for c in range(1000)})
    with ResultStore(db) as st:
        st.write("k1", _row(), rows, {})
    df = bench.load(db)
    assert df.loc[0, "clip_score"] == 25.0 and not any("/class/" in c for c in df.columns)
    pc = bench.per_class(db)
    assert len(pc) == 1000 and list(pc["class"][:3]) == [0, 1, 2] and set(pc["metric"]) == {"clip_score"}
    assert pc.set_index("class").loc[999, "value"] == 1019.0


def _threads(st: ResultStore) -> int:
    return st.con.execute("SELECT current_setting('threads')").fetchone()[0]


def test_a_one_thread_writer_stores_the_same_rows_and_readers_keep_the_default(tmp_path):
    """`WRITER_THREADS` only schedules the writer's statements differently: every table's rows, each float
    included, equal those the default connection writes; a later default open has DuckDB's own thread count."""
    import numpy as np

    from bench.outputs import Output
    from bench.store import CELL_TABLES, WRITER_THREADS
    rng = np.random.default_rng(0)
    fid = Output("fid", False, "FID")
    scores = {"clip_score": (list(range(40)), rng.random(40))}
    dumps, default = [], None
    for name, threads in (("default", None), ("writer", WRITER_THREADS)):
        with ResultStore(tmp_path / f"{name}.duckdb", threads=threads) as st:
            if threads is not None:
                assert _threads(st) == WRITER_THREADS
            for k in range(3):
                st.write(f"k{k}", _row(steps=k), {"fid": (1 / 3 + k, "fid_is_kid", "v1", {"a": k}, fid)},
                         {"nfe": (0.1 * k, "evals/image")}, [(0, 1, b"png%d" % k)], scores)
        with ResultStore(tmp_path / f"{name}.duckdb", read_only=True) as st:
            default = _threads(st)
            dumps.append({t: st.con.execute(f"SELECT * EXCLUDE (finished) FROM {t} ORDER BY ALL").fetchall()
                          if t == "cells" else st.con.execute(f"SELECT * FROM {t} ORDER BY ALL").fetchall()
                          for t in (*CELL_TABLES, "cells")})
    assert default == duckdb.connect().execute("SELECT current_setting('threads')").fetchone()[0]
    assert dumps[0] == dumps[1] and len(dumps[0]["sample_scores"]) == 120


def test_a_run_writes_through_a_one_thread_connection(tmp_path, toy_suite_text, monkeypatch):
    from bench import runner as runner_mod
    from bench.store import WRITER_THREADS
    from tests.test_runner import _suite
    seen = []

    class Spy(ResultStore):
        def begin_run(self, *a, **kw):
            seen.append(_threads(self))
            return super().begin_run(*a, **kw)

    monkeypatch.setattr(runner_mod, "ResultStore", Spy)
    runner_mod.Runner(_suite(toy_suite_text()), db=tmp_path / "b.duckdb", progress=False).run()
    assert seen == [WRITER_THREADS]
