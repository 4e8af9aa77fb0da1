"""DuckDB result store: runs, cells, long-format metric rows, timings, kept samples, schema version.

One transaction per cell (all its rows or none), so a killed run loses nothing already written and leaves
no partial cell. ``bench.load(db)`` gives a tidy DataFrame: one row per cell, metric columns, MMHM.

Every metric row carries what its value is (schema version 2): direction, label, unit and display format of
the `bench.outputs.Output` its metric declared, and ``seq``, its place among the cell's rows (the suite's
metric order, then each metric's result order). `outputs(db)` reads those back, one row per metric name, so
presentation never imports a metric. A version-1 store is migrated on its first writable open, after a backup
copy beside it (`bench.store_migrate`); a read-only open of one migrates nothing and `outputs` reads its
rows through the frozen table of what version 1's names meant.
"""

from __future__ import annotations

import json
import os
import uuid
from contextlib import contextmanager
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Iterator

import duckdb
import pandas as pd

from bench import store_migrate
from bench.outputs import Output

SCHEMA_VERSION = 2

DDL = """
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
    options JSON, higher_is_better BOOLEAN, label VARCHAR, unit VARCHAR, fmt VARCHAR, seq INTEGER,
    PRIMARY KEY (key, metric));
CREATE TABLE IF NOT EXISTS timings (
    key VARCHAR NOT NULL, name VARCHAR NOT NULL, value DOUBLE, unit VARCHAR, PRIMARY KEY (key, name));
CREATE TABLE IF NOT EXISTS samples (
    key VARCHAR NOT NULL, sample_id INTEGER NOT NULL, label INTEGER, png BLOB, PRIMARY KEY (key, sample_id));
"""
# Per-sample scores (`bench.metrics.base.Metric.per_sample`: CLIP Score, PickScore, ImageReward per image), added
# after schema version 2 was released: created IF NOT EXISTS on every writable open, so a store written by the
# previous release gains it on its first write and reads (`bench.persample`) as having no rows before. No primary
# key: a cell's rows are deleted and written in one transaction (`write`), so (key, sample_id, metric) is unique by
# construction, and the index would cost 7x the table's disk (11.5 MB vs 1.6 MB for the default suite's 135 cells).
SAMPLE_SCORES_DDL = """
CREATE TABLE IF NOT EXISTS sample_scores (
    key VARCHAR NOT NULL, sample_id INTEGER NOT NULL, metric VARCHAR NOT NULL, value DOUBLE);
"""
CELL_TABLES = ("metrics", "timings", "samples", "sample_scores")      # a cell's rows besides its ``cells`` row


METRIC_COLUMNS = ("key", "metric", "value", "source", "source_version", "options", "higher_is_better", "label",
                  "unit", "fmt", "seq")
PER_CLASS = "/class/"                 # per-class drill-down rows (``clip_score/class/17``): long only, never ranked


class StoreError(RuntimeError):
    """A store that cannot be used: one line naming the file. The CLI exits with code 2."""

    def __init__(self, msg: str):
        super().__init__(" ".join(str(msg).split()))      # one line, whatever duckdb's message holds


class StoreWriteError(StoreError):
    """Writing to a store failed (disk full, permission denied): the store file and the first cause, on one line.
    What was committed before stays in the store."""

    def __init__(self, path: Path, cause: BaseException):
        self.path, self.cause = Path(path), cause
        text = getattr(cause, "strerror", None) if isinstance(cause, OSError) else None
        super().__init__(f"{path}: cannot write to the result store: {text or cause}")


def _writable_folder(path: Path) -> None:
    """The store's folder exists (created if missing) and can take new files: DuckDB writes a ``.wal`` journal
    beside the store on every write, so a store in a read-only folder fails at its first write."""
    parent = path.parent
    try:
        parent.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise StoreError(f"{path}: cannot create the store's folder {parent} ({e.strerror or e}); choose a --db in a "
                         f"writable folder") from None
    if not os.access(parent, os.W_OK | os.X_OK):
        what = "open the store for writing" if path.exists() else "create the store"
        raise StoreError(f"{path}: the folder {parent} is not writable, so stepbench cannot {what} (DuckDB "
                         f"writes a .wal journal beside the store); make the folder writable, or copy the store to "
                         f"a writable folder and pass --db") from None


