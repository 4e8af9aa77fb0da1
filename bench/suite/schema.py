"""The suite file's schema: strict pydantic models (unknown keys are errors, nothing is coerced) and the sanity caps.

`validate` never materialises a sweep before the caps are checked (the cell count is a product of list lengths), so
a huge sweep is refused in microseconds; the caps keep a typo from planning a run that cannot finish or values the
store cannot hold (its integer columns are 32-bit).
"""

from __future__ import annotations

import math
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from bench.latency_rule import DEFAULT_MAX_SECONDS, DEFAULT_TARGET, REPEATS_FACTOR

MAX_CELLS = 100_000              # cells per suite (the paper's whole grid is a few hundred)
MAX_IMAGES = 10_000_000          # samples.n: images per cell (per_reference / uniform) or per class (per_class)
MAX_STEPS = 10_000               # sampler steps per image
MAX_SEED = 2**31 - 1             # seeds are stored as 32-bit integers
MAX_FILE_BYTES = 1 << 20         # a suite file is hand-written data: 1 MiB is far beyond any real one
MAX_NODES = 200_000              # YAML values after alias expansion (stops "billion laughs" alias bombs)


class _Strict(BaseModel):
    # strict: no silent coercion ('4' is not 4, true is not 1, 1.5 is not a step count)
    model_config = ConfigDict(extra="forbid", frozen=True, strict=True)


class DatasetEntry(_Strict):
    id: str
    source: str | None = None            # registry name; defaults to id
    options: dict[str, Any] = Field(default_factory=dict)

    @property
    def source_name(self) -> str:
        return self.source or self.id


class SamplesEntry(_Strict):
    plan: Literal["per_reference", "per_class", "uniform"] = "per_reference"
    n: int | None = Field(default=None, ge=1, le=MAX_IMAGES)

    @model_validator(mode="after")
    def _n_needed(self):
        if self.plan != "per_reference" and self.n is None:
            raise ValueError(f"plan {self.plan!r} needs n (per_class: images per class; uniform: total)")
        return self


class TimingEntry(_Strict):
    enabled: bool = True
    warmup: int = Field(default=1, ge=0)
    repeats: int = Field(default=5, ge=1)
    throughput_repeats: int = Field(default=2, ge=1)
    throughput: Literal["separate", "bulk"] = "separate"   # bulk: from the bulk pass's batches after the first
    # per_setting: batch-1 latency measured once per model, settings, dtype and device within a run and shared by
    # the cells that differ only in dataset or sample plan (it does not depend on them); per_cell: every cell times it
    latency: Literal["per_setting", "per_cell"] = "per_setting"
    # batch-1 latency is timed until IQR / median <= iqr_target (null: exactly `repeats` calls, the fixed rule), with
    # at least `repeats` and at most `max_repeats` timed calls (null: 2 x repeats) and no new call once the timed
    # calls took `max_seconds` (bench.latency_rule). Timing settings never enter a cell's key.
    iqr_target: float | None = Field(default=DEFAULT_TARGET, ge=0, allow_inf_nan=False)
    max_repeats: int | None = Field(default=None, ge=1)
    max_seconds: float = Field(default=DEFAULT_MAX_SECONDS, gt=0, allow_inf_nan=False)

    @model_validator(mode="after")
    def _bounds(self):
        if self.max_repeats is not None and self.max_repeats < self.repeats:
            raise ValueError(f"max_repeats ({self.max_repeats}) must be >= repeats ({self.repeats}): repeats is the "
                             f"fewest timed batch-1 calls, max_repeats the most")
        return self

    @property
    def repeat_cap(self) -> int:
        """The most timed batch-1 calls: ``max_repeats``, or REPEATS_FACTOR x ``repeats`` when unset."""
        return self.max_repeats if self.max_repeats is not None else REPEATS_FACTOR * self.repeats


def _sweep_axis(values, what: str, ok, rule: str):
    """A sweep axis is absent (None) or a non-empty list whose every value passes ``ok``."""
    if values is None:
        return None
    if not values:
        raise ValueError(f"must list at least one {what}")
    bad = [x for x in values if not ok(x)]
    if bad:
        raise ValueError(f"{rule}, got {bad}")
    return _no_repeats(values, what)


def _no_repeats(values: list, what: str) -> list:
    """A sweep axis lists each value once: a repeat would plan and compute the same cell twice."""
    seen, dup = set(), []
    for x in values:
        if x in seen and x not in dup:
            dup.append(x)
        seen.add(x)
    if dup:
        raise ValueError(f"lists the {what} {', '.join(map(repr, dup))} more than once (each value once: a repeat "
                         f"would compute the same cell twice)")
    return values


