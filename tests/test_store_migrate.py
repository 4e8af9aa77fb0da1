"""Stores written by stepbench's schema version 1 open after the schema bump: a writable open backs the file up
beside it and migrates it in one transaction; a read-only open migrates nothing and still reads it; values
never change. The version-1 store is made here with version 1's own DDL and INSERTs, copied as data."""

from __future__ import annotations

import contextlib
import hashlib
import io
import json
from datetime import datetime
from pathlib import Path

import duckdb
import pytest

import bench
from bench import store_migrate
from bench.cli import main
from bench.outputs import Output
from bench.store import SCHEMA_VERSION, ResultStore, StoreError, outputs

# bench/store.py's DDL at schema version 1 (git 8fd1e7e), verbatim.
V1_DDL = """
CREATE TABLE IF NOT EXISTS schema_version (version INTEGER NOT NULL);
CREATE TABLE IF NOT EXISTS runs (
    run_id VARCHAR PRIMARY KEY, suite VARCHAR, suite_path VARCHAR, suite_sha256 VARCHAR,
    started TIMESTAMP, finished TIMESTAMP, status VARCHAR, environment JSON);
CREATE TABLE IF NOT EXISTS cells (
    key VARCHAR PRIMARY KEY, run_id VARCHAR, suite VARCHAR, model_id VARCHAR, adapter VARCHAR, family VARCHAR,
    dataset VARCHAR, steps INTEGER, cfg DOUBLE, solver VARCHAR, seed INTEGER, plan VARCHAR, n INTEGER,
    status VARCHAR NOT NULL, error VARCHAR, config JSON, provenance JSON, seconds DOUBLE, finished TIMESTAMP);
CREATE TABLE IF NOT EXISTS metrics (
    key VARCHAR NOT NULL, metric VARCHAR NOT NULL, value DOUBLE, source VARCHAR, source_version VARCHAR,
    options JSON, PRIMARY KEY (key, metric));
CREATE TABLE IF NOT EXISTS timings (
    key VARCHAR NOT NULL, name VARCHAR NOT NULL, value DOUBLE, unit VARCHAR, PRIMARY KEY (key, name));
CREATE TABLE IF NOT EXISTS samples (
    key VARCHAR NOT NULL, sample_id INTEGER NOT NULL, label INTEGER, png BLOB, PRIMARY KEY (key, sample_id));
"""
# (metric, value, source) rows of two version-1 cells; "third_party" is a name version 1 did not ship
V1_ROWS = {
    "k1": [("fid", 12.5, "fid_is_kid"), ("is", 3.25, "fid_is_kid"), ("is_std", 0.1, "fid_is_kid"),
           ("kid", 0.02, "fid_is_kid"), ("precision", 0.7, "fid_is_kid"), ("recall", 0.6, "fid_is_kid"),
           ("clip_score", 27.0, "clip_score"), ("clip_score_ci_low", 26.0, "clip_score"),
           ("clip_score/class/3", 28.0, "clip_score"), ("pickscore", 19.5, "pickscore"),
           ("third_party", 4.0, "plugin")],
    "k2": [("fid", 20.0, "fid_is_kid"), ("fd_dinov2", 300.0, "fd_dinov2")],
}


def make_v1_store(path: Path) -> Path:
    """A store as stepbench at schema version 1 wrote it (its DDL; its INSERT statements' column order)."""
    con = duckdb.connect(str(path))
    con.execute("BEGIN")
    con.execute(V1_DDL)
    con.execute("INSERT INTO schema_version VALUES (?)", [1])
    con.execute("COMMIT")
    for i, (key, rows) in enumerate(V1_ROWS.items()):
        con.execute("INSERT INTO cells (key, run_id, suite, model_id, adapter, family, dataset, steps, cfg, solver, "
                    "seed, plan, n, status, error, config, provenance, seconds, finished) VALUES "
                    "(?, 'r', 'old', 'm', 'toy', 'flow', 'd', ?, 1.0, NULL, 42, 'per_class:1', 10, 'ok', NULL, "
                    "'{}', '{}', 1.0, ?)", [key, i + 1, datetime(2024, 1, 1 + i)])
        for name, v, src in rows:
            con.execute("INSERT INTO metrics VALUES (?, ?, ?, ?, ?, ?)", [key, name, v, src, f"{src}-2",
                                                                          json.dumps({"batch_size": 64})])
        con.execute("INSERT INTO timings VALUES (?, 'nfe', 1.0, 'evals/image')", [key])
    con.close()
    return path


def sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def raw(path: Path, sql: str) -> list[tuple]:
    con = duckdb.connect(str(path), read_only=True)
    try:
        return con.execute(sql).fetchall()
    finally:
        con.close()


def v1_values(path: Path) -> list[tuple]:
    return raw(path, "SELECT key, metric, value, source, source_version, options FROM metrics ORDER BY key, metric")


def test_a_writable_open_backs_up_then_migrates_in_place(tmp_path):
    db = make_v1_store(tmp_path / "bench.duckdb")
    before, values = sha(db), v1_values(db)
    with ResultStore(db) as st:
        assert st.version == SCHEMA_VERSION == 2 and st.backup == tmp_path / "bench.duckdb.v1-backup"
    backup = tmp_path / "bench.duckdb.v1-backup"
    assert sha(backup) == before                                      # a byte copy of the version-1 file
    assert raw(backup, "SELECT version FROM schema_version") == [(1,)] and v1_values(backup) == values
    assert raw(db, "SELECT version FROM schema_version") == [(2,)]
    assert v1_values(db) == values                                    # no value, source or option changed
    rows = {r[0]: r[1:] for r in raw(db, "SELECT metric, higher_is_better, label, unit, fmt, seq FROM metrics "
                                         "WHERE key = 'k1'")}
    assert rows["fid"] == (False, "FID", "", ".4g", 0) and rows["is"][:2] == (True, "IS")
    assert rows["is_std"][:2] == (None, "IS std") and rows["precision"][:2] == (True, "Precision")
    assert rows["clip_score/class/3"][:2] == (None, "CLIP Score per class")
    assert rows["third_party"] == (None, None, None, None, None)       # unknown to version 1: no direction
    assert raw(db, "SELECT higher_is_better, label FROM metrics WHERE metric = 'fd_dinov2'") == [(False, "FD-DINOv2")]
    with ResultStore(db) as st:                                       # now a version-2 store like any other
        assert st.version == 2 and st.backup is None
        st.write("k3", {"suite": "old", "model_id": "m", "dataset": "d", "steps": 3, "status": "ok"},
                 {"fid": (9.0, "fid_is_kid", "v", {}, Output("fid", False, "FID"))}, {})
    assert list((tmp_path).glob("*backup*")) == [backup]
    df = bench.load(db)
    assert df.set_index("key").loc["k1", "fid"] == 12.5 and df.set_index("key").loc["k3", "fid"] == 9.0


def test_outputs_of_a_migrated_store_and_bench_show(tmp_path):
    db = make_v1_store(tmp_path / "bench.duckdb")
    ResultStore(db).close()
    out = outputs(db).set_index("metric")
    assert "clip_score/class/3" not in out.index
    assert list(out.index[:4]) == ["fid", "is", "is_std", "kid"]       # version 1's declaration order
    assert out.loc["third_party", "higher_is_better"] is None and out.index[-1] == "third_party"
    buf = io.StringIO()
    with contextlib.redirect_stdout(buf):
        assert main(["show", "--db", str(db)]) == 0
    header = buf.getvalue().splitlines()[0].split()
    for name in ("fid", "is", "kid", "precision", "recall", "clip_score", "pickscore", "fd_dinov2", "mmhm"):
        assert name in header, name
    assert "third_party" not in header and "is_std" not in header     # not ranked: not a show column
    assert header.index("fid") < header.index("kid") < header.index("clip_score") < header.index("fd_dinov2")


