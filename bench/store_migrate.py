"""Schema migrations of the result store, and what a version-1 store's metric rows mean.

Version 1 (stepbench before the extension contracts) stored each metric value with its source but not what
the value is. Version 2 adds five columns to ``metrics``: ``higher_is_better``, ``label``, ``unit``, ``fmt``
(a `bench.outputs.Output`, recorded beside every value) and ``seq`` (the value's place among its cell's rows:
the display order). `migrate_1_to_2` fills them for the names version 1 knew from `V1_OUTPUTS`, a frozen copy
of what stepbench's metrics declared then; any other name gets NULLs (no direction: shown nowhere as ranked).

Invariants:
- a store is migrated only after a byte copy of it is written beside it (``bench.duckdb.v1-backup``, or
  ``.v1-backup-2`` ... when that name is taken), and the migration is one transaction: a store is either
  fully version 1 (the copy beside it) or fully version 2;
- `V1_OUTPUTS` never changes: it is what version-1 rows meant, not what today's metrics declare;
- a read-only open never migrates: `bench.store.outputs` reads a version-1 store through `V1_OUTPUTS`.
Torch-free.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import duckdb

from bench.outputs import Output, find
from bench.tempfiles import temp_name

# The columns version 2 adds to ``metrics`` (appended in this order, so a migrated table and a new one agree).
ADDED = (("higher_is_better", "BOOLEAN"), ("label", "VARCHAR"), ("unit", "VARCHAR"), ("fmt", "VARCHAR"),
         ("seq", "INTEGER"))


def _score(name: str, label: str) -> tuple[Output, ...]:
    return (Output(name, True, label), Output(f"{name}_std", None, f"{label} std"),
            Output(f"{name}_ci_low", None, f"{label} CI low"), Output(f"{name}_ci_high", None, f"{label} CI high"),
            Output(f"{name}/class/*", None, f"{label} per class"))


# Frozen: every value name stepbench's version-1 metrics could store, in their declaration order.
V1_OUTPUTS: tuple[Output, ...] = (
    Output("fid", False, "FID"), Output("is", True, "IS"), Output("is_std", None, "IS std"),
    Output("kid", False, "KID"), Output("kid_std", None, "KID std"),
    Output("precision", True, "Precision"), Output("recall", True, "Recall"),
    Output("fid_ci_low", None, "FID CI low"), Output("fid_ci_high", None, "FID CI high"),
    *_score("clip_score", "CLIP Score"), *_score("pickscore", "PickScore"),
    Output("fd_dinov2", False, "FD-DINOv2"),
)


def v1_output(name: str) -> tuple[Output | None, int | None]:
    """(the Output a version-1 row called ``name`` meant, its place in `V1_OUTPUTS`), or (None, None)."""
    out = find(V1_OUTPUTS, name)
    return (out, V1_OUTPUTS.index(out)) if out is not None else (None, None)


def backup_path(path: Path, version: int) -> Path:
    """The first free name of ``<store>.v<version>-backup``, ``...-backup-2``, ... beside the store."""
    base = path.with_name(f"{path.name}.v{version}-backup")
    candidate, i = base, 1
    while candidate.exists() or candidate.with_name(candidate.name + ".wal").exists():
        i += 1
        candidate = base.with_name(f"{base.name}-{i}")
    return candidate


def backup(con: duckdb.DuckDBPyConnection, path: Path, version: int) -> Path:
    """A byte copy of the store at ``path`` (held open, writable, by ``con``) beside it; returns its path.

    The checkpoint first writes every committed change into the main file, so the copy needs no WAL; this
    connection holds the store's write lock, so nothing changes the file while it is copied."""
    con.execute("CHECKPOINT")
    dst = backup_path(path, version)
    tmp = temp_name(dst)
    try:
        shutil.copyfile(path, tmp)
        os.replace(tmp, dst)
    finally:
        tmp.unlink(missing_ok=True)
    return dst


def migrate_1_to_2(con: duckdb.DuckDBPyConnection) -> None:
    """Version 1 -> 2 in one transaction: add `ADDED`, fill it for the names in `V1_OUTPUTS`, set version 2."""
    con.execute("BEGIN TRANSACTION")
    try:
        for col, typ in ADDED:
            con.execute(f"ALTER TABLE metrics ADD COLUMN {col} {typ}")
        for seq, out in enumerate(V1_OUTPUTS):
            where = "starts_with(metric, ?)" if out.name.endswith("/*") else "metric = ?"
            con.execute(f"UPDATE metrics SET higher_is_better = ?, label = ?, unit = ?, fmt = ?, seq = ? "
                        f"WHERE {where}", [out.higher_is_better, out.label, out.unit, out.fmt, seq,
                                           out.name[:-1] if out.name.endswith("/*") else out.name])
        con.execute("UPDATE schema_version SET version = 2")
        con.execute("COMMIT")
    except BaseException:
        con.execute("ROLLBACK")
        raise


# version -> the migration that takes a store from it to the next version
MIGRATIONS = {1: migrate_1_to_2}
