"""Paired bootstrap of the difference between two cells that share sample ids.

Every cell of a dataset and seed draws sample i from the same (seed, i), so two cells are a paired experiment.
A replicate draws n positions with replacement into the common, id-sorted samples and evaluates BOTH cells'
statistic on the SAME draw (`draws`: one (R, n) index matrix from ``numpy.random.default_rng(seed)``); the
reference set of a set metric stays fixed (the interval reflects the finite generated sample, as for FID).

A `Statistic` maps an index matrix (r, n) of positions to r values, vectorised where it can be: a per-sample mean
is one gather and one mean over the whole chunk (`mean_statistic`), no Python loop per replicate.

`paired_bootstrap` returns value A, value B (the statistic on the full sample, i.e. the identity draw), the
difference A - B, the percentile interval of the replicate differences, and the two-sided bootstrap p-value by
the centred-difference definition (Efron & Tibshirani 1993, ch. 16; Davison & Hinkley 1997, sec. 4.4): under the
null the replicate differences are shifted to mean zero, so

    p = (1 + #{b : |d*_b - d| >= |d|}) / (R + 1),

where d is the full-sample difference and d*_b the replicate ones; p lies in [1/(R+1), 1]; identical cells give
d = 0, every d*_b = 0, a degenerate interval [0, 0] and p = 1. The number of resamples and the seed are returned
with every result. Torch-free.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable

import numpy as np

DEFAULT_RESAMPLES = 1000
DEFAULT_SEED = 2020
DEFAULT_LEVEL = 0.95
CHUNK_ELEMENTS = 4_000_000          # index-matrix entries a statistic sees at once (memory bound, not results)
P_VALUE = "centred-difference bootstrap: (1 + #{|d*_b - d| >= |d|}) / (R + 1)"


@dataclass(frozen=True)
class Statistic:
    """A cell's statistic under resampling: ``fn`` maps an (r, n) int array of positions into the cell's samples
    (sorted by sample id) to r floats. ``kind`` says what it is recomputed from (shown to users)."""
    name: str
    fn: Callable[[np.ndarray], np.ndarray]
    kind: str = "per-sample"
    meta: dict = field(default_factory=dict)

    def __call__(self, idx: np.ndarray) -> np.ndarray:
        return np.asarray(self.fn(np.atleast_2d(idx)), dtype=np.float64).reshape(-1)

    def full(self, n: int) -> float:
        """The statistic on the whole sample (the identity draw)."""
        return float(self(np.arange(n)[None, :])[0])


def mean_statistic(name: str, values) -> Statistic:
    """The mean of per-sample values (CLIP Score, PickScore, any per-sample metric): one gather per chunk."""
    v = np.asarray(values, dtype=np.float64)
    return Statistic(name, lambda idx: v[idx].mean(axis=1), "per-sample")


def draws(n: int, resamples: int, seed: int) -> np.ndarray:
    """The (resamples, n) positions of every replicate; depends only on (n, resamples, seed)."""
    if n < 1:
        raise ValueError("a bootstrap needs at least one sample")
    if resamples < 1:
        raise ValueError(f"resamples must be at least 1, got {resamples}")
    return np.random.default_rng(int(seed)).integers(0, n, size=(int(resamples), n), dtype=np.int64)


def chunks(idx: np.ndarray):
    """Row blocks of an index matrix, each at most `CHUNK_ELEMENTS` entries (at least one row)."""
    step = max(1, CHUNK_ELEMENTS // max(1, idx.shape[1]))
    for i in range(0, len(idx), step):
        yield idx[i:i + step]


def replicates(stat: Statistic, idx: np.ndarray) -> np.ndarray:
    """``stat`` on every row of ``idx`` (chunked), shape (R,)."""
    return np.concatenate([stat(c) for c in chunks(idx)]) if len(idx) else np.empty(0)


def percentile_interval(x: np.ndarray, level: float = DEFAULT_LEVEL) -> tuple[float, float]:
    x = np.asarray(x, dtype=np.float64)
    x = x[np.isfinite(x)]
    if not len(x):
        return float("nan"), float("nan")
    a = (1.0 - float(level)) / 2.0
    lo, hi = np.quantile(x, [a, 1.0 - a])
    return float(lo), float(hi)


def p_value(diff: float, reps: np.ndarray) -> float:
    """Two-sided centred-difference bootstrap p-value (`P_VALUE`)."""
    reps = np.asarray(reps, dtype=np.float64)
    reps = reps[np.isfinite(reps)]
    if not len(reps) or not np.isfinite(diff):
        return float("nan")
    return float((1 + np.count_nonzero(np.abs(reps - diff) >= abs(diff))) / (len(reps) + 1))


def verdict(lo: float, hi: float, diff: float, higher_is_better: bool | None) -> str:
    """'tie' when the interval contains 0 (or is missing), else which cell is better by the metric's direction;
    '' for a metric without a direction."""
    if higher_is_better is None:
        return ""
    if not (np.isfinite(lo) and np.isfinite(hi)) or lo <= 0.0 <= hi:
        return "tie"
    return "A better" if (diff > 0) == bool(higher_is_better) else "B better"


def paired_bootstrap(a: Statistic, b: Statistic, n: int, resamples: int = DEFAULT_RESAMPLES,
                     seed: int = DEFAULT_SEED, level: float = DEFAULT_LEVEL, higher_is_better: bool | None = None,
                     idx: np.ndarray | None = None, values: tuple[float, float] | None = None) -> dict:
    """The paired bootstrap of ``a - b`` over ``n`` common samples (the same draw for both; ``idx``: a draw
    matrix to reuse, else `draws`; ``values``: the point estimates to report, e.g. the stored values, instead
    of the statistics on the full sample). Returns a dict: value_a, value_b, diff, ci_low, ci_high, p_value, verdict,
    level, resamples, seed, n, and the replicate arrays ``reps_a``/``reps_b`` (for spreads)."""
    idx = draws(n, resamples, seed) if idx is None else idx
    va, vb = (a.full(n), b.full(n)) if values is None else map(float, values)
    ra, rb = replicates(a, idx), replicates(b, idx)
    d = va - vb
    lo, hi = percentile_interval(ra - rb, level)
    return {"value_a": va, "value_b": vb, "diff": d, "ci_low": lo, "ci_high": hi, "p_value": p_value(d, ra - rb),
            "verdict": verdict(lo, hi, d, higher_is_better), "level": level, "resamples": len(idx),
            "seed": seed, "n": n, "reps_a": ra, "reps_b": rb}


def spread(reps: np.ndarray, level: float = DEFAULT_LEVEL) -> float:
    """Half the width of a statistic's own percentile interval: its sampling spread (±) at this n."""
    lo, hi = percentile_interval(reps, level)
    return (hi - lo) / 2.0
