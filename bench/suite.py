"""Load and strictly validate a suite file, and expand it into Cells.

Suites are data: YAML (safe-loaded, no object construction) checked against a strict schema. Every error is
one line that names the file, the key path and what was expected, with a did-you-mean for misspelt keys and
names. An expansion with zero cells is an error.
"""

from __future__ import annotations

import hashlib
import itertools
import math
import posixpath
import re
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from bench import registry
from bench.cell import Cell, SamplePlan
from bench.models.base import ModelSpec

# Sanity caps. `validate` never materialises a sweep before these checks (the cell count is a product of list
# lengths), so a huge sweep is refused in microseconds; the caps keep a typo from planning a run that cannot finish
# or values the store cannot hold (its integer columns are 32-bit).
MAX_CELLS = 100_000              # cells per suite (the paper's whole grid is a few hundred)
MAX_IMAGES = 10_000_000          # samples.n: images per cell (per_reference / uniform) or per class (per_class)
MAX_STEPS = 10_000               # sampler steps per image
MAX_SEED = 2**31 - 1             # seeds are stored as 32-bit integers
MAX_FILE_BYTES = 1 << 20         # a suite file is hand-written data: 1 MiB is far beyond any real one
MAX_NODES = 200_000              # YAML values after alias expansion (stops "billion laughs" alias bombs)


class SuiteError(ValueError):
    """A suite problem, reported as one line: `file: key: message`. The CLI exits with code 2."""

    def __init__(self, msg: str):
        super().__init__(msg.replace("\r", "\\r").replace("\n", "\\n"))    # one line, whatever a key holds


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
        return _sweep_axis(v, "step count", lambda s: 1 <= s <= MAX_STEPS,
                           f"step counts must be >= 1 and <= {MAX_STEPS}")

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
        if any(s < 0 or s > MAX_SEED for s in seeds):
            raise ValueError(f"seeds must be 0..{MAX_SEED}")
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


_UNION_LABELS = {"DatasetEntry", "ModelEntry", "str", "int", "float", "bool", "dict", "list", "none"}


def _loc(loc: tuple) -> str:
    out = ""
    for part in loc:
        if isinstance(part, int):
            out += f"[{part}]"
        elif part in _UNION_LABELS or "[" in str(part) or "function-after" in str(part):
            continue
        else:
            out += f".{part}" if out else str(part)
    return out or "<top level>"


def _fields_at(loc: tuple) -> list[str]:
    """Allowed field names of the schema object at ``loc`` (for did-you-mean on unknown keys)."""
    model: type[BaseModel] | None = SuiteFile
    for part in loc[:-1]:
        if model is None or isinstance(part, int) or part in _UNION_LABELS:
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
    got = _short(err.get("input"))
    if err["type"].endswith("_type") or err["type"].endswith("_parsing"):
        return f"{_loc(loc)}: {msg} (got {got})"
    return f"{_loc(loc)}: {msg}"


def _option_type_error(value, default) -> str | None:
    """What is wrong with an option value, judged by the type of its default (a None default or value: the class
    decides)."""
    if default is None or value is None:
        return None
    if isinstance(default, bool):
        ok, want = isinstance(value, bool), "true or false"
    elif isinstance(default, (int, float)):
        ok = isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)
        want = "a finite number"
    elif isinstance(default, str):
        ok, want = isinstance(value, str), "a string"
    else:
        return None
    return None if ok else f"expected {want}, got {_short(value)}"


def _short(value, limit: int = 80) -> str:
    r = repr(value)
    return r if len(r) <= limit else r[:limit - 3] + "..."


def _dataset_params(cls) -> dict[str, Any] | None:
    """Keyword options a dataset class (or factory) accepts, name -> default (None when it takes **kwargs): the
    runner calls ``cls(source_name, **options)``."""
    import inspect
    try:
        sig = inspect.signature(cls.__init__ if isinstance(cls, type) else cls)
    except (TypeError, ValueError):
        return None
    params = list(sig.parameters.values())[2 if isinstance(cls, type) else 1:]      # (self,) name
    if any(p.kind is p.VAR_KEYWORD for p in params):
        return None
    return {p.name: (None if p.default is p.empty else p.default) for p in params}