DUCKDB_MAGIC = b"DUCK"                # bytes 8..12 of every DuckDB database file
# never fetch or load DuckDB extensions: a store is plain DuckDB (without this, a SQLite file would make DuckDB
# try to download its sqlite scanner)
_CONFIG = {"autoinstall_known_extensions": False, "autoload_known_extensions": False}


# A run's writer connection (`bench.runner.Runner`, `bench.rescore`) executes only small statements: a cell's
# transaction of ~13 (a status lookup, DELETEs on overwrite, five inserts of a few hundred rows), begin/finish
# of the run. With one thread DuckDB schedules none of them across workers: measured on the 2-core VM, each ran
# 25-30% faster (an Arrow insert 0.97 -> 0.68 ms) and a 3-cell run's store sequence (open, 3 writes, close)
# 77 -> 67 ms, median of 16 alternated pairs. Stored values are the same (`tests/test_store.py`).
WRITER_THREADS = 1


def _check_magic(path: Path) -> None:
    try:
        with open(path, "rb") as f:
            head = f.read(16)
    except OSError as e:
        raise StoreError(f"{path}: cannot read the result store ({e.strerror or e})") from None
    if head[8:12] != DUCKDB_MAGIC:
        kind = "an empty file" if not head else ("a SQLite database" if head.startswith(b"SQLite format 3") else
                                                 "no DuckDB header")
        raise StoreError(f"{path}: not a stepbench result store ({kind}); refusing to open it (use --db to choose "
                         f"another file)")


def _now() -> datetime:
    return datetime.now(timezone.utc).replace(tzinfo=None)


