"""A Cell is one point of a sweep: (model, steps, cfg, solver, dataset, seed, sample plan, metrics).

Its key is a sha256 over canonical JSON of everything that changes the numbers: the model spec and its
weights' content hash, the adapter's code version, the sampler settings, the dataset's content fingerprint,
the seed and sample plan, and every metric's name, options and code version. Two cells with equal keys
produce equal numbers; a change to any of those inputs gives a new key (no name-keyed caches).
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, dataclass, field
from typing import Any

KEY_SCHEMA = "cell-key-1"


def canonical_json(obj: Any) -> str:
    return json.dumps(obj, sort_keys=True, separators=(",", ":"), default=str, ensure_ascii=True)


@dataclass(frozen=True)
class ModelSpec:
    """What a suite says about one model: its id, adapter name, weights location and adapter options."""
    id: str
    adapter: str
    weights: str | None = None
    options: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class SamplerSettings:
    """How one cell samples: step count (the paper's N intervals), guidance scale, solver, seed, extras."""
    steps: int
    cfg: float
    solver: str | None = None
    seed: int = 0
    options: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class SamplePlan:
    """How labels are drawn: one per reference image (the paper), k per class, or uniform random."""
    kind: str = "per_reference"      # per_reference | per_class | uniform
    n: int | None = None             # per_reference: first n references (None = all); per_class: k; uniform: total

    def describe(self) -> str:
        return self.kind if self.n is None else f"{self.kind}:{self.n}"


@dataclass(frozen=True)
class Cell:
    suite: str
    model: ModelSpec
    dataset: str                      # dataset id within the suite
    dataset_source: str
    dataset_options: dict[str, Any]
    steps: int | None
    cfg: float | None
    solver: str | None
    seed: int
    plan: SamplePlan
    metrics: dict[str, dict[str, Any]]   # metric name -> options
    batch_size: int
    dtype: str = "float32"
    extras: dict[str, Any] = field(default_factory=dict)   # free-form, not part of the key
    limit: int | None = None          # a smoke run (`bench run --limit N`): at most N samples of the plan
    numerics: str | None = None       # None: strict float32 metric forwards; "tf32": the suite opted into TF32

    def settings(self) -> SamplerSettings:
        return SamplerSettings(steps=self.steps or 0, cfg=1.0 if self.cfg is None else float(self.cfg),
                               solver=self.solver, seed=self.seed, options=self.model.options)

    def config(self) -> dict[str, Any]:
        """The frozen run spec stored beside every result (everything but batch size and extras). A smoke run's
        ``limit`` is part of it, so of the key; a cell without one has exactly the config (and key) it had before
        limits existed: the field is left out when None. ``numerics`` likewise: a suite that opts into TF32
        (`bench.metrics.base.numerics_mode`) gets keys of its own, a strict one keeps its keys."""
        out = {
            "suite": self.suite, "model": asdict(self.model), "dataset": self.dataset,
            "dataset_source": self.dataset_source, "dataset_options": self.dataset_options,
            "steps": self.steps, "cfg": self.cfg, "solver": self.solver, "seed": self.seed,
            "plan": asdict(self.plan), "metrics": self.metrics, "dtype": self.dtype,
        }
        if self.limit is not None:
            out["limit"] = self.limit
        if self.numerics is not None:
            out["numerics"] = self.numerics
        return out

    def key(self, *, adapter_version: str, weights_id: str, dataset_fingerprint: str,
            metric_versions: dict[str, str]) -> str:
        """Content key. Batch size is deliberately absent: results do not depend on it (tested)."""
        payload = {
            "schema": KEY_SCHEMA, "cell": self.config(), "adapter_version": adapter_version, "weights": weights_id,
            "dataset_fingerprint": dataset_fingerprint, "metric_versions": metric_versions,
        }
        return hashlib.sha256(canonical_json(payload).encode()).hexdigest()


@dataclass(frozen=True)
class CellSpec:
    """Everything a worker needs to generate and score a cell, or a shard of it, and nothing it must not touch:
    the cell (model spec with validated options, sampler settings, dataset spec, plan, metric specs), its content
    key and its weights identity. Frozen and picklable (it crosses to Ray workers); the driver keeps the store."""
    cell: Cell
    key: str
    weights_id: str


@dataclass(frozen=True)
class RunSettings:
    """What a worker engine needs from the suite beyond its cells: device, cache folder, kept samples, timing
    options (the suite's `timing` section as a dict), progress bars, and the --include modules it imports."""
    device: str
    cache_dir: str
    keep_samples: int = 8
    timing: dict[str, Any] = field(default_factory=dict)
    progress: bool = True
    includes: tuple[str, ...] = ()
