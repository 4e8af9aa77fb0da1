"""Rank intervals for a leaderboard: a paired bootstrap of every model's rank.

One comparison set (one dataset of a suite, a smoke cap apart: `bench.report.leaderboard.boards`) shares sample
ids, so one draw of ids (`bench.stats.paired.draws`) resamples every cell at once. Per replicate, each cell's
inputs are recomputed from the drawn samples (FID and IS from kept features, CLIP Score and PickScore from
per-sample scores: `bench.stats.source.Recompute`), MMHM is recomputed over all eligible cells of the set with
`bench.composite.mmhm` (bounds recomputed per replicate from the replicate's values, as a rerun would), and the
models' picked cells (one per model: the leaderboard's) are ranked, 1 = best by the metric's direction, equal
values sharing the best rank. A model's rank interval is the ``level`` percentile interval of its replicate
ranks (lower and higher order statistics, so whole ranks): "rank 1-2".

Ties: a model is marked tied with the board's best (its point rank 1) when the paired ``level`` interval of its
value minus the best's contains 0 (the same rule as `bench compare`'s 'tie'); overlapping rank intervals alone
are not a tie. Without material for every eligible cell (features of the set metrics, scores of the per-sample
ones) a metric gets no intervals and `rank_intervals` says why in ``attrs["note"]``. Invariant: point ranks are
those of the stored values; nothing here changes a value.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from bench import composite
from bench.stats import paired
from bench.stats.source import CellData, Recompute, load_cell

DEFAULT_RESAMPLES = 200
COLUMNS = ["model", "key", "value", "rank", "rank_lo", "rank_hi", "rank_text", "tie", "diff_lo", "diff_hi"]
NO_FEATURES = ("no kept features for every cell of this board: MMHM has no rank intervals (keep_features: true); "
               "only per-sample metrics (CLIP Score, PickScore) have intervals")


def min_ranks(x: np.ndarray) -> np.ndarray:
    """Ranks along the last axis, smallest first, ties sharing the best rank (scipy's ``rankdata(method="min")``):
    1 + the number of strictly smaller values. Rows are few models, so the (..., M, M) comparison is cheap."""
    x = np.asarray(x, dtype=np.float64)
    return (x[..., None, :] < x[..., :, None]).sum(axis=-1) + 1


def common_ids(cells: dict[str, CellData]) -> np.ndarray:
    sets = [c.ids() for c in cells.values()]
    return np.array(sorted(set.intersection(*map(set, sets))) if sets else [], dtype=np.int64)


def replicate_values(cells: dict[str, CellData], names: list[str], rec: Recompute, idx: np.ndarray,
                     ids: np.ndarray) -> dict[str, dict[str, np.ndarray]] | None:
    """key -> value name -> (R,) replicate values on the draw ``idx``; None when a cell lacks one of ``names``."""
    out = {}
    for k, c in cells.items():
        stats = rec.statistics(c, ids)
        if any(n not in stats for n in names):
            return None
        out[k] = {n: paired.replicates(stats[n], idx) for n in names}
    return out


def mmhm_replicates(g: pd.DataFrame, cells: dict[str, CellData], rec: Recompute, idx: np.ndarray,
                    ids: np.ndarray) -> dict[str, np.ndarray] | None:
    """key -> (R,) MMHM per replicate for the eligible cells of ``g`` (bounds recomputed per replicate)."""
    elig = g[composite.eligible(g)]
    keys = [k for k in elig["key"] if k in cells]
    if not keys or len(keys) < len(elig):
        return None
    inputs = [composite.COLUMNS[m] for m in composite.METRICS]
    reps = replicate_values({k: cells[k] for k in keys}, inputs, rec, idx, ids)
    if reps is None:
        return None
    arr = {c: np.stack([reps[k][c] for k in keys], axis=1) for c in inputs}     # (R, cells)
    vals = np.stack([composite.mmhm(*(arr[c][b] for c in inputs)) for b in range(len(idx))])
    return {k: vals[:, j] for j, k in enumerate(keys)}


def rank_intervals(g: pd.DataFrame, picks: dict[str, str], cells: dict[str, CellData], rec: Recompute,
                   metric: str = composite.NAME, higher_is_better: bool = True,
                   resamples: int = DEFAULT_RESAMPLES, seed: int = paired.DEFAULT_SEED,
                   level: float = paired.DEFAULT_LEVEL) -> pd.DataFrame:
    """Per model of ``picks`` (model -> picked cell key, cells of ``g``): its stored value of ``metric``, point
    rank, rank interval and tie with the best (`COLUMNS`); ``cells``: the `CellData` of ``g``'s cells.
    ``attrs``: resamples, seed, level, note ('' when intervals were computed)."""
    picks = {m: k for m, k in picks.items() if isinstance(k, str)}
    vals = g.drop_duplicates("key").set_index("key")[metric] if metric in g.columns else pd.Series(dtype=float)
    point = np.array([float(vals.get(k, np.nan)) for k in picks.values()])
    sign = -1.0 if higher_is_better else 1.0
    ok = np.isfinite(point)
    prank = np.full(len(point), np.nan)
    if ok.any():
        prank[ok] = min_ranks(sign * point[ok])
    out = pd.DataFrame({"model": list(picks), "key": list(picks.values()), "value": point, "rank": prank})
    for c in COLUMNS[4:]:
        out[c] = np.nan if c != "rank_text" else ""
    out["tie"] = ""
    out["rank_text"] = [f"rank {int(r)}" if np.isfinite(r) else "" for r in prank]
    out.attrs.update(resamples=resamples, seed=seed, level=level, metric=metric, note="")
    ids = common_ids(cells)
    if not len(ids) or not ok.any():
        out.attrs["note"] = NO_FEATURES if metric == composite.NAME else f"no per-sample material for {metric}"
        return out
    idx = paired.draws(len(ids), resamples, seed)
    if metric == composite.NAME:
        reps = mmhm_replicates(g, cells, rec, idx, ids)
    else:
        r = replicate_values({k: cells[k] for k in picks.values() if k in cells}, [metric], rec, idx, ids)
        reps = None if r is None else {k: v[metric] for k, v in r.items()}
    if reps is None or any(k not in reps for k in np.array(list(picks.values()))[ok]):
        out.attrs["note"] = NO_FEATURES if metric == composite.NAME else f"no per-sample material for {metric}"
        return out
    keys = [k for k, o in zip(picks.values(), ok) if o]
    mat = np.stack([reps[k] for k in keys], axis=1)                                 # (R, models)
    signed = sign * mat
    signed[~np.isfinite(signed)] = np.inf                                          # a failed replicate: last
    ranks = min_ranks(signed)
    a = (1.0 - level) / 2.0
    lo = np.quantile(ranks, a, axis=0, method="lower")
    hi = np.quantile(ranks, 1.0 - a, axis=0, method="higher")
    best = keys[int(np.nanargmin(sign * point[ok]))]
    dlo, dhi = [], []
    for k in keys:
        lo_d, hi_d = paired.percentile_interval(reps[k] - reps[best], level)
        dlo.append(lo_d)
        dhi.append(hi_d)
    rows = out.index[ok]
    out.loc[rows, "rank_lo"], out.loc[rows, "rank_hi"] = lo, hi
    out.loc[rows, "diff_lo"], out.loc[rows, "diff_hi"] = dlo, dhi
    out.loc[rows, "rank_text"] = [f"rank {int(x)}" if x == y else f"rank {int(x)}-{int(y)}" for x, y in zip(lo, hi)]
    tie = ["best" if k == best else ("tie" if lo_d <= 0.0 <= hi_d else "") for k, lo_d, hi_d in zip(keys, dlo, dhi)]
    out.loc[rows, "tie"] = tie
    return out


def board_cells(con, db, g: pd.DataFrame) -> dict[str, CellData]:
    """The `CellData` of every ok cell of a board ``g`` (a tidy frame's rows) with material (scores or features)."""
    out = {}
    for k in g.loc[g["status"] == "ok", "key"].drop_duplicates():
        c = load_cell(con, db, g, k)
        if c.scores or c.features:
            out[k] = c
    return out
