"""`compare(db, a, b)`: is cell A really better than cell B? One row per ranked metric of the two cells.

Each metric with material in both cells (per-sample scores, or kept features for a set metric) gets a paired
bootstrap (`bench.stats.paired`): the same draw of sample ids for A and B, over the ids both cells hold, the
reference set fixed. Other metrics get their stored values and difference, with a note saying why there is no
interval (no kept features: ``keep_features: true``; a set value without a fast path: ``exact=True``). The
verdict is 'tie' when the interval contains 0, else 'A better' / 'B better' by the metric's stored direction
(`bench.store.outputs`). Values and differences are the stored ones (a fast path's full-sample FID may differ
from torch-fidelity's in the last digits). The frame's ``attrs`` carry the two keys and labels, resamples, seed,
the p-value's definition and `spread_line`: FID's (else the first bootstrapped metric's) sampling spread at n.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from bench.stats import paired
from bench.stats.source import CellData, CellRefError, Recompute, label, load_cell, resolve

COLUMNS = ["metric", "label", "higher_is_better", "value_a", "value_b", "diff", "ci_low", "ci_high", "p_value",
           "verdict", "n", "resamples", "seed", "basis", "note"]
NO_FEATURES = "no kept features (keep_features: true in the suite): only per-sample metrics have intervals"
NOT_FAST = "no interval by default for this set value: pass exact=True (bench compare --exact)"


def open_cells(db: str | Path):
    """(connection-holding store, tidy frame of the newest ok measurements, outputs) of a store, read-only."""
    from bench.store import ResultStore, outputs, tidy
    store = ResultStore(db, read_only=True)
    return store, tidy(store.con), outputs(store.con)


def compare(db: str | Path, a: str, b: str, resamples: int = paired.DEFAULT_RESAMPLES, seed: int = paired.DEFAULT_SEED,
            level: float = paired.DEFAULT_LEVEL, exact: bool = False, cache_dir: str | Path | None = None,
            device: str = "cpu") -> pd.DataFrame:
    """The paired comparison of cells ``a`` and ``b`` (keys, unique key prefixes or ``model:steps:cfg@dataset``):
    one row per ranked metric stored for either cell (`COLUMNS`). Raises `CellRefError` for a reference that
    names no cell or several, and for two cells without common sample ids."""
    store, cells, outs = open_cells(db)
    try:
        ka, kb = resolve(cells, a), resolve(cells, b)
        ca, cb = load_cell(store.con, db, cells, ka), load_cell(store.con, db, cells, kb)
    finally:
        store.close()
    rec = Recompute(Path(db).parent / "cache" if cache_dir is None else cache_dir, device)
    return compare_cells(ca, cb, outs, rec, resamples, seed, level, exact)


def compare_cells(ca: CellData, cb: CellData, outs: pd.DataFrame, rec: Recompute, resamples: int, seed: int,
                  level: float, exact: bool = False) -> pd.DataFrame:
    ids = np.intersect1d(ca.ids(), cb.ids())
    has_material = bool(ca.scores or ca.features) and bool(cb.scores or cb.features)
    if has_material and not len(ids):
        raise CellRefError(f"cells {label(ca.row)} and {label(cb.row)} share no sample ids: not a paired pair")
    sa = rec.statistics(ca, ids, exact) if len(ids) else {}
    sb = rec.statistics(cb, ids, exact) if len(ids) else {}
    idx = paired.draws(len(ids), resamples, seed) if len(ids) else None
    ranked = outs[outs["higher_is_better"].notna()]
    rows, reps = [], {}
    for _, o in ranked.iterrows():
        m = o["metric"]
        va, vb = ca.row.get(m, np.nan), cb.row.get(m, np.nan)
        if pd.isna(va) and pd.isna(vb):
            continue
        hib = bool(o["higher_is_better"])
        row = {"metric": m, "label": o["label"] or m, "higher_is_better": hib, "n": len(ids),
               "resamples": resamples, "seed": seed}
        if m in sa and m in sb:
            stored = (va, vb) if pd.notna(va) and pd.notna(vb) else None      # the store's values are the point
            r = paired.paired_bootstrap(sa[m], sb[m], len(ids), resamples, seed, level, hib, idx, stored)
            reps[m] = r
            row.update({k: r[k] for k in ("value_a", "value_b", "diff", "ci_low", "ci_high", "p_value", "verdict")},
                       basis=sa[m].kind, note="")
        else:
            row.update(value_a=float(va), value_b=float(vb), diff=float(va) - float(vb), ci_low=np.nan,
                       ci_high=np.nan, p_value=np.nan, verdict="", basis="stored values",
                       note=NOT_FAST if (ca.features and cb.features) else NO_FEATURES)
        rows.append(row)
    out = pd.DataFrame(rows, columns=COLUMNS)
    out.attrs.update({"a": ca.key, "b": cb.key, "label_a": label(ca.row), "label_b": label(cb.row),
                      "resamples": resamples, "seed": seed, "level": level, "p_value": paired.P_VALUE,
                      "features": bool(ca.features and cb.features),
                      "spread_line": spread_line(reps, out, len(ids), level)})
    return out


def spread_line(reps: dict[str, dict], out: pd.DataFrame, n: int, level: float) -> str:
    """'FID's spread at n=500: ±x (A), ±y (B); unpaired, differences below that are not claims; n ∝ 1/spread²' from the
    bootstrap replicates; FID when it was bootstrapped, else the first bootstrapped metric."""
    if not reps:
        return "no bootstrapped metric: no sample-size guidance (store per-sample scores or keep features)"
    m = "fid" if "fid" in reps else next(iter(reps))
    lab = out.set_index("metric").at[m, "label"]
    sa, sb = paired.spread(reps[m]["reps_a"], level), paired.spread(reps[m]["reps_b"], level)
    s = max(sa, sb)
    return (f"{lab}'s spread at n={n}: ±{sa:.3g} (A), ±{sb:.3g} (B); compared unpaired (other seeds, another "
            f"paper), differences below that are not claims; the paired interval above can resolve smaller ones "
            f"when A and B share noise (the spread falls as 1/sqrt(n): halving it takes n={4 * n})"
            if np.isfinite(s) else
            f"{lab}'s spread at n={n} could not be estimated")