class ResultStore:
    def __init__(self, path: str | Path = "results/bench.duckdb", read_only: bool = False,
                 threads: int | None = None):
        """``threads``: DuckDB's worker threads for this connection (None: DuckDB's default, one per core). A run's
        writer passes 1 (`WRITER_THREADS`); readers keep the default, for the report's and pandas' scans."""
        self.path = Path(path)
        if read_only and not self.path.exists():
            raise StoreError(f"{self.path}: no such result store (run `bench run SUITE` first)")
        if self.path.exists():
            if self.path.is_dir():
                raise StoreError(f"{self.path}: is a folder, not a result store file")
            _check_magic(self.path)
        if not read_only:
            _writable_folder(self.path)
        self.version: int = SCHEMA_VERSION       # the schema read (an older one only when opened read-only)
        self._column_order: dict[str, list[str]] = {}    # table -> its columns in stored order (`_insert`)
        self.backup: Path | None = None          # the copy written before a migration on this open
        try:
            config = _CONFIG if threads is None else {**_CONFIG, "threads": int(threads)}
            self.con = duckdb.connect(str(self.path), read_only=read_only, config=config)
        except duckdb.IOException as e:
            if "permission denied" in str(e).lower():
                raise StoreError(f"{self.path}: cannot open the result store for writing (permission denied); make "
                                 f"it and its folder writable, or copy it to a writable folder and pass --db") from None
            if "lock" in str(e).lower():
                raise StoreError(f"{self.path}: the store is in use by another process (another `bench run`?); "
                                 f"wait for it to finish or use --db to choose another file") from None
            raise StoreError(f"{self.path}: cannot open the result store: {e}") from None
        except duckdb.Error as e:
            raise StoreError(f"{self.path}: not a readable DuckDB result store: {e}") from None
        self._check_schema(read_only)

    def _check_schema(self, read_only: bool) -> None:
        # the version first: a stepbench store has the table, and asking the catalog which tables exist costs
        # ~8 ms on a fresh connection (~1 ms for this query), so the catalog is read only for other files
        try:
            rows = self.con.execute("SELECT DISTINCT version FROM schema_version").fetchall()
        except duckdb.CatalogException:
            rows = None
        except duckdb.Error as e:
            self.con.close()
            raise StoreError(f"{self.path}: unreadable schema_version table ({e})") from None
        if rows is not None:
            versions = sorted({r[0] for r in rows}, key=str)
            if len(versions) == 1 and versions[0] in store_migrate.MIGRATIONS:
                self.version = versions[0]
                if not read_only:
                    self._migrate()
                    self._add_new_tables()
                return
            if versions != [SCHEMA_VERSION]:
                self.con.close()
                got = (f"schema version {', '.join(map(str, versions))}" if versions
                       else "no schema version recorded")
                newer = bool(versions) and all(isinstance(v, int) and v > SCHEMA_VERSION for v in versions)
                hint = ("written by a newer stepbench; upgrade stepbench" if newer else
                        "use the stepbench that wrote it (no migration to this version exists)")
                raise StoreError(f"{self.path}: {got}, this stepbench reads version {SCHEMA_VERSION}; refusing to "
                                 f"read or write it: {hint}, or give a new --db")
            self.version = SCHEMA_VERSION
            if not read_only:
                self._add_new_tables()
            return
        if self.con.execute("SELECT table_name FROM information_schema.tables").fetchall():
            self.con.close()
            raise StoreError(f"{self.path}: a DuckDB file without a stepbench schema; refusing to write into it")
        if read_only:
            self.con.close()
            raise StoreError(f"{self.path}: empty store")
        try:
            with self._writing():
                self.con.execute("BEGIN")
                self.con.execute(DDL + SAMPLE_SCORES_DDL)
                self.con.execute("INSERT INTO schema_version VALUES (?)", [SCHEMA_VERSION])
                self.con.execute("COMMIT")
        except StoreError:
            self.con.close()
            raise
        self.version = SCHEMA_VERSION

    def _add_new_tables(self) -> None:
        """Tables added within `SCHEMA_VERSION` (``sample_scores``), created when a store lacks them."""
        try:
            with self._writing():
                self.con.execute(SAMPLE_SCORES_DDL)
        except StoreError:
            self.con.close()
            raise

    def _migrate(self) -> None:
        """Bring an older store to `SCHEMA_VERSION`: a backup copy beside it, then each step in one transaction."""
        try:
            self.backup = store_migrate.backup(self.con, self.path, self.version)
            while self.version != SCHEMA_VERSION:
                store_migrate.MIGRATIONS[self.version](self.con)
                self.version += 1
        except (OSError, duckdb.Error) as e:
            self.con.close()
            raise StoreError(f"{self.path}: cannot migrate the store from schema version {self.version} to "
                             f"{SCHEMA_VERSION} ({e}); it is unchanged") from None

    def close(self) -> None:
        self.con.close()

    def __enter__(self) -> "ResultStore":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    # -- runs -------------------------------------------------------------------------------------------------
    def begin_run(self, suite: str, suite_path: str, suite_sha256: str, environment: dict[str, Any]) -> str:
        run_id = uuid.uuid4().hex[:16]
        with self._writing():
            self.con.execute("INSERT INTO runs VALUES (?, ?, ?, ?, ?, NULL, 'running', ?)",
                             [run_id, suite, suite_path, suite_sha256, _now(), json.dumps(environment)])
        return run_id

    def finish_run(self, run_id: str, status: str) -> None:
        with self._writing():
            self.con.execute("UPDATE runs SET finished = ?, status = ? WHERE run_id = ?", [_now(), status, run_id])

    @contextmanager
    def _writing(self) -> Iterator[None]:
        """A write that fails in the file system or in DuckDB (disk full, permission denied, a database DuckDB
        invalidated after such a failure) raises `StoreWriteError`: one line naming the store and the cause."""
        try:
            yield
        except (duckdb.Error, OSError) as e:
            raise StoreWriteError(self.path, e) from None

    # -- cells ------------------------------------------------------------------------------------------------
    def status(self, key: str) -> str | None:
        row = self.con.execute("SELECT status FROM cells WHERE key = ?", [key]).fetchone()
        return row[0] if row else None

    def has(self, key: str) -> bool:
        return self.status(key) == "ok"

    def write(self, key: str, row: dict[str, Any], metrics: dict[str, tuple],
              timings: dict[str, tuple[float, str]], samples: list[tuple[int, int, bytes]] = (),
              scores: dict[str, tuple] | None = None) -> None:
        """One cell in one transaction: replaces any earlier rows of the same key.

        ``row``: cell columns; ``metrics``: name -> (value, source metric, source version, options, Output),
        in display order (each row's ``seq`` is its place here); ``timings``: name -> (value, unit);
        ``samples``: (sample id, label, PNG bytes); ``scores``: stored metric name -> (sample ids, values), the
        per-sample rows of ``sample_scores`` (`bench.engine.CellResult.per_sample`). A 4-tuple without the Output
        (what version-1 callers passed) is read as a version-1 row: `store_migrate.V1_OUTPUTS` tells its direction
        and label.
        """
        cols = ["run_id", "suite", "model_id", "adapter", "family", "dataset", "steps", "cfg", "solver", "seed",
                "plan", "n", "status", "error", "config", "provenance", "seconds"]
        values = [row.get(c) for c in cols]
        for i, c in enumerate(cols):
            if c in ("config", "provenance") and values[i] is not None:
                values[i] = json.dumps(values[i], default=str)
        # the rows are prepared before the transaction opens, as Arrow tables of the stored column types
        options_json: dict[int, str] = {}               # a metric's options are one object for all its rows
        metric_rows = [metric_row(key, seq, name, m, options_json) for seq, (name, m) in enumerate(metrics.items())]
        tables = (_arrow_rows("metrics", metric_rows),
                  _arrow_rows("timings", [[key, name, float(v), unit] for name, (v, unit) in timings.items()]),
                  _arrow_rows("samples", [[key, int(i), int(y), png] for i, y, png in samples]),
                  _score_rows(key, scores or {}))
        with self._writing():
            self._write_cell(key, cols, values, *tables)

    def _write_cell(self, key, cols, values, metrics, timings, samples, scores=None) -> None:
        """The transaction of `write`: ``metrics``, ``timings``, ``samples``, ``scores`` (``sample_scores``) are
        `_arrow_rows` tables (or None)."""
        self.con.execute("BEGIN TRANSACTION")
        try:
            if self.con.execute("SELECT 1 FROM cells WHERE key = ?", [key]).fetchone():   # a cell's rows
                for table in (*CELL_TABLES, "cells"):                           # exist only with its cells row
                    self.con.execute(f"DELETE FROM {table} WHERE key = ?", [key])
            self.con.execute(f"INSERT INTO cells (key, {', '.join(cols)}, finished) VALUES "
                             f"(?, {', '.join('?' * len(cols))}, ?)", [key, *values, _now()])
            for table, rows in (("metrics", metrics), ("timings", timings), ("samples", samples),
                                ("sample_scores", scores)):
                self._insert(table, rows)
            self.con.execute("COMMIT")
        except BaseException as e:
            try:                        # a failed COMMIT (disk full) has already ended the transaction: then
                self.con.execute("ROLLBACK")      # ROLLBACK fails too, and the error to report is the first one
            except duckdb.Error:
                raise e from None
            raise

    def _insert(self, table: str, rows) -> None:
        """One insert of an `_arrow_rows` table, its columns put in the stored table's order (a migrated store's
        may differ from a new one's): about 4x faster than a multi-row ``INSERT ... VALUES`` with a cell's 385
        metric parameters, which DuckDB parses and binds anew on every cell (executemany is slower still, a
        statement per row). Arrow float64 carries each Python float unchanged. The order comes from binding
        ``SELECT * ... LIMIT 0`` once per table and connection (~0.5 ms; the catalog's information_schema took ~12
        ms on a fresh connection). Not ``INSERT ... BY NAME`` from the Arrow table: DuckDB would find it by
        variable name in the calling Python frame, which a wrapped connection does not have."""
        if rows is None:
            return
        order = self._column_order.get(table)
        if order is None:
            order = [d[0] for d in self.con.execute(f"SELECT * FROM {table} LIMIT 0").description]
            self._column_order[table] = order
        self.con.from_arrow(rows.select(order)).insert_into(table)

    # -- reading ----------------------------------------------------------------------------------------------
    def frame(self, sql: str | None = None) -> pd.DataFrame:
        """A DataFrame from any SQL over the store, or the tidy one-row-per-cell view by default."""
        if sql is not None:
            return self.con.execute(sql).df()
        return tidy(self.con)

    def suites(self) -> pd.DataFrame:
        return self.con.execute("""
            SELECT suite, count(*) AS cells, count(*) FILTER (WHERE status = 'ok') AS ok,
                   count(*) FILTER (WHERE status = 'failed') AS failed, max(finished) AS last_finished
            FROM cells GROUP BY suite ORDER BY suite""").df()