def _check_names(s: SuiteFile, path: str) -> None:
    for i, d in enumerate(s.datasets):
        try:
            registry.check("dataset", d.source_name)
        except registry.UnknownName as e:
            key = "source" if d.source else "id"
            raise SuiteError(f"{path}: datasets[{i}].{key}: {e}") from None
        try:
            params = _dataset_params(registry.resolve("dataset", d.source_name))
        except ImportError:         # an optional dependency the run itself will name; options are checked there
            params = None
        for key, value in (d.options.items() if params is not None else ()):
            if key not in params:
                raise SuiteError(f"{path}: datasets[{i}].options.{key}: unknown option for dataset source "
                                 f"{d.source_name!r} ({registry.hint(key, list(params))})")
            bad = _option_type_error(value, params[key])
            if bad:
                raise SuiteError(f"{path}: datasets[{i}].options.{key}: {bad}")
    for name, opts in s.metrics.items():
        try:
            cls = registry.resolve("metric", name)
        except registry.UnknownName as e:
            raise SuiteError(f"{path}: metrics.{name}: {e}") from None
        for key in opts or {}:
            if key not in cls.defaults:
                raise SuiteError(f"{path}: metrics.{name}.{key}: unknown option ({registry.hint(key, cls.defaults)})")
            bad = _option_type_error(opts[key], cls.defaults[key])
            if bad:
                raise SuiteError(f"{path}: metrics.{name}.{key}: {bad}")
    for i, m in enumerate(s.models):
        try:
            registry.check("model adapter", m.adapter)
        except registry.UnknownName as e:
            raise SuiteError(f"{path}: models[{i}].adapter: {e}") from None


# Paths in suites. Option values under path-like keys (root, path, dir, folder, file, weights, or ending in _root,
# _path, ...) and any option value with a '/' or '\\' in it are paths. Absolute paths ('/...', '~/...') are explicit
# and allowed anywhere; '$VAR/rest' is the variable's folder plus a relative rest. A relative path (and the rest of
# '$VAR/rest') must not climb out of the folder it is resolved against: after normalisation it may not start with
# '..' ('a/../b' is fine, '../b' and 'a/../../b' are refused). Hub ids ('org/name', 'hf://...') never climb.
_PATH_KEY = re.compile(r"(^|_)(root|path|dir|folder|file|weights|pretrained)$")
_ENV_PREFIX = re.compile(r"^\$(\{[A-Za-z_][A-Za-z0-9_]*\}|[A-Za-z_][A-Za-z0-9_]*)")


def climbs_out(value: str) -> bool:
    """True for a relative path (or the part after a leading $VAR) that leaves its base folder with '..'."""
    v = value.strip().replace("\\", "/")
    if v.startswith("hf://"):
        v = v[5:]
    m = _ENV_PREFIX.match(v)
    if m:
        v = v[m.end():].lstrip("/")
        if not v:
            return False
    elif v.startswith(("/", "~")) or re.match(r"^[A-Za-z]:/", v):
        return False
    norm = posixpath.normpath(v)
    return norm == ".." or norm.startswith("../")


def _paths(value, key: str, where: str):
    """(location, string) for every path-like string in an option tree."""
    if isinstance(value, dict):
        for k, v in value.items():
            yield from _paths(v, str(k), f"{where}.{k}")
    elif isinstance(value, list):
        for i, v in enumerate(value):
            yield from _paths(v, key, f"{where}[{i}]")
    elif isinstance(value, str) and (_PATH_KEY.search(key) or "/" in value or "\\" in value or value.strip() == ".."):
        yield where, value


def _check_paths(s: SuiteFile, path: str) -> None:
    trees = [(f"datasets[{i}].options", d.options, "options") for i, d in enumerate(s.datasets)]
    trees += [(f"metrics.{name}", opts or {}, name) for name, opts in s.metrics.items()]
    for i, m in enumerate(s.models):
        trees += [(f"models[{i}].weights", m.weights, "weights"), (f"models[{i}].options", m.options, "options")]
    for where, tree, key in trees:
        for loc, value in _paths(tree, key, where):
            if climbs_out(value):
                raise SuiteError(f"{path}: {loc}: relative path {value!r} climbs out of its base folder with '..'; "
                                 f"write an absolute path to use a location outside it")


