"""Metric names, display labels and directions for the report, read from each metric's own declaration.

Every registered metric class declares ``outputs``: output name -> higher is better (``bench.metrics.base``).
The report builds its lookup from those declarations (through ``bench.registry.METRICS``), so a new metric's
direction is never restated here; only display names, which the declarations do not carry, are listed.
MMHM is the composite of ``bench.composite`` (best value 1.001, higher is better).
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache

from bench.composite import COLUMNS as _MMHM_COLUMNS
from bench.composite import METRICS as _MMHM_INPUTS

# Display names for output names (a name not listed is shown as it is stored).
LABELS = {"fid": "FID", "is": "IS", "kid": "KID", "clip_score": "CLIP Score", "pickscore": "PickScore",
          "mmhm": "MMHM"}
# Timing columns used as axes; their direction is a property of time, not of a metric declaration.
AXES = {"latency_s": "latency (s / image, batch 1)", "throughput_ips": "throughput (images / s)",
        "nfe": "NFE (counted, per image)", "nfe_declared": "NFE (declared)", "steps": "steps", "cfg": "CFG scale"}


@dataclass(frozen=True)
class MetricSpec:
    name: str                 # the store's column, e.g. "clip_score"
    label: str                # display name, e.g. "CLIP Score"
    higher_is_better: bool
    source: str               # the declaring metric (registry name) or "composite"

    @property
    def direction(self) -> str:
        return "higher is better" if self.higher_is_better else "lower is better"

    @property
    def arrow(self) -> str:
        return "↑" if self.higher_is_better else "↓"

    @property
    def title(self) -> str:
        return f"{self.label} ({self.direction})"


@lru_cache(maxsize=1)
def metric_specs() -> dict[str, MetricSpec]:
    """Output name -> MetricSpec for every registered metric's declared outputs, plus MMHM."""
    from bench import registry

    specs: dict[str, MetricSpec] = {}
    for metric in registry.METRICS:
        cls = registry.resolve("metric", metric)
        for out, higher in cls.outputs.items():
            specs[out] = MetricSpec(out, LABELS.get(out, out), bool(higher), metric)
    # the composite: its inputs' directions are declared above; MMHM itself grows with quality (best 1.001)
    specs["mmhm"] = MetricSpec("mmhm", LABELS["mmhm"], True, "composite")
    return specs


def spec(name: str) -> MetricSpec:
    try:
        return metric_specs()[name]
    except KeyError:
        raise KeyError(f"{name!r} is not a declared metric output; known: {', '.join(metric_specs())}") from None


def label(name: str) -> str:
    """Display name of a metric output or axis column."""
    specs = metric_specs()
    if name in specs:
        return specs[name].label
    return AXES.get(name, name)


def title(name: str) -> str:
    """'FID (lower is better)' for a metric, the plain label for an axis column."""
    specs = metric_specs()
    return specs[name].title if name in specs else label(name)


def better(name: str, a: float, b: float) -> bool:
    """True when value ``a`` of metric ``name`` is strictly better than ``b``."""
    return a > b if spec(name).higher_is_better else a < b


# The metrics the report plots, in this order, where the sweep has them.
PLOTTED = ("fid", "is", "kid", "clip_score", "pickscore", "mmhm")
# MMHM's inputs as store columns, for the "why no MMHM" note.
MMHM_COLUMNS = tuple(_MMHM_COLUMNS[m] for m in _MMHM_INPUTS)
MMHM_WHY = "MMHM needs " + ", ".join(MMHM_COLUMNS[:-1]) + " and " + MMHM_COLUMNS[-1]
