"""MMHM, the MinMax Harmonic Mean of FID, IS, CLIP Score and PickScore (the paper's exact definition).

Over a comparison set S of rows: u = (max - x) / (max - min) for FID (lower is better) and
u = (x - min) / (max - min) for IS, CLIP and Pick, with min and max over S; a metric whose max == min gets
u = 1 for every row. MMHM = 4 / sum_k 1 / (eps + u_k), eps = 1e-3, so the best possible value is 1.001.
Bounds can be saved from one set and reused on another; values may then leave [0, 1] and are not clipped.
A row missing any of the four inputs gets NaN: a composite never averages a missing value away.

The inputs are part of the definition and so are named here (`COLUMNS`: the store columns they are read
from); so is `OUTPUT`, what the ``mmhm`` column is (higher is better), and the guidance trade-off the report
draws from the same inputs (`FIDELITY` against `ALIGNMENT`). Torch-free.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Sequence

import numpy as np
import pandas as pd

from bench.outputs import Output

METRICS = ("fid", "is", "clip", "pick")
LOWER_IS_BETTER = {"fid"}
EPS = 1e-3
# store column for each MMHM input
COLUMNS = {"fid": "fid", "is": "is", "clip": "clip_score", "pick": "pickscore"}
NAME = "mmhm"
OUTPUT = Output(NAME, True, "MMHM")            # best possible value 1.001
# The guidance trade-off: the fidelity input against the text-alignment inputs, along increasing CFG.
FIDELITY = "fid"
ALIGNMENT = ("clip", "pick")


def compute_bounds(fid: Sequence[float], is_: Sequence[float], clip: Sequence[float],
                   pick: Sequence[float]) -> dict[str, list[float]]:
    """[min, max] of each input over the rows where all four are present."""
    arr = np.column_stack([np.asarray(v, dtype=np.float64) for v in (fid, is_, clip, pick)])
    ok = np.isfinite(arr).all(axis=1)
    if not ok.any():
        raise ValueError("no row has all four MMHM inputs (fid, is, clip, pick)")
    arr = arr[ok]
    return {m: [float(arr[:, k].min()), float(arr[:, k].max())] for k, m in enumerate(METRICS)}


def mmhm(fid: Sequence[float], is_: Sequence[float], clip: Sequence[float], pick: Sequence[float],
         eps: float = EPS, bounds: dict[str, Sequence[float]] | None = None) -> np.ndarray:
    values = {m: np.asarray(v, dtype=np.float64) for m, v in zip(METRICS, (fid, is_, clip, pick))}
    n = {len(v) for v in values.values()}
    if len(n) != 1:
        raise ValueError(f"MMHM inputs must have equal lengths, got {sorted(n)}")
    if bounds is None:
        bounds = compute_bounds(*values.values())
    missing = [m for m in METRICS if m not in bounds]
    if missing:
        raise ValueError(f"MMHM bounds lack {missing}")
    inv = np.zeros(n.pop())
    for m in METRICS:
        lo, hi = map(float, bounds[m])
        x = values[m]
        if hi == lo:
            u = np.where(np.isfinite(x), 1.0, np.nan)
        elif m in LOWER_IS_BETTER:
            u = (hi - x) / (hi - lo)
        else:
            u = (x - lo) / (hi - lo)
        inv = inv + 1.0 / (eps + u)
    return len(METRICS) / inv


def save_bounds(bounds: dict[str, Sequence[float]], path: str | Path) -> None:
    Path(path).write_text(json.dumps({"eps": EPS, "bounds": {m: list(map(float, bounds[m])) for m in METRICS}},
                                     indent=2) + "\n")


def load_bounds(path: str | Path) -> dict[str, list[float]]:
    try:
        data = json.loads(Path(path).read_text())
        b = data["bounds"]
        return {m: [float(b[m][0]), float(b[m][1])] for m in METRICS}
    except (OSError, ValueError, KeyError, TypeError, IndexError) as e:
        raise ValueError(f"{path}: not an MMHM bounds file ({e})") from None


def add_mmhm(df: pd.DataFrame, by: Sequence[str] = ("suite", "dataset"), bounds: dict | None = None,
             exclude_families: Sequence[str] = ("real",)) -> pd.DataFrame:
    """Add an ``mmhm`` (`NAME`) column computed per comparison set (default: per dataset within a suite).

    Rows of excluded families (real-vs-real floors) and rows missing an input get NaN and do not shape bounds.
    """
    out = df.copy()
    out[NAME] = np.nan
    cols = [COLUMNS[m] for m in METRICS]
    if any(c not in out.columns for c in cols) or out.empty:
        return out
    eligible = out[cols].notna().all(axis=1)
    if "family" in out.columns:
        eligible &= ~out["family"].isin(list(exclude_families))
    for _, idx in out[eligible].groupby(list(by), dropna=False).groups.items():
        sub = out.loc[idx, cols]
        out.loc[idx, NAME] = mmhm(*(sub[c].to_numpy() for c in cols), bounds=bounds)
    return out
