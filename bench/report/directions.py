"""Metric names, labels, directions and formats for presentation, read from the store (never from a metric class).

`Specs` is the lookup every table and plot uses: built by `from_outputs` from `bench.store.outputs` (what each
stored value is, recorded beside it by the metric that computed it) plus MMHM, the composite of
`bench.composite`. So a metric appears in `bench show`, the HTML tables, the leaderboards and the plots the
moment its values are stored, with its own label and direction, and building a report imports no metric (and
no torch). Presentation code names no metric: only timing axes (a property of time, not of a metric) are
labelled here, and MMHM's inputs come from `bench.composite`.

Invariants: `Specs.ranked` lists the names with a direction (True / False) in the store's display order, MMHM
last; a companion statistic (direction None: std, interval bound) is never ranked; a name the store does not
describe is shown under its own name and never ranked.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Iterable, Iterator

import pandas as pd

from bench import composite

# Timing columns used as axes; their direction is a property of time, not of a metric declaration.
AXES = {"latency_s": "latency (s / image, batch 1)", "throughput_ips": "throughput (images / s)",
        "nfe": "NFE (counted, per image)", "nfe_declared": "NFE (declared)", "steps": "steps", "cfg": "CFG scale"}
# MMHM's inputs as store columns, for the "why no MMHM" note.
MMHM_COLUMNS = tuple(composite.COLUMNS[m] for m in composite.METRICS)
MMHM_WHY = "MMHM needs " + ", ".join(MMHM_COLUMNS[:-1]) + " and " + MMHM_COLUMNS[-1]


@dataclass(frozen=True)
class MetricSpec:
    name: str                       # the store's column, e.g. "clip_score"
    label: str                      # display name, e.g. "CLIP Score"
    higher_is_better: bool | None   # None: a companion statistic, shown but never ranked
    source: str                     # the metric that stored it (registry name), or "composite"
    unit: str = ""
    fmt: str = ".4g"

    @property
    def ranked(self) -> bool:
        return self.higher_is_better is not None

    @property
    def direction(self) -> str:
        if self.higher_is_better is None:
            return "not ranked"
        return "higher is better" if self.higher_is_better else "lower is better"

    @property
    def arrow(self) -> str:
        return "" if self.higher_is_better is None else "↑" if self.higher_is_better else "↓"

    @property
    def title(self) -> str:
        unit = f", {self.unit}" if self.unit else ""
        return f"{self.label} ({self.direction}{unit})"

    def format(self, v: float) -> str:
        try:
            return format(float(v), self.fmt)
        except (TypeError, ValueError):
            return f"{float(v):.4g}"


class Specs:
    """Name -> MetricSpec in display order (the store's order, then MMHM)."""

    def __init__(self, specs: Iterable[MetricSpec]):
        self._specs = {s.name: s for s in specs}

    def __contains__(self, name: object) -> bool:
        return name in self._specs

    def __iter__(self) -> Iterator[str]:
        return iter(self._specs)

    def __len__(self) -> int:
        return len(self._specs)

    def __getitem__(self, name: str) -> MetricSpec:
        return self.spec(name)

    def spec(self, name: str) -> MetricSpec:
        try:
            return self._specs[name]
        except KeyError:
            raise KeyError(f"{name!r} is not a stored metric output; known: {', '.join(self._specs)}") from None

    def get(self, name: str) -> MetricSpec | None:
        return self._specs.get(name)

    def ranked(self, df: pd.DataFrame | None = None, lead: bool = False) -> list[str]:
        """The ranked names in display order (MMHM last, or first with ``lead``); with ``df``, only those with
        at least one value in it, and MMHM whenever ``df`` has its column (a table then says why it is empty)."""
        names = [n for n, s in self._specs.items() if s.ranked and n != composite.NAME]
        names = [composite.NAME, *names] if lead else [*names, composite.NAME]
        if df is None:
            return names
        return [n for n in names if n in df.columns and (n == composite.NAME or df[n].notna().any())]

    def label(self, name: str) -> str:
        """Display name of a metric output or axis column."""
        s = self._specs.get(name)
        return s.label if s is not None else AXES.get(name, name)

    def title(self, name: str) -> str:
        """'FID (lower is better)' for a ranked metric, the plain label for anything else."""
        s = self._specs.get(name)
        return s.title if s is not None and s.ranked else self.label(name)

    def arrow(self, name: str) -> str:
        s = self._specs.get(name)
        return s.arrow if s is not None else ""

    def higher_is_better(self, name: str) -> bool:
        """The direction of a ranked metric (a KeyError names the metric when it has none)."""
        s = self.spec(name)
        if s.higher_is_better is None:
            raise KeyError(f"{name!r} is not ranked (a companion statistic)")
        return s.higher_is_better

    def better(self, name: str, a: float, b: float) -> bool:
        """True when value ``a`` of metric ``name`` is strictly better than ``b``."""
        return a > b if self.higher_is_better(name) else a < b


def _text(v, default: str) -> str:
    return default if v is None or (isinstance(v, float) and pd.isna(v)) or v is pd.NA else str(v)


def from_outputs(outputs: pd.DataFrame) -> Specs:
    """Specs from a `bench.store.outputs` frame (rows in display order), plus MMHM."""
    specs = []
    for r in outputs.itertuples(index=False):
        hib = r.higher_is_better
        hib = None if hib is None or hib is pd.NA or (isinstance(hib, float) and pd.isna(hib)) else bool(hib)
        specs.append(MetricSpec(r.metric, _text(r.label, r.metric), hib, _text(r.source, ""),
                                _text(r.unit, ""), _text(r.fmt, ".4g")))
    o = composite.OUTPUT
    specs.append(MetricSpec(o.name, o.label, o.higher_is_better, "composite", o.unit, o.fmt))
    return Specs(specs)


def from_declared(outputs: Iterable, source: str = "") -> Specs:
    """Specs from `bench.outputs.Output` declarations in display order (a frame not read from a store)."""
    from bench.store import OUTPUT_COLUMNS
    rows = [(o.name, o.higher_is_better, o.label, o.unit, o.fmt, source, i) for i, o in enumerate(outputs)]
    return from_outputs(pd.DataFrame(rows, columns=OUTPUT_COLUMNS))


def from_store(con_or_db) -> Specs:
    """Specs of everything stored in a store (a path, a `ResultStore` or a DuckDB connection)."""
    from bench.store import outputs
    return from_outputs(outputs(con_or_db))
