"""Load and strictly validate a suite file, and expand it into Cells.

Suites are data: YAML (safe-loaded, no object construction) checked against a strict schema. Every error is
one line that names the file, the key path and what was expected, with a did-you-mean for misspelt keys and
names. An expansion with zero cells is an error.
"""

from __future__ import annotations

import hashlib
import itertools
import math
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from bench import registry
from bench.cell import Cell, SamplePlan
from bench.models.base import ModelSpec

MAX_CELLS = 100_000


class SuiteError(ValueError):
    """A suite problem, reported as one line: `file: key: message`. The CLI exits with code 2."""


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class DatasetEntry(_Strict):
    id: str
    source: str | None = None            # registry name; defaults to id
    options: dict[str, Any] = Field(default_factory=dict)

    @property
    def source_name(self) -> str:
        return self.source or self.id


class SamplesEntry(_Strict):
    plan: Literal["per_reference", "per_class", "uniform"] = "per_reference"
    n: int | None = Field(default=None, ge=1)

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


class ModelEntry(_Strict):
    id: str = Field(min_length=1)
    adapter: str
    weights: str | None = None
    options: dict[str, Any] = Field(default_factory=dict)
    steps: list[int] | None = None
    cfg: list[float] | None = None
    solver: list[str] | None = None

    @field_validator("steps")
    @classmethod
    def _steps(cls, v):
        return _sweep_axis(v, "step count", lambda s: s >= 1, "step counts must be >= 1")

    @field_validator("cfg")
    @classmethod
    def _cfg(cls, v):
        return _sweep_axis(v, "guidance scale", lambda c: math.isfinite(c) and c >= 0,
                           "guidance scales must be finite and >= 0")

    @field_validator("solver")
    @classmethod
    def _solver(cls, v):
        if v is not None and not v:
            raise ValueError("must list at least one solver (or leave the key out)")
        return v


class SuiteFile(_Strict):
    suite: str = Field(min_length=1)
    description: str = ""
    seed: int | list[int] = 42
    batch_size: int = Field(default=64, ge=1)
    device: str = "auto"
    dtype: Literal["float32", "bfloat16", "float16"] = "float32"
    samples: SamplesEntry = Field(default_factory=SamplesEntry)
    keep_samples: int = Field(default=8, ge=0)
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
        if any(s < 0 for s in seeds):
            raise ValueError("seeds must be >= 0")
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


def _sweep_axis(values, what: str, ok, rule: str):
    """A sweep axis is absent (None) or a non-empty list whose every value passes ``ok``."""
    if values is None:
        return None
    if not values:
        raise ValueError(f"must list at least one {what}")
    bad = [x for x in values if not ok(x)]
    if bad:
        raise ValueError(f"{rule}, got {bad}")
    return values


def _unique_ids(entries: list, what: str) -> list:
    if not entries:
        raise ValueError(f"must list at least one {what}")
    ids = [e.id for e in entries]
    dup = sorted({i for i in ids if ids.count(i) > 1})
    if dup:
        raise ValueError(f"duplicate {what} ids {dup}")
    return entries


def _loc(loc: tuple) -> str:
    out = ""
    for part in loc:
        if isinstance(part, int):
            out += f"[{part}]"
        elif part in ("DatasetEntry", "str") or "[" in str(part) or "function-after" in str(part):
            continue
        else:
            out += f".{part}" if out else str(part)
    return out or "<top level>"


def _fields_at(loc: tuple) -> list[str]:
    """Allowed field names of the schema object at ``loc`` (for did-you-mean on unknown keys)."""
    model: type[BaseModel] | None = SuiteFile
    for part in loc[:-1]:
        if model is None or isinstance(part, int):
            continue
        f = model.model_fields.get(part)
        if f is None:
            return []
        ann = str(f.annotation)
        model = next((m for m in (DatasetEntry, SamplesEntry, TimingEntry, ModelEntry) if m.__name__ in ann), None)
    return list(model.model_fields) if model else []


def _format(err: dict) -> str:
    loc = err["loc"]
    if err["type"] == "extra_forbidden":
        close = registry.suggest(str(loc[-1]), _fields_at(loc))
        return f"{_loc(loc)}: unknown key" + (f" (did you mean {close!r}?)" if close else "")
    msg = err["msg"].removeprefix("Value error, ")
    if err["type"] == "missing":
        return f"{_loc(loc)}: required key is missing"
    got = err.get("input")
    if err["type"].endswith("_type") or err["type"].endswith("_parsing"):
        return f"{_loc(loc)}: {msg} (got {got!r})"
    return f"{_loc(loc)}: {msg}"