# Column types of the rows `ResultStore.write` inserts through Arrow (pyarrow type names), in row order.
ARROW_COLUMNS = {
    "metrics": tuple(zip(METRIC_COLUMNS, ("string", "string", "float64", "string", "string", "string", "bool_",
                                          "string", "string", "string", "int32"))),
    "timings": (("key", "string"), ("name", "string"), ("value", "float64"), ("unit", "string")),
    "samples": (("key", "string"), ("sample_id", "int32"), ("label", "int32"), ("png", "binary")),
}


def _score_rows(key: str, scores: dict[str, tuple]):
    """The ``sample_scores`` rows of one cell as a pyarrow Table (None when there are none): per metric name, its
    sample ids (int32, as the table stores them) and values (float64: each score unchanged)."""
    if not any(len(ids) for ids, _ in scores.values()):
        return None
    import numpy as np
    import pyarrow as pa
    ids = [np.asarray(i, dtype=np.int64) for i, _ in scores.values()]
    vals = [np.asarray(v, dtype=np.float64) for _, v in scores.values()]
    for (name, _), i, v in zip(scores.items(), ids, vals):
        if len(i) != len(v):
            raise ValueError(f"sample_scores {name!r}: {len(i)} sample ids for {len(v)} values")
    return pa.table({"key": pa.array([key] * sum(map(len, ids)), type=pa.string()),
                     "sample_id": pa.array(np.concatenate(ids).astype(np.int32), type=pa.int32()),
                     "metric": pa.array([n for n, i in zip(scores, ids) for _ in range(len(i))], type=pa.string()),
                     "value": pa.array(np.concatenate(vals), type=pa.float64())})