class _Loader(yaml.CSafeLoader if hasattr(yaml, "CSafeLoader") else yaml.SafeLoader):
    """yaml's safe loader (plain data only: no python/* tags, no object construction) that also refuses duplicate
    keys in a mapping, which plain YAML loading silently resolves to the last value."""

    def construct_mapping(self, node, deep=False):
        if isinstance(node, yaml.MappingNode):
            seen = set()
            for key_node, _ in node.value:
                if key_node.tag == "tag:yaml.org,2002:merge":
                    continue
                key = self.construct_object(key_node, deep=deep)
                try:
                    dup = key in seen
                    seen.add(key)
                except TypeError:        # unhashable key: the base class reports it
                    continue
                if dup:
                    raise yaml.constructor.ConstructorError(None, None, f"duplicate key {key!r}",
                                                            key_node.start_mark)
        return super().construct_mapping(node, deep)


def _expanded_size(data, limit: int) -> int:
    """Values in ``data`` counting every alias use (without expanding anything); stops past ``limit``.
    Raises ValueError on a recursive structure (an alias inside its own anchor)."""
    sizes: dict[int, int] = {}
    on_path: set[int] = set()
    stack = [(data, False)]

    def children(x):
        return [*x.keys(), *x.values()] if isinstance(x, dict) else x

    while stack:
        obj, done = stack.pop()
        if not isinstance(obj, (dict, list)):
            continue
        oid = id(obj)
        if done:
            on_path.discard(oid)
            sizes[oid] = 1 + sum(sizes.get(id(c), 1) if isinstance(c, (dict, list)) else 1 for c in children(obj))
            if sizes[oid] > limit:
                return sizes[oid]
            continue
        if oid in sizes:
            continue
        if oid in on_path:
            raise ValueError("a recursive alias (an alias used inside its own anchor)")
        on_path.add(oid)
        stack.append((obj, True))
        stack.extend((c, False) for c in children(obj) if isinstance(c, (dict, list)) and id(c) not in sizes)
    return sizes.get(id(data), 1)


class Suite:
    """A validated suite: the parsed file plus where it came from."""

    def __init__(self, spec: SuiteFile, path: str, text: str):
        self.spec = spec
        self.path, self.text = path, text
        self.sha256 = hashlib.sha256(text.encode()).hexdigest()

    @property
    def name(self) -> str:
        return self.spec.suite

    @classmethod
    def load(cls, path: str | Path) -> "Suite":
        path = str(path)
        try:
            p = Path(path)
            if p.is_file() and p.stat().st_size > MAX_FILE_BYTES:
                raise SuiteError(f"{path}: suite file is {p.stat().st_size:,} bytes (limit {MAX_FILE_BYTES:,})")
            raw = p.read_bytes()
        except OSError as e:
            raise SuiteError(f"{path}: cannot read suite file ({e.strerror or e})") from None
        try:
            text = raw.decode("utf-8")
        except UnicodeDecodeError as e:
            raise SuiteError(f"{path}: not UTF-8 text (byte {e.start})") from None
        return cls.parse(text, path)

    @classmethod
    def parse(cls, text: str, path: str = "<suite>") -> "Suite":
        if len(text) > MAX_FILE_BYTES:
            raise SuiteError(f"{path}: suite text is {len(text):,} characters (limit {MAX_FILE_BYTES:,})")
        try:
            data = yaml.load(text, Loader=_Loader)    # safe: _Loader is yaml's SafeLoader (plain data only)
        except yaml.YAMLError as e:
            mark = getattr(e, "problem_mark", None)
            where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
            problem = getattr(e, "problem", None) or str(e).splitlines()[0]
            raise SuiteError(f"{path}: invalid YAML{where}: {' '.join(str(problem).split())}") from None
        except RecursionError:
            raise SuiteError(f"{path}: invalid YAML: nested too deeply") from None
        try:
            size = _expanded_size(data, MAX_NODES)
        except ValueError as e:
            raise SuiteError(f"{path}: invalid suite: {e}") from None
        if size > MAX_NODES:
            raise SuiteError(f"{path}: invalid suite: more than {MAX_NODES:,} values once aliases are expanded")
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
        _check_paths(spec, path)
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
            if hasattr(cls, "check_options"):                # adapters that validate their options up front
                try:
                    cls().check_options(dict(m.options))
                except Exception as e:
                    raise SuiteError(f"{self.path}: models[{i}].options: {e}") from None

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
