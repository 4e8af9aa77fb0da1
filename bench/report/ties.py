"""Which values of a board are told apart: the best one, and those whose stored interval overlaps it.

A board (one dataset's per-model picks, `bench.report.leaderboard`) shows one cell per model; `picked` gives
those cells with every stored column (interval companions included), `mark_ties` labels each row's value of a
metric 'best', 'tie' (`bench.report.intervals.ties_with_best`: its interval overlaps the best value's) or ''.
Invariants: only ranked metrics (a stored direction) are marked; every row equal to the best value is 'best';
a metric without stored intervals has no ties; real-vs-real rows are never marked; nothing here changes a
value or the board's order.
"""

from __future__ import annotations

import pandas as pd

from bench.composite import REAL
from bench.report.directions import Specs
from bench.report.intervals import interval, ties_with_best


def picked(g: pd.DataFrame, keys: pd.Series) -> pd.DataFrame:
    """The cells of ``g`` named by ``keys`` (every column), one row per key in order; a row whose key is not a
    string (no pick) is all missing."""
    by_key = g.drop_duplicates("key").set_index("key", drop=False)
    return by_key.reindex([k if isinstance(k, str) else None for k in keys]).reset_index(drop=True)


def intervals(df: pd.DataFrame, metrics: list[str]) -> dict[str, tuple[pd.Series, pd.Series]]:
    """metric -> (lo, hi) per row of ``df``, for the metrics with a stored interval."""
    out = {}
    for m in metrics:
        iv = interval(df, m)
        if iv is not None:
            out[m] = iv
    return out


def mark_ties(df: pd.DataFrame, m: str, iv: tuple[pd.Series, pd.Series] | None, specs: Specs) -> pd.Series:
    """Per row of ``df``: 'best', 'tie' (its interval overlaps the best row's) or '' for metric ``m``; a
    real-vs-real row (family `bench.composite.REAL`) is a reference line, not a competitor: never marked, never
    the best."""
    out = pd.Series("", index=df.index, dtype=object)
    s = specs.get(m)
    if m not in df.columns or s is None or s.higher_is_better is None:
        return out
    values = pd.to_numeric(df[m], errors="coerce")
    if "family" in df.columns:
        values = values.where(df["family"].to_numpy() != REAL)
    if not values.notna().any():
        return out
    if iv is not None:
        out[ties_with_best(values, iv[0], iv[1], s.higher_is_better).to_numpy(dtype=bool)] = "tie"
    best = values.max() if s.higher_is_better else values.min()
    out[(values == best).to_numpy()] = "best"
    return out
