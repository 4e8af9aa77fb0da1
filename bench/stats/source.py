"""What the statistics read from a store: cells named by the user, their per-sample scores and kept features.

`resolve` turns a user's cell reference into a key: a full key, a unique key prefix, or ``model:steps:cfg@dataset``
(``@dataset`` may be left out when one dataset matches; ``-`` for a cell without steps or CFG); among the newest
measurement of each sweep point (`bench.store.tidy`), ok cells only. No match or several is a `CellRefError`, one
line (with a did-you-mean for no match). `Recompute` opens, once each, the metric and dataset a cell's stored
config names, and gives each cell's `Statistic`s over a given set of common sample ids: per-sample means from the
``sample_scores`` table (`bench.persample.scores`), set metrics from kept features (`bench.features`, under
``<store folder>/features``; reference features through the metric's own reference cache). Without kept features
a cell has per-sample statistics only.
"""

from __future__ import annotations

import difflib
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from bench.stats import setstats
from bench.stats.paired import Statistic, mean_statistic


class CellRefError(ValueError):
    """A cell reference that names no cell or several: one line; the CLI exits 2."""


def _num(v) -> str:
    if v is None or (isinstance(v, float) and np.isnan(v)) or v is pd.NA:
        return "-"
    f = float(v)
    return str(int(f)) if f.is_integer() else f"{f:g}"


def label(row) -> str:
    """``model:steps:cfg@dataset`` of a tidy row."""
    return f"{row['model']}:{_num(row['steps'])}:{_num(row['cfg'])}@{row['dataset']}"


def resolve(cells: pd.DataFrame, ref: str) -> str:
    """The key of the one ok cell of ``cells`` (a tidy frame) that ``ref`` names (see the module docstring)."""
    ref = str(ref).strip()
    ok = cells[cells["status"] == "ok"] if "status" in cells.columns else cells
    if not len(ok):
        raise CellRefError("the store has no ok cells to compare")
    keys = ok["key"].astype(str)
    if ref in set(keys):
        return ref
    if ":" not in ref:
        hits = keys[keys.str.startswith(ref)] if len(ref) >= 4 else keys.iloc[:0]
        if len(hits) == 1:
            return str(hits.iloc[0])
        if len(hits) > 1:
            raise CellRefError(f"cell {ref!r} is ambiguous: {len(hits)} keys start with it ("
                               f"{', '.join(k[:16] for k in hits[:4])}{', ...' if len(hits) > 4 else ''}); "
                               f"give more characters")
        raise CellRefError(f"no cell matches {ref!r}: give a key, a unique key prefix (4+ characters) or "
                           f"model:steps:cfg@dataset{_did_you_mean(ref, ok)}")
    spec, _, dataset = ref.partition("@")
    parts = spec.rsplit(":", 2)
    if len(parts) != 3:
        raise CellRefError(f"cell {ref!r}: expected model:steps:cfg@dataset (e.g. mini-sit:4:1.5@mini-val)")
    model, steps, cfg = parts
    sel = ok["model"].astype(str) == model
    sel &= _matches(ok["steps"], steps, ref) & _matches(ok["cfg"], cfg, ref)
    if dataset:
        sel &= ok["dataset"].astype(str) == dataset
    hits = ok[sel]
    if len(hits) == 1:
        return str(hits["key"].iloc[0])
    if len(hits) > 1:
        where = sorted({f"{r['suite']}/{r['dataset']}" for _, r in hits.iterrows()})
        raise CellRefError(f"cell {ref!r} is ambiguous: {len(hits)} cells match (in {', '.join(where)}); add "
                           f"@dataset or give a key")
    raise CellRefError(f"no ok cell matches {ref!r}{_did_you_mean(ref, ok)}")


def _matches(col: pd.Series, text: str, ref: str) -> pd.Series:
    if text in ("-", ""):
        return col.isna()
    try:
        v = float(text)
    except ValueError:
        raise CellRefError(f"cell {ref!r}: steps and cfg must be numbers or '-', got {text!r}") from None
    return pd.to_numeric(col, errors="coerce").astype(float) == v


def _did_you_mean(ref: str, ok: pd.DataFrame) -> str:
    names = [label(r) for _, r in ok.iterrows()]
    close = difflib.get_close_matches(ref, names, n=3, cutoff=0.5)
    return f"; did you mean {', '.join(close)}?" if close else ""


@dataclass
class CellData:
    """One cell's resampling material: its tidy row, stored config, per-sample scores (metric -> Series by
    sample id) and kept features (metric -> (state, meta))."""
    key: str
    row: pd.Series
    config: dict[str, Any]
    scores: dict[str, pd.Series] = field(default_factory=dict)
    features: dict[str, tuple[dict, dict]] = field(default_factory=dict)

    def ids(self) -> np.ndarray:
        """The sample ids the cell's material covers (those of every score and feature set)."""
        sets = [set(s.index) for s in self.scores.values()]
        sets += [set(np.asarray(st["ids"]).tolist()) for st, _ in self.features.values()]
        return np.array(sorted(set.intersection(*sets)) if sets else [], dtype=np.int64)


