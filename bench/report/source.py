"""Reading the store for a report without ever taking a writer's lock.

A report opens the store read-only. While a ``bench run`` holds the file (DuckDB's lock refuses even a reader
then), the report copies the file and its write-ahead log to a temporary folder and reads the copy, so a report
neither waits for, nor blocks, nor can corrupt a running sweep. Connections are held only while rows are read.
"""

from __future__ import annotations

import contextlib
import json
import shutil
import tempfile
import time
from pathlib import Path
from typing import Iterator

import duckdb
import pandas as pd

from bench.store import ResultStore, StoreError


def _locked(path: Path) -> bool:
    try:
        duckdb.connect(str(path), read_only=True).close()
    except duckdb.IOException as e:
        return "lock" in str(e).lower()
    except duckdb.Error:
        return False        # not ours to diagnose: ResultStore gives the one-line error
    return False


def _copy(path: Path, into: Path) -> Path:
    dst = into / path.name
    shutil.copyfile(path, dst)
    wal = path.with_name(path.name + ".wal")
    if wal.exists():
        shutil.copyfile(wal, dst.with_name(dst.name + ".wal"))
    return dst


@contextlib.contextmanager
def snapshot(db: str | Path, attempts: int = 3, notify=None) -> Iterator[Path]:
    """The path to read: ``db`` itself, or a temporary copy of it while a writer holds its lock.

    ``notify(message)`` is called when a copy is read. A copy taken mid-checkpoint may not open; it is retaken
    (``attempts`` times) before giving up with a StoreError.
    """
    path = Path(db)
    if not path.exists():
        raise StoreError(f"{path}: no such result store (run `bench run SUITE` first)")
    if not _locked(path):
        yield path
        return
    with tempfile.TemporaryDirectory(prefix="stepbench-report-") as tmp:
        err = None
        for i in range(attempts):
            copy = _copy(path, Path(tmp))
            try:
                ResultStore(copy, read_only=True).close()
                break
            except StoreError as e:
                err = e
                time.sleep(0.2 * (i + 1))
        else:
            raise StoreError(f"{path}: in use by a writer and no consistent copy could be read ({err})")
        if notify:
            notify(f"{path} is locked by a running writer; reporting from a copy taken now")
        yield copy


def read_extras(db: str | Path, keys: list[str], max_samples: int = 8) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(provenance, samples) for ``keys``: per cell its run, config and provenance JSON; per kept sample its PNG.

    Samples: the first ``max_samples`` sample ids of each cell, columns key, sample_id, label, png (bytes).
    """
    with ResultStore(db, read_only=True) as st:
        con = st.con
        con.execute("CREATE TEMP TABLE report_keys (key VARCHAR)")
        con.executemany("INSERT INTO report_keys VALUES (?)", [[k] for k in keys])
        prov = con.execute("""
            SELECT c.key, c.run_id, c.config, c.provenance, c.finished, r.environment
            FROM cells c JOIN report_keys USING (key) LEFT JOIN runs r USING (run_id)""").df()
        samples = con.execute("""
            SELECT s.key, s.sample_id, s.label, s.png FROM samples s JOIN report_keys USING (key)
            QUALIFY row_number() OVER (PARTITION BY s.key ORDER BY s.sample_id) <= ?
            ORDER BY s.key, s.sample_id""", [int(max_samples)]).df()
    for col in ("config", "provenance", "environment"):
        prov[col] = prov[col].map(_json)
    if not samples.empty:
        samples["png"] = samples["png"].map(lambda b: bytes(b) if b is not None else None)
    return prov, samples


def _json(v):
    if v is None or (isinstance(v, float) and pd.isna(v)):
        return None
    if isinstance(v, (dict, list)):
        return v
    try:
        return json.loads(v)
    except (TypeError, ValueError):
        return v
