"""Per-sample scores of stored cells: the ``sample_scores`` table (`bench.store`), one row per (cell key, sample id,
metric): each image's CLIP Score, PickScore or ImageReward (`bench.metrics.base.Metric.per_sample`), in the units
of the stored mean, so the mean of a cell's rows of one metric is that cell's stored value of it.

Sample i of every cell of a dataset and seed is drawn from the same (seed, i), so rows of two cells with equal
sample ids are paired. A store without the table (written by the previous release) reads as having no rows.
"""

from __future__ import annotations

from typing import Sequence

import pandas as pd

from bench.store import _connection

COLUMNS = ["sample_id", "metric", "value"]


def has_table(con) -> bool:
    """Whether a store's connection has the ``sample_scores`` table."""
    return bool(con.execute("SELECT count(*) FROM information_schema.tables WHERE table_name = 'sample_scores'")
                .fetchone()[0])


def scores(db_or_con, key: str) -> pd.DataFrame:
    """The per-sample scores of cell ``key``: columns `COLUMNS`, sorted by metric then sample id; an empty frame of
    those columns for a cell without any (or a store without the table). ``db_or_con``: a store path, a
    `bench.store.ResultStore` or a DuckDB connection to a store."""
    return many(db_or_con, [key]).drop(columns="key")


def many(db_or_con, keys: Sequence[str] | None = None) -> pd.DataFrame:
    """Per-sample scores of several cells (all when ``keys`` is None): columns key + `COLUMNS`, sorted by key,
    metric, sample id; empty (with those columns) on a store without the table."""
    with _connection(db_or_con) as con:
        if not has_table(con):
            return _empty(["key", *COLUMNS])
        where, params = ("", []) if keys is None else ("WHERE key IN (SELECT unnest(?::VARCHAR[]))", [list(keys)])
        df = con.execute(f"SELECT key, sample_id, metric, value FROM sample_scores {where} "
                         f"ORDER BY key, metric, sample_id", params).df()
    return df.reset_index(drop=True) if len(df) else _empty(["key", *COLUMNS])


def _empty(columns: list[str]) -> pd.DataFrame:
    types = {"key": "object", "sample_id": "int32", "metric": "object", "value": "float64"}
    return pd.DataFrame({c: pd.Series(dtype=types[c]) for c in columns})


__all__ = ["COLUMNS", "has_table", "many", "scores"]