class ModelEntry(_Strict):
    id: str = Field(min_length=1)
    adapter: str
    weights: str | None = None
    options: dict[str, Any] = Field(default_factory=dict)
    steps: list[int] | None = None
    cfg: list[float] | None = None
    solver: list[str] | None = None
    # the model's own guidance scale (the paper's "natural" CFG): report metadata only, never part of a cell or
    # its key; the fair report's matched-settings table resolves its "natural" column with it
    natural_cfg: float | None = None

    @field_validator("steps")
    @classmethod
    def _steps(cls, v):
        return _sweep_axis(v, "step count", lambda s: 1 <= s <= MAX_STEPS,
                           f"step counts must be >= 1 and <= {MAX_STEPS}")

    @field_validator("cfg")
    @classmethod
    def _cfg(cls, v):
        return _sweep_axis(v, "guidance scale", lambda c: math.isfinite(c) and c >= 0,
                           "guidance scales must be finite and >= 0")

    @field_validator("natural_cfg")
    @classmethod
    def _natural_cfg(cls, v):
        if v is not None and not (math.isfinite(v) and v > 0):
            raise ValueError(f"the natural guidance scale must be finite and > 0, got {v!r}")
        return v

    @field_validator("solver")
    @classmethod
    def _solver(cls, v):
        if v is not None and not v:
            raise ValueError("must list at least one solver (or leave the key out)")
        return v if v is None else _no_repeats(v, "solver")


def _unique_ids(entries: list, what: str) -> list:
    if not entries:
        raise ValueError(f"must list at least one {what}")
    ids = [e.id for e in entries]
    dup = sorted({i for i in ids if ids.count(i) > 1})
    if dup:
        raise ValueError(f"duplicate {what} ids {dup}")
    return entries


class SuiteFile(_Strict):
    suite: str = Field(min_length=1)
    description: str = ""
    seed: int | list[int] = 42
    batch_size: int = Field(default=64, ge=1)
    device: str = "auto"
    dtype: Literal["float32", "bfloat16", "float16"] = "float32"
    # strict: metric networks in float32 exactly (TF32 off); tf32: metric forwards and generation may use TF32 on
    # GPUs that have it (faster, features drift from the float32 reference): keyed apart (bench.cell.Cell.numerics)
    numerics: Literal["strict", "tf32"] = "strict"
    samples: SamplesEntry = Field(default_factory=SamplesEntry)
    keep_samples: int = Field(default=8, ge=0)
    # keep each cell's per-sample accumulator rows (network features, scores) in <store folder>/features
    # (bench.features) for `bench rescore` and paired statistics; changes no value, so it is in no cell key
    keep_features: bool = False
    timing: TimingEntry = Field(default_factory=TimingEntry)
    datasets: list[DatasetEntry | str]
    metrics: dict[str, dict[str, Any] | None]
    models: list[ModelEntry]

    @field_validator("datasets")
    @classmethod
    def _datasets(cls, v):
        return _unique_ids([DatasetEntry(id=d) if isinstance(d, str) else d for d in v], "dataset")

    @field_validator("models")
    @classmethod
    def _models(cls, v):
        return _unique_ids(v, "model")

    @field_validator("seed")
    @classmethod
    def _seed(cls, v):
        seeds = [v] if isinstance(v, int) else v
        if not seeds:
            raise ValueError("must list at least one seed")
        if any(s < 0 or s > MAX_SEED for s in seeds):
            raise ValueError(f"seeds must be 0..{MAX_SEED}")
        _no_repeats(seeds, "seed")
        return v

    @field_validator("device")
    @classmethod
    def _device(cls, v):
        if v not in ("auto", "cpu") and not v.startswith("cuda"):
            raise ValueError(f"expected 'auto', 'cpu' or 'cuda[:N]', got {v!r}")
        return v

    @property
    def seeds(self) -> list[int]:
        return [self.seed] if isinstance(self.seed, int) else list(self.seed)


SECTIONS = (DatasetEntry, SamplesEntry, TimingEntry, ModelEntry)
UNION_LABELS = {"DatasetEntry", "ModelEntry", "str", "int", "float", "bool", "dict", "list", "none"}


def loc_text(loc: tuple) -> str:
    out = ""
    for part in loc:
        if isinstance(part, int):
            out += f"[{part}]"
        elif part in UNION_LABELS or "[" in str(part) or "function-after" in str(part):
            continue
        else:
            out += f".{part}" if out else str(part)
    return out or "<top level>"


def fields_at(loc: tuple) -> list[str]:
    """Allowed field names of the schema object at ``loc`` (for did-you-mean on unknown keys)."""
    model: type[BaseModel] | None = SuiteFile
    for part in loc[:-1]:
        if model is None or isinstance(part, int) or part in UNION_LABELS:
            continue
        f = model.model_fields.get(part)
        if f is None:
            return []
        ann = str(f.annotation)
        model = next((m for m in SECTIONS if m.__name__ in ann), None)
    return list(model.model_fields) if model else []