def _check_names(s: SuiteFile, path: str) -> None:
    for i, d in enumerate(s.datasets):
        try:
            registry.check("dataset", d.source_name)
        except registry.UnknownName as e:
            key = "source" if d.source else "id"
            raise SuiteError(f"{path}: datasets[{i}].{key}: {e}") from None
    for name, opts in s.metrics.items():
        try:
            cls = registry.resolve("metric", name)
        except registry.UnknownName as e:
            raise SuiteError(f"{path}: metrics.{name}: {e}") from None
        for key in opts or {}:
            if key not in cls.defaults:
                raise SuiteError(f"{path}: metrics.{name}.{key}: unknown option ({registry.hint(key, cls.defaults)})")
    for i, m in enumerate(s.models):
        try:
            registry.check("model adapter", m.adapter)
        except registry.UnknownName as e:
            raise SuiteError(f"{path}: models[{i}].adapter: {e}") from None


class Suite:
    """A validated suite: the parsed file plus where it came from."""

    def __init__(self, spec: SuiteFile, path: str, text: str):
        self.spec = spec
        self.path = path
        self.sha256 = hashlib.sha256(text.encode()).hexdigest()

    @property
    def name(self) -> str:
        return self.spec.suite

    @classmethod
    def load(cls, path: str | Path) -> "Suite":
        path = str(path)
        try:
            raw = Path(path).read_bytes()
        except OSError as e:
            raise SuiteError(f"{path}: cannot read suite file ({e.strerror})") from None
        try:
            text = raw.decode("utf-8")
        except UnicodeDecodeError as e:
            raise SuiteError(f"{path}: not UTF-8 text (byte {e.start})") from None
        return cls.parse(text, path)

    @classmethod
    def parse(cls, text: str, path: str = "<suite>") -> "Suite":
        try:
            data = yaml.safe_load(text)
        except yaml.YAMLError as e:
            mark = getattr(e, "problem_mark", None)
            where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
            problem = getattr(e, "problem", None) or str(e).splitlines()[0]
            raise SuiteError(f"{path}: invalid YAML{where}: {problem}") from None
        if not isinstance(data, dict):
            raise SuiteError(f"{path}: <top level>: expected a mapping of suite keys, got {type(data).__name__}")
        bad = [k for k in data if not isinstance(k, str)]
        if bad:
            raise SuiteError(f"{path}: {bad[0]!r}: keys must be strings")
        try:
            spec = SuiteFile.model_validate(data)
        except ValidationError as e:
            raise SuiteError(f"{path}: {_format(e.errors()[0])}") from None
        _check_names(spec, path)
        suite = cls(spec, path, text)
        suite._check_models()
        n = suite.count()
        if n == 0:
            raise SuiteError(f"{path}: models: the sweep expands to zero cells")
        if n > MAX_CELLS:
            raise SuiteError(f"{path}: models: the sweep expands to {n} cells (limit {MAX_CELLS})")
        return suite

    def _check_models(self) -> None:
        for i, m in enumerate(self.spec.models):
            cls = registry.resolve("model adapter", m.adapter)
            if getattr(cls, "sweeps", True):
                for key in ("steps", "cfg"):
                    if getattr(m, key) is None:
                        raise SuiteError(f"{self.path}: models[{i}].{key}: required for adapter {m.adapter!r}")
            else:
                for key in ("steps", "cfg", "solver"):
                    if getattr(m, key) is not None:
                        raise SuiteError(f"{self.path}: models[{i}].{key}: adapter {m.adapter!r} takes no {key}")
            solvers = getattr(cls, "solvers", None)
            if solvers is not None and m.solver:
                for j, sv in enumerate(m.solver):
                    if sv not in solvers:
                        raise SuiteError(f"{self.path}: models[{i}].solver[{j}]: unknown solver {sv!r} "
                                         f"({registry.hint(sv, solvers)})")

    def count(self) -> int:
        per_model = [len(m.steps or [None]) * len(m.cfg or [None]) * len(m.solver or [None])
                     for m in self.spec.models]
        return sum(per_model) * len(self.spec.datasets) * len(self.spec.seeds)

    def expand(self) -> list[Cell]:
        s = self.spec
        metrics = {k: dict(v or {}) for k, v in s.metrics.items()}
        plan = SamplePlan(kind=s.samples.plan, n=s.samples.n)
        cells = []
        for m in s.models:
            spec = ModelSpec(id=m.id, adapter=m.adapter, weights=m.weights, options=dict(m.options))
            for d, seed in itertools.product(s.datasets, s.seeds):
                for steps, cfg, solver in itertools.product(m.steps or [None], m.cfg or [None], m.solver or [None]):
                    cells.append(Cell(
                        suite=s.suite, model=spec, dataset=d.id, dataset_source=d.source_name,
                        dataset_options=dict(d.options), steps=steps, cfg=cfg, solver=solver, seed=seed,
                        plan=plan, metrics=metrics, batch_size=s.batch_size, dtype=s.dtype))
        if not cells:
            raise SuiteError(f"{self.path}: models: the sweep expands to zero cells")
        return cells