def load_cell(con, db: str | Path, cells: pd.DataFrame, key: str) -> CellData:
    """A cell's `CellData` from the store connection ``con`` (features from `bench.features.root_for` ``db``)."""
    row = cells[cells["key"] == key].iloc[0]
    config = json.loads(con.execute("SELECT config FROM cells WHERE key = ?", [key]).fetchone()[0] or "{}")
    out = CellData(key, row, config)
    from bench import features, persample
    for m, g in persample.scores(con, key).groupby("metric", sort=True):
        out.scores[str(m)] = pd.Series(g["value"].to_numpy(np.float64), index=g["sample_id"].astype(np.int64))
    root = features.root_for(db)
    for m in features.available(root, key):
        out.features[m] = features.load(root, key, m)
    return out


class Recompute:
    """Metrics and datasets of stored cells, each opened once (by its stored name and options), on ``device``
    with reference statistics cached under ``cache_dir`` (a run's default: ``<store folder>/cache``)."""

    def __init__(self, cache_dir: str | Path, device: str = "cpu"):
        self.cache_dir, self.device = Path(cache_dir), device
        self._metrics: dict[str, Any] = {}
        self._datasets: dict[str, Any] = {}
        self._refs: dict[tuple, np.ndarray] = {}

    def metric(self, name: str, options: dict):
        k = json.dumps([name, options], sort_keys=True, default=str)
        if k not in self._metrics:
            import torch

            from bench import registry
            self._metrics[k] = registry.resolve("metric", name)(options, torch.device(self.device), self.cache_dir)
        return self._metrics[k]

    def dataset(self, config: dict):
        src, opts = config["dataset_source"], config.get("dataset_options") or {}
        k = json.dumps([src, opts], sort_keys=True, default=str)
        if k not in self._datasets:
            from bench import registry
            self._datasets[k] = registry.resolve("dataset", src)(src, **opts)
        return self._datasets[k]

    def reference(self, cell: CellData, metric: str) -> np.ndarray:
        """The fixed reference features of ``metric`` for the cell's dataset (float64), computed once."""
        from bench.metrics.base import numerics_mode
        m = self.metric(metric, cell.config["metrics"][metric])
        k = (metric, json.dumps(cell.config["metrics"][metric], sort_keys=True, default=str),
             cell.config["dataset_source"], json.dumps(cell.config.get("dataset_options"), sort_keys=True),
             cell.config.get("numerics"))
        if k not in self._refs:
            with numerics_mode(cell.config.get("numerics")):
                self._refs[k] = m.reference_features(self.dataset(cell.config)).double().numpy()
        return self._refs[k]

    def statistics(self, cell: CellData, ids: np.ndarray, exact: bool = False) -> dict[str, Statistic]:
        import torch
        """Value name -> `Statistic` over positions into ``ids`` (sorted common sample ids): per-sample means,
        the fast set values (`setstats.FAST`) from kept features, and with ``exact`` every value of every kept
        set metric by its own accumulator (which then replaces the fast ones)."""
        out: dict[str, Statistic] = {}
        for m, s in cell.scores.items():
            out[m] = mean_statistic(m, s.reindex(ids).to_numpy())
        for metric, (state, _meta) in cell.features.items():
            pos = _positions(np.asarray(state["ids"]), ids)
            t = torch.as_tensor(pos)
            rows = {k: torch.as_tensor(v).index_select(0, t) for k, v in state["rows"].items()}
            sub = {"rows": rows, "ids": ids, "labels": torch.as_tensor(state["labels"]).index_select(0, t)}
            if exact:
                if metric not in cell.scores:     # a per-sample metric's mean is its per-sample rows' already
                    out.update(self._exact(cell, metric, sub))
                continue
            opts = self.metric(metric, cell.config["metrics"][metric]).opt if any(
                src == metric for src, _ in setstats.FAST) else {}
            for (src, value), (row, kind) in setstats.FAST.items():
                if src != metric or row not in rows:
                    continue
                x = rows[row].double().numpy()
                if kind == "fd":
                    out[value] = setstats.fd_statistic(value, x, self.reference(cell, metric))
                else:
                    out[value] = setstats.is_statistic(value, x, opts.get("isc_splits", 10),
                                                       opts.get("isc_seed", 2020))
        return out

    def _exact(self, cell: CellData, metric: str, state: dict) -> dict[str, Statistic]:
        from bench.metrics.base import numerics_mode
        m = self.metric(metric, cell.config["metrics"][metric])
        ds = self.dataset(cell.config)
        numerics = cell.config.get("numerics")

        def make():
            with numerics_mode(numerics):
                return m.accumulator(ds)
        results = setstats.accumulator_results(make, state)
        with numerics_mode(numerics):
            names = list(results(np.arange(len(state["ids"]))))
        return {v: setstats.accumulator_statistic(v, v, results) for v in names}


def _positions(have: np.ndarray, want: np.ndarray) -> np.ndarray:
    order = np.argsort(have, kind="stable")
    pos = order[np.searchsorted(have[order], want)]
    if not np.array_equal(have[pos], want):
        raise ValueError("kept features lack some of the common sample ids")
    return pos
