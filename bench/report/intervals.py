"""Uncertainty of a stored metric per row, and which rows are statistically tied with the best one.

A metric ``m`` may have a stored interval beside its value: a bootstrap confidence interval (``m_ci_low``,
``m_ci_high``: CLIP Score and PickScore always, FID when the suite enables bootstrap) or a standard deviation
(``m_std``: IS, KID, CLIP Score, PickScore). `interval` gives one (lo, hi) pair per row, preferring the stored
interval and falling back, row by row, to value ± std; a row with neither (or without a value) gets NaN.
`ties_with_best` marks the rows whose interval overlaps the best row's: the best row is always marked, rows
without a value never are, and a row without an interval counts as the point [value, value]. Torch-free; names
no metric (the direction comes from the caller, e.g. `bench.report.directions.Specs`).
"""

from __future__ import annotations

import numpy as np
import pandas as pd

CI_LOW, CI_HIGH, STD = "_ci_low", "_ci_high", "_std"


def interval(df: pd.DataFrame, metric: str) -> tuple[pd.Series, pd.Series] | None:
    """(lo, hi) per row of ``df`` for ``metric``: the stored CI where present, else value ± std, else NaN;
    None when ``df`` has neither companion column (or not the metric itself)."""
    if metric not in df.columns:
        return None
    lo_c, hi_c, std_c = metric + CI_LOW, metric + CI_HIGH, metric + STD
    has_ci = lo_c in df.columns and hi_c in df.columns
    has_std = std_c in df.columns
    if not (has_ci or has_std):
        return None
    value = pd.to_numeric(df[metric], errors="coerce").astype(float)
    nan = pd.Series(np.nan, index=df.index)
    lo = pd.to_numeric(df[lo_c], errors="coerce").astype(float) if has_ci else nan
    hi = pd.to_numeric(df[hi_c], errors="coerce").astype(float) if has_ci else nan
    ci_ok = lo.notna() & hi.notna()
    if has_std:
        std = pd.to_numeric(df[std_c], errors="coerce").astype(float).abs()
        lo = lo.where(ci_ok, value - std)
        hi = hi.where(ci_ok, value + std)
    else:
        lo, hi = lo.where(ci_ok), hi.where(ci_ok)
    lo, hi = lo.where(value.notna()), hi.where(value.notna())
    return lo.rename(f"{metric} lo"), hi.rename(f"{metric} hi")


def ties_with_best(values: pd.Series, lo: pd.Series | None, hi: pd.Series | None,
                   higher_is_better: bool) -> pd.Series:
    """Per row, whether its interval overlaps that of the best value (max when ``higher_is_better``, else min).

    ``lo``/``hi`` in the same row order as ``values`` (None: no intervals, so only rows equal to the best tie);
    a missing bound counts as the value itself. All False when no row has a value."""
    if higher_is_better is None:
        raise ValueError("ties need a direction: this column is not ranked")
    v = pd.to_numeric(values, errors="coerce").to_numpy(dtype=float)
    if not np.isfinite(v).any():
        return pd.Series(False, index=values.index, dtype=bool)

    def bound(s):
        b = v if s is None else pd.to_numeric(pd.Series(s), errors="coerce").to_numpy(dtype=float)
        return np.where(np.isnan(b), v, b)
    lo, hi = bound(lo), bound(hi)
    lo, hi = np.minimum(lo, hi), np.maximum(lo, hi)        # an interval given upside down is still one
    w = np.where(np.isfinite(v), v, -np.inf if higher_is_better else np.inf)
    best = int(np.argmax(w) if higher_is_better else np.argmin(w))   # positional: duplicate labels are fine
    tie = np.isfinite(v) & (lo <= hi[best]) & (hi >= lo[best])
    tie[best] = True
    return pd.Series(tie, index=values.index, dtype=bool)
