"""Sample-size guidance: FID and MMHM of a cell against n, over nested subsets of its samples.

The common sample ids of a comparison set are put in one seeded order (``numpy.random.default_rng(seed)``
permutation); the subset of size n is the first n of that order (taken in id order, as an accumulator sorts
its rows: IS depends on the order through its splits), so subsets are nested (n = 125 lies inside
n = 250) and the same ids for every cell (paired across cells). At each n: each requested cell's FID on the subset
and its spread (half the width of the ``level`` bootstrap interval of FID from ``resamples`` draws of n within the
subset: the sampling error a difference must beat), and its MMHM with bounds recomputed over the set's eligible
cells on the same subset. FID grows as n shrinks (its bias is about 1/n) and the spread falls as about 1/sqrt(n):
a difference smaller than the spread at the n you ran is not a claim. Needs kept features (FID, IS) and
per-sample scores (CLIP Score, PickScore); a cell without them is left out.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from bench import composite
from bench.stats import paired
from bench.stats.source import CellData, Recompute

COLUMNS = ["key", "n", "fid", "fid_spread", "mmhm"]
DEFAULT_RESAMPLES = 100
FIDELITY = composite.COLUMNS[composite.FIDELITY]


def sizes_for(n: int, points: int = 5, smallest: int = 50) -> list[int]:
    """Nested subset sizes n, n/2, n/4, ... (at least ``smallest``, at most ``points``), ascending."""
    out, m = [], int(n)
    while m >= min(smallest, n) and len(out) < points:
        out.append(m)
        m //= 2
    return sorted(set(out))


def sample_size(g: pd.DataFrame, keys: list[str], cells: dict[str, CellData], rec: Recompute,
                sizes: list[int] | None = None, resamples: int = DEFAULT_RESAMPLES, seed: int = paired.DEFAULT_SEED,
                level: float = paired.DEFAULT_LEVEL) -> pd.DataFrame:
    """Rows (key, n, fid, fid_spread, mmhm) for each of ``keys`` with material, at each subset size; ``g``: the
    comparison set's tidy rows (its eligible cells give MMHM's bounds at each n; MMHM is NaN where one lacks
    material). Empty (with `COLUMNS`) when no cell has kept features."""
    from bench.stats.ranks import common_ids
    have = {k: c for k, c in cells.items() if c.features}
    ids = common_ids(have)
    if not len(ids):
        return pd.DataFrame(columns=COLUMNS)
    order = np.random.default_rng(int(seed)).permutation(len(ids))
    sizes = sizes or sizes_for(len(ids))
    stats = {k: rec.statistics(c, ids) for k, c in have.items()}
    elig = [k for k in g[composite.eligible(g)]["key"]]
    inputs = [composite.COLUMNS[m] for m in composite.METRICS]
    mm_ok = bool(elig) and all(k in stats and all(i in stats[k] for i in inputs) for k in elig)
    rows = []
    for n in sizes:
        sub = np.sort(order[:n])        # a subset is a set of ids: in id order, as an accumulator sees it
        mm = {}
        if mm_ok:
            vals = [[stats[k][i](sub[None])[0] for k in elig] for i in inputs]
            mm = dict(zip(elig, composite.mmhm(*vals)))
        inner = sub[paired.draws(n, resamples, seed + n)]
        for k in keys:
            if k not in stats or FIDELITY not in stats[k]:
                continue
            s = stats[k][FIDELITY]
            rows.append({"key": k, "n": n, "fid": s(sub[None])[0],
                         "fid_spread": paired.spread(paired.replicates(s, inner), level),
                         "mmhm": float(mm.get(k, np.nan))})
    return pd.DataFrame(rows, columns=COLUMNS)