def _arrow_rows(table: str, rows: list[list]):
    """``rows`` (lists in `ARROW_COLUMNS` order) as a pyarrow Table of those column types; None when empty."""
    if not rows:
        return None
    import pyarrow as pa
    return pa.table({name: pa.array(col, type=getattr(pa, kind)())
                     for (name, kind), col in zip(ARROW_COLUMNS[table], zip(*rows))})


def metric_row(key: str, seq: int, name: str, m: tuple, options_json: dict[int, str] | None = None) -> list:
    """One ``metrics`` row (`METRIC_COLUMNS`) from a `ResultStore.write` entry; ``options_json`` memoises the JSON
    of options objects by identity (within one write: the objects live as long as the call)."""
    if len(m) == 5:
        value, source, version, options, out = m
        if not isinstance(out, Output):
            raise TypeError(f"metric {name!r}: the fifth item must be a bench.outputs.Output, got {out!r}")
    elif len(m) == 4:
        (value, source, version, options), out = m, store_migrate.v1_output(name)[0]
    else:
        raise TypeError(f"metric {name!r}: expected (value, source, version, options, Output), got {len(m)} items")
    d = (out.higher_is_better, out.label, out.unit, out.fmt) if out is not None else (None, None, None, None)
    if options_json is None:
        text = json.dumps(options, default=str)
    elif (text := options_json.get(id(options))) is None:
        text = options_json[id(options)] = json.dumps(options, default=str)
    return [key, name, float(value), source, version, text, *d, seq]


