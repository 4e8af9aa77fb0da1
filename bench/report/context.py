"""What a report needs from the suite file beyond the store: the order of datasets and models, and each model's
natural guidance scale (`ReportContext`, built by `context_for`).

The file is read as plain YAML data (``yaml.safe_load``) and nothing else: no suite validation, no registry, no
component import, no torch, so a report builds on a machine without the models' code. The path may be a suite
file given on the command line or the ``suite_path`` a run recorded in the store (which may not exist here).

Invariants:

- `context_for` never raises on a bad file: a missing, unreadable, oversized, non-UTF-8 or garbled file, or one
  whose sections have the wrong shape, falls back to the order in which names appear in the frame, and a
  malformed ``natural_cfg`` (not a finite number > 0, or a boolean) is left out. What the file lists but the
  frame lacks is left out of the orders; what the frame has but the file lacks follows the file's names in order
  of appearance. So ``dataset_order`` and ``model_order`` list each name of the frame exactly once.
- ``natural_cfg`` is report metadata only (model id -> scale): it never changes a cell, its key or its numbers.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterable

import pandas as pd
import yaml

MAX_BYTES = 1 << 20          # a suite file is hand-written data (the suite parser's cap, bench.suite.schema)


@dataclass
class ReportContext:
    dataset_order: list[str] = field(default_factory=list)
    model_order: list[str] = field(default_factory=list)
    natural_cfg: dict[str, float] = field(default_factory=dict)   # model id -> its natural CFG scale

    def sort_datasets(self, names: Iterable) -> list:
        """``names`` (each once) in ``dataset_order``, unknown names after them in their given order."""
        return _ordered(names, self.dataset_order)

    def sort_models(self, names: Iterable) -> list:
        """``names`` (each once) in ``model_order``, unknown names after them in their given order."""
        return _ordered(names, self.model_order)


def _ordered(names: Iterable, order: list[str]) -> list:
    seen = list(dict.fromkeys(names))
    rank = {n: i for i, n in enumerate(order)}
    return sorted(seen, key=lambda n: (rank.get(n, len(rank)), seen.index(n)))


def _appearance(df: pd.DataFrame | None, col: str) -> list[str]:
    if df is None or col not in df.columns:
        return []
    return [str(v) for v in dict.fromkeys(df[col].dropna())]


def _read(path) -> dict:
    """The file's top-level mapping, or {} when it cannot be read as one."""
    try:
        p = Path(path)
        if not p.is_file() or p.stat().st_size > MAX_BYTES:
            return {}
        data = yaml.safe_load(p.read_bytes().decode("utf-8"))
    except (OSError, UnicodeDecodeError, yaml.YAMLError, ValueError, TypeError, RecursionError):
        return {}
    return data if isinstance(data, dict) else {}


def _ids(entries) -> list[str]:
    """Ids of a section's entries (a name, or a mapping with a text ``id``), each once; other entries skipped."""
    out = []
    for e in entries if isinstance(entries, list) else []:
        i = e.get("id") if isinstance(e, dict) else e
        if isinstance(i, str) and i and i not in out:
            out.append(i)
    return out


def natural_scale(v) -> float | None:
    """``v`` as a natural CFG scale: a finite number > 0 (not a boolean), else None."""
    if isinstance(v, bool) or not isinstance(v, (int, float)):
        return None
    v = float(v)
    return v if math.isfinite(v) and v > 0 else None


def _naturals(entries) -> dict[str, float]:
    out = {}
    for e in entries if isinstance(entries, list) else []:
        if isinstance(e, dict) and isinstance(e.get("id"), str):
            v = natural_scale(e.get("natural_cfg"))
            if v is not None:
                out.setdefault(e["id"], v)
    return out


def _merge(listed: list[str], present: list[str], have_df: bool) -> list[str]:
    if not have_df:
        return listed
    return [n for n in listed if n in present] + [n for n in present if n not in listed]


def context_for(suite_path: str | Path | None, df: pd.DataFrame | None) -> ReportContext:
    """The context of a suite file (None: none) for frame ``df`` (None: the file's names as they are)."""
    data = _read(suite_path) if suite_path else {}
    have_df = df is not None
    datasets = _merge(_ids(data.get("datasets")), _appearance(df, "dataset"), have_df)
    models = _merge(_ids(data.get("models")), _appearance(df, "model"), have_df)
    return ReportContext(datasets, models, _naturals(data.get("models")))