def test_a_read_only_open_migrates_nothing_and_reads_version_1(tmp_path):
    db = make_v1_store(tmp_path / "bench.duckdb")
    before = sha(db)
    with ResultStore(db, read_only=True) as st:
        assert st.version == 1 and st.backup is None
        frame = outputs(st)
    assert sha(db) == before and not list(tmp_path.glob("*backup*"))
    got = frame.set_index("metric")
    assert got.loc["fid", "higher_is_better"] is False and got.loc["fid", "label"] == "FID"
    assert got.loc["recall", "higher_is_better"] is True and got.loc["third_party", "higher_is_better"] is None
    ResultStore(db).close()                                           # the same answer once migrated
    assert outputs(db).drop(columns="seq").equals(frame.drop(columns="seq"))
    assert bench.load(tmp_path / "bench.duckdb.v1-backup")["fid"].tolist() == [12.5, 20.0]


def test_a_failed_migration_leaves_the_store_at_version_1(tmp_path, monkeypatch):
    db = make_v1_store(tmp_path / "bench.duckdb")
    bad = Output("recall", "maybe", "Recall")          # not a boolean: the UPDATE fails after earlier ones ran
    monkeypatch.setattr(store_migrate, "V1_OUTPUTS", (*store_migrate.V1_OUTPUTS[:3], bad))
    with pytest.raises(StoreError, match="cannot migrate the store from schema version 1 to 2.*unchanged"):
        ResultStore(db)
    assert raw(db, "SELECT version FROM schema_version") == [(1,)]
    cols = [r[0] for r in raw(db, "SELECT column_name FROM information_schema.columns WHERE table_name = 'metrics'")]
    assert cols == ["key", "metric", "value", "source", "source_version", "options"]
    monkeypatch.undo()
    with ResultStore(db) as st:                         # a later open migrates, keeping the first backup
        assert st.version == 2 and st.backup == tmp_path / "bench.duckdb.v1-backup-2"
    assert sha(tmp_path / "bench.duckdb.v1-backup") == sha(tmp_path / "bench.duckdb.v1-backup-2")


def test_newer_versions_are_still_refused(tmp_path):
    db = make_v1_store(tmp_path / "bench.duckdb")
    con = duckdb.connect(str(db))
    con.execute("UPDATE schema_version SET version = 3")
    con.close()
    for ro in (False, True):
        with pytest.raises(StoreError, match="schema version 3, this stepbench reads version 2; refusing to read "
                                             "or write it: written by a newer stepbench; upgrade stepbench"):
            ResultStore(db, read_only=ro)
    assert not list(tmp_path.glob("*backup*"))


def test_write_records_each_output_beside_its_value(tmp_path):
    db = tmp_path / "b.duckdb"
    with ResultStore(db) as st:
        st.write("k", {"suite": "s", "model_id": "m", "status": "ok"}, {
            "my_metric": (0.5, "plugin", "p-1", {"a": 1}, Output("my_metric", True, "My Metric", "bits", ".2f")),
            "fid": (3.0, "fid_is_kid", "v", {}),        # a version-1 style 4-tuple: version 1's meaning of "fid"
            "odd": (1.0, "plugin", "p-1", {})}, {})       # ... and of a name it did not know: none
        with pytest.raises(TypeError, match="fifth item must be a bench.outputs.Output"):
            st.write("k2", {"suite": "s", "status": "ok"}, {"x": (1.0, "s", "v", {}, {"higher": True})}, {})
        assert st.status("k2") is None
    assert raw(db, "SELECT metric, higher_is_better, label, unit, fmt, seq FROM metrics ORDER BY seq") == [
        ("my_metric", True, "My Metric", "bits", ".2f", 0), ("fid", False, "FID", "", ".4g", 1),
        ("odd", None, None, None, None, 2)]
    assert list(outputs(db)["metric"]) == ["my_metric", "fid", "odd"]


def test_temp_names_are_unique_per_host_process_and_call(tmp_path):
    import os
    import socket

    from bench.tempfiles import temp_name
    names = {temp_name(tmp_path / "x.json") for _ in range(50)}
    assert len(names) == 50                                   # a random token: unique even in one process
    one = next(iter(names))
    assert one.parent == tmp_path and one.name.startswith(f".x.json.{socket.gethostname()}.{os.getpid()}.")