# What identifies a sweep point; a re-measurement of it (new weights, metric or code version) supersedes the old.
# A smoke run's cells (``limit``: `bench run --limit N`) are points of their own: they never hide a full cell.
# A suite that opted into TF32 (``numerics``: "tf32"; None for strict cells) measures points of its own too.
POINT = ["suite", "model", "dataset", "steps", "cfg", "solver", "seed", "plan", "limit", "numerics"]


def tidy(con: duckdb.DuckDBPyConnection, latest: bool = True, mmhm_bounds=None, rescored: bool = False) -> pd.DataFrame:
    """One row per cell. With ``latest`` (default), only the most recently finished cell of each sweep point:
    cells measured with older weights or code stay in the store (query them with SQL) but not in the table.
    ``limit`` is a smoke run's cap on samples per cell (<NA> for a full cell); MMHM compares smoke cells only with
    smoke cells of the same cap. ``mmhm_bounds`` (a bounds file's path or a mapping, `bench.composite.
    as_dataset_bounds`): saved MMHM bounds for the full cells instead of those computed from this store.
    ``latency_flagged`` (boolean; <NA> without a latency): `bench.latency_rule.flagged` of the stored median, IQR.
    Cells `bench rescore` made from kept features (config ``rescore``) are left out unless ``rescored``: then they
    are in, with a ``rescored_from`` column (the source cell's key; <NA> for generated cells), each a sweep point of
    its own (it never hides the cell it was computed from, nor another rescoring of it)."""
    cells = con.execute("""
        SELECT key, suite, model_id AS model, adapter, family, dataset, steps, cfg, solver, seed, plan, n,
               TRY_CAST(json_extract(config, '$.limit') AS INTEGER) AS "limit",
               json_extract_string(config, '$.numerics') AS numerics,
               json_extract_string(config, '$.rescore.from') AS rescored_from,
               status, error, seconds, finished FROM cells ORDER BY suite, dataset, model_id, steps, cfg, solver
    """).df()
    cells["limit"] = cells["limit"].astype("Int64")
    point = POINT
    if rescored:
        cells["rescore_point"] = cells["key"].where(cells["rescored_from"].notna(), None)
        point = [*POINT, "rescore_point"]
    else:
        cells = cells[cells["rescored_from"].isna()].drop(columns="rescored_from").reset_index(drop=True)
    if latest and not cells.empty:
        newest = cells.sort_values("finished", kind="stable").drop_duplicates(point, keep="last").index
        cells = cells.loc[cells.index.isin(newest)].reset_index(drop=True)
    cells = cells.drop(columns="rescore_point", errors="ignore")
    # per-class drill-down rows (``clip_score/class/<id>``: 1000 per metric on ImageNet) stay long: `per_class`
    metrics = con.execute("SELECT key, metric, value FROM metrics WHERE NOT contains(metric, ?)", [PER_CLASS]).df()
    timings = con.execute("SELECT key, name, value FROM timings").df()
    wide = cells
    for long, col in ((metrics, "metric"), (timings, "name")):
        if not long.empty:
            piv = long.pivot_table(index="key", columns=col, values="value", aggfunc="first")
            piv.columns.name = None
            wide = wide.merge(piv, left_on="key", right_index=True, how="left")
    from bench.latency_rule import flagged_column
    wide["latency_flagged"] = flagged_column(wide)       # derived, never stored: IQR/median > FLAG_RATIO
    from bench.composite import TIDY_BY, add_mmhm, as_dataset_bounds
    return add_mmhm(wide, by=TIDY_BY, dataset_bounds=as_dataset_bounds(mmhm_bounds))


