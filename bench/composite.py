"""MMHM, the MinMax Harmonic Mean of FID, IS, CLIP Score and PickScore (the paper's exact definition).

Over a comparison set S of rows: u = (max - x) / (max - min) for FID (lower is better) and
u = (x - min) / (max - min) for IS, CLIP and Pick, with min and max over S; a metric whose max == min gets
u = 1 for every row. MMHM = 4 / sum_k 1 / (eps + u_k), eps = 1e-3, so the best possible value is 1.001.
Bounds can be saved from one set and reused on another; values may then leave [0, 1] and are not clipped.
A row missing any of the four inputs gets NaN: a composite never averages a missing value away.

Saved bounds (`read_bounds_file` / `write_bounds_file`) are per dataset, ``{dataset or "*": bounds}``, since a
comparison set is one dataset of a suite; "*" applies to every dataset the file does not name. They replace the
computed bounds of full cells only: a smoke run's cells (``limit`` set) keep the bounds of their own cap.
Files are written with full floats (nothing rounded); the paper's shape (5 significant figures) reads too.

The inputs are part of the definition and so are named here (`COLUMNS`: the store columns they are read
from); so is `OUTPUT`, what the ``mmhm`` column is (higher is better), and the guidance trade-off the report
draws from the same inputs (`FIDELITY` against `ALIGNMENT`). Torch-free.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Mapping, Sequence

import numpy as np
import pandas as pd

from bench.outputs import Output

METRICS = ("fid", "is", "clip", "pick")
LOWER_IS_BETTER = {"fid"}
EPS = 1e-3
# store column for each MMHM input
COLUMNS = {"fid": "fid", "is": "is", "clip": "clip_score", "pick": "pickscore"}
NAME = "mmhm"
REAL = "real"        # the family of real-vs-real rows: each metric's reference, never an MMHM row nor a competitor
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


def eligible(df: pd.DataFrame, exclude_families: Sequence[str] = (REAL,)) -> pd.Series:
    """Rows that get an MMHM and shape its bounds: all four inputs present, family not excluded."""
    cols = [COLUMNS[m] for m in METRICS]
    if any(c not in df.columns for c in cols):
        return pd.Series(False, index=df.index)
    ok = df[cols].notna().all(axis=1)
    if "family" in df.columns:
        ok &= ~df["family"].isin(list(exclude_families))
    return ok


def is_full(df: pd.DataFrame) -> pd.Series:
    """Full cells: no smoke-run cap (``limit`` <NA> or absent)."""
    return df["limit"].isna() if "limit" in df.columns else pd.Series(True, index=df.index)


def add_mmhm(df: pd.DataFrame, by: Sequence[str] = ("suite", "dataset"), bounds: dict | None = None,
             exclude_families: Sequence[str] = (REAL,),
             dataset_bounds: Mapping[str, Mapping[str, Sequence[float]]] | None = None) -> pd.DataFrame:
    """Add an ``mmhm`` (`NAME`) column computed per comparison set (default: per dataset within a suite).

    Rows of excluded families (real-vs-real floors) and rows missing an input get NaN and do not shape bounds.
    ``bounds``: one set for every comparison set. ``dataset_bounds`` (``{dataset or "*": bounds}``, e.g. from
    `read_bounds_file`): saved bounds for the full cells of each dataset; smoke cells (``limit`` set) keep their
    computed bounds; a full cell whose dataset the mapping does not cover is a ValueError naming it.
    """
    out = df.copy()
    out[NAME] = np.nan
    cols = [COLUMNS[m] for m in METRICS]
    if any(c not in out.columns for c in cols) or out.empty:
        return out
    todo = eligible(out, exclude_families)
    if dataset_bounds is not None:                 # saved bounds: full cells, per dataset
        saved = todo & is_full(out)
        for d, idx in out[saved].groupby("dataset", sort=False).groups.items():
            sub = out.loc[idx, cols]
            out.loc[idx, NAME] = mmhm(*(sub[c].to_numpy() for c in cols), bounds=bounds_for(dataset_bounds, d))
        todo &= ~saved
    for _, idx in out[todo].groupby(list(by), dropna=False).groups.items():
        sub = out.loc[idx, cols]
        out.loc[idx, NAME] = mmhm(*(sub[c].to_numpy() for c in cols), bounds=bounds)
    return out


# The comparison sets of the tidy frame (bench.store.tidy): per dataset of a suite, a smoke run's cap apart.
TIDY_BY = ("suite", "dataset", "limit")
ANY = "*"                               # the bounds key that stands for every dataset a file does not name
# the paper's bounds file names the inputs by their display names
PAPER_KEYS = {"FID": "fid", "IS": "is", "CLIP Score": "clip", "Pick Score": "pick"}


def bounds_for(dataset_bounds: Mapping[str, Mapping[str, Sequence[float]]], dataset) -> dict[str, list[float]]:
    """The saved bounds of ``dataset`` (its own entry, else "*"); ValueError naming it when neither exists."""
    b = dataset_bounds.get(str(dataset), dataset_bounds.get(ANY))
    if b is None:
        named = ", ".join(sorted(map(str, dataset_bounds))) or "none"
        raise ValueError(f"no MMHM bounds for dataset {str(dataset)!r} (the bounds cover {named})")
    return {m: [float(b[m][0]), float(b[m][1])] for m in METRICS}


def _one_set(b, where: str, keys: Mapping[str, str] | None = None) -> dict[str, list[float]]:
    """One bounds set, checked: each input a finite [min, max] with min <= max (``keys``: file name -> input;
    values ``{"min", "max"}`` for the paper's shape, a two-item list for ours)."""
    if not isinstance(b, Mapping):
        raise ValueError(f"{where}: expected an object of the four inputs, got {type(b).__name__}")
    keys = keys or {m: m for m in METRICS}
    missing = [k for k in keys if k not in b]
    if missing:
        raise ValueError(f"{where}: lacks {', '.join(missing)} (needs {', '.join(keys)})")
    out = {}
    for k, m in keys.items():
        v = b[k]
        pair = (v.get("min"), v.get("max")) if isinstance(v, Mapping) else v
        if not isinstance(pair, (list, tuple)) or len(pair) != 2 or not all(
                isinstance(x, (int, float)) and not isinstance(x, bool) for x in pair):
            raise ValueError(f"{where}: {k} must give a numeric min and max, got {json.dumps(v, default=str)[:60]}")
        lo, hi = map(float, pair)
        if not (math.isfinite(lo) and math.isfinite(hi)):
            raise ValueError(f"{where}: {k} bounds must be finite, got [{lo}, {hi}]")
        if lo > hi:
            raise ValueError(f"{where}: {k} min {lo} is above its max {hi}")
        out[m] = [lo, hi]
    return out


def parse_bounds(data, where: str = "MMHM bounds") -> dict[str, dict[str, list[float]]]:
    """``{dataset or "*": bounds}`` from a bounds document: ours ``{"eps", "datasets": {dataset: {fid, is, clip,
    pick: [min, max]}}}``, the single-set ``{"eps", "bounds": {...}}`` (for every dataset), the paper's
    ``{"FID": {"min", "max"}, "IS", "CLIP Score", "Pick Score"}`` (for every dataset), or a plain mapping
    ``{fid, is, clip, pick}`` / ``{dataset: {fid, ...}}``. ValueError (prefixed by ``where``) when it is none."""
    if not isinstance(data, Mapping) or not data:
        raise ValueError(f"{where}: expected a JSON object of MMHM bounds")
    if "eps" in data:
        eps = data["eps"]
        if not isinstance(eps, (int, float)) or isinstance(eps, bool) or float(eps) != EPS:
            raise ValueError(f"{where}: eps {eps!r} is not MMHM's eps {EPS}")
    if "datasets" in data:
        sets = data["datasets"]
        if not isinstance(sets, Mapping) or not sets:
            raise ValueError(f"{where}: 'datasets' must name at least one dataset")
        return {str(d): _one_set(b, f"{where}: dataset {d!r}") for d, b in sets.items()}
    if "bounds" in data:
        return {ANY: _one_set(data["bounds"], where)}
    if any(k in data for k in PAPER_KEYS):
        return {ANY: _one_set(data, where, PAPER_KEYS)}
    if any(k in data for k in METRICS):
        return {ANY: _one_set(data, where)}
    rest = {k: v for k, v in data.items() if k != "eps"}
    if rest and all(isinstance(v, Mapping) for v in rest.values()):
        return {str(d): _one_set(b, f"{where}: dataset {d!r}") for d, b in rest.items()}
    raise ValueError(f"{where}: not an MMHM bounds file (expected 'datasets', 'bounds' or the paper's "
                     f"{', '.join(PAPER_KEYS)})")


def read_bounds_file(path: str | Path) -> dict[str, dict[str, list[float]]]:
    """``{dataset or "*": bounds}`` read from a bounds file (`parse_bounds`'s shapes); ValueError, one line
    naming the file and what is wrong (unreadable, not JSON, incomplete, min above max)."""
    try:
        text = Path(path).read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as e:
        raise ValueError(f"{path}: cannot read MMHM bounds ({e.strerror or e.__class__.__name__})") from None
    try:
        data = json.loads(text)
    except ValueError as e:
        raise ValueError(f"{path}: not valid JSON ({e})") from None
    return parse_bounds(data, str(path))


def as_dataset_bounds(obj) -> dict[str, dict[str, list[float]]] | None:
    """``bench.load``'s ``mmhm_bounds``: None, a bounds file's path, or a mapping (`parse_bounds`)."""
    if obj is None:
        return None
    if isinstance(obj, (str, Path)):
        return read_bounds_file(obj)
    return parse_bounds(obj)


def write_bounds_file(dataset_bounds: Mapping[str, Mapping[str, Sequence[float]]], path: str | Path,
                      source: str | None = None) -> None:
    """Write ``{dataset or "*": bounds}`` in our shape, full floats (``source``: a note on where they came
    from, kept in the file and ignored when read)."""
    head = [f'  "eps": {json.dumps(EPS)},'] + ([f'  "source": {json.dumps(source)},'] if source else [])
    sets = [f"    {json.dumps(str(d))}: " + json.dumps({m: [float(b[m][0]), float(b[m][1])] for m in METRICS})
            for d, b in dataset_bounds.items()]            # one dataset a line; json.dumps floats round-trip
    text = "\n".join(["{", *head, '  "datasets": {', ",\n".join(sets), "  }", "}"]) + "\n"
    Path(path).write_text(text, encoding="utf-8")


def bounds_used(df: pd.DataFrame, applied: Mapping[str, Mapping[str, Sequence[float]]] | None = None
                ) -> dict[str, dict[str, list[float]]]:
    """Per dataset, the bounds `add_mmhm` used for the full cells of ``df``: ``applied`` (saved bounds, e.g.
    `read_bounds_file`'s) where given, else recomputed from the eligible full cells of each (suite, dataset).
    Datasets with no eligible full cell are left out; a dataset whose computed bounds differ between suites is a
    ValueError (pass one suite)."""
    rows = df[eligible(df) & is_full(df)]
    out: dict[str, dict[str, list[float]]] = {}
    for _, g in rows.groupby([c for c in ("suite", "dataset") if c in rows.columns], sort=True):
        d = str(g["dataset"].iloc[0])
        b = bounds_for(applied, d) if applied is not None else compute_bounds(
            *(g[COLUMNS[m]].to_numpy() for m in METRICS))
        if d in out and out[d] != b:
            raise ValueError(f"dataset {d!r} has different MMHM bounds in different suites: pick one suite")
        out[d] = b
    return out