def per_class(db: str | Path = "results/bench.duckdb") -> pd.DataFrame:
    """Per-class means (CLIP Score, PickScore) in long form: key, model, dataset, steps, cfg, metric, class, value."""
    with ResultStore(db, read_only=True) as store:
        df = store.con.execute("""
            SELECT m.key, c.model_id AS model, c.dataset, c.steps, c.cfg, split_part(m.metric, '/class/', 1) AS metric,
                   CAST(split_part(m.metric, '/class/', 2) AS INTEGER) AS class, m.value
            FROM metrics m JOIN cells c USING (key) WHERE contains(m.metric, ?)
            ORDER BY c.model_id, c.dataset, c.steps, c.cfg, metric, class""", [PER_CLASS]).df()
    return df


def load(db: str | Path = "results/bench.duckdb", latest: bool = True, mmhm_bounds=None,
         rescored: bool = False) -> pd.DataFrame:
    """The store as a tidy DataFrame (one row per cell, metric and timing columns, MMHM); ``latest=False`` keeps
    superseded measurements of the same sweep point too; ``rescored``: `bench rescore`'s cells too (`tidy`)."""
    with ResultStore(db, read_only=True) as store:
        return tidy(store.con, latest=latest, mmhm_bounds=mmhm_bounds, rescored=rescored)


OUTPUT_COLUMNS = ["metric", "higher_is_better", "label", "unit", "fmt", "source", "seq"]


@contextmanager
def _connection(con_or_db) -> Iterator[duckdb.DuckDBPyConnection]:
    if isinstance(con_or_db, ResultStore):
        yield con_or_db.con
    elif isinstance(con_or_db, duckdb.DuckDBPyConnection):
        yield con_or_db
    else:
        with ResultStore(con_or_db, read_only=True) as store:
            yield store.con


def outputs(con_or_db) -> pd.DataFrame:
    """What each stored metric name is: one row per name (per-class rows left out), columns `OUTPUT_COLUMNS`
    (``metric`` the name, its declared direction (True, False, or None for a companion statistic), label, unit,
    display format, the metric that wrote it and ``seq``), in display order: by the smallest place the name
    took among its cells' rows, then by name. Where cells disagree, the most recently finished cell's
    declaration wins. ``con_or_db``: a `ResultStore`, a DuckDB connection to a store, or a store path."""
    with _connection(con_or_db) as con:
        cols = {r[0] for r in con.execute("SELECT column_name FROM information_schema.columns "
                                          "WHERE table_name = 'metrics'").fetchall()}
        fields = ("m.higher_is_better, m.label, m.unit, m.fmt" if "higher_is_better" in cols else
                  "NULL::BOOLEAN AS higher_is_better, NULL AS label, NULL AS unit, NULL AS fmt")
        seq = "min(m.seq) OVER (PARTITION BY m.metric)" if "seq" in cols else "NULL::INTEGER"
        df = con.execute(f"""
            SELECT m.metric, {fields}, m.source, {seq} AS seq FROM metrics m LEFT JOIN cells c USING (key)
            WHERE NOT contains(m.metric, ?)
            QUALIFY row_number() OVER (PARTITION BY m.metric ORDER BY c.finished DESC NULLS LAST, m.key DESC) = 1
            """, [PER_CLASS]).df()
    if "higher_is_better" not in cols:          # a version-1 store opened read-only: what its names meant
        known = [store_migrate.v1_output(n) for n in df["metric"]]
        df["higher_is_better"] = [o.higher_is_better if o else None for o, _ in known]
        for f in ("label", "unit", "fmt"):
            df[f] = [getattr(o, f) if o else None for o, _ in known]
        df["seq"] = [s for _, s in known]
    df["higher_is_better"] = df["higher_is_better"].astype(object).where(df["higher_is_better"].notna(), None)
    df["seq"] = pd.to_numeric(df["seq"]).astype("Int64")
    return df.sort_values(["seq", "metric"], na_position="last", kind="stable")[OUTPUT_COLUMNS].reset_index(drop=True)
