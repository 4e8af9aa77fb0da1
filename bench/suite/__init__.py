"""Load and strictly validate a suite file, and expand it into Cells.

Suites are data: YAML (safe-loaded, no object construction) checked against a strict schema (`schema`), then every
named component and its options against the registries (`checks`) and every path against the climbing rule
(`paths`). Every problem of a file is reported at once, one line each naming the file, the key path and what was
expected, with a did-you-mean for misspelt keys and names (an unknown key is named even when a required key is
missing too). An expansion with zero cells is an error.
"""

from __future__ import annotations

import hashlib
import itertools
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from bench import registry
from bench.cell import Cell, ModelSpec, SamplePlan
from bench.options import suggest
from bench.suite.checks import check_datasets, check_metrics, check_models, check_pairs, dataset_kinds
from bench.suite.errors import Problems, SuiteError
from bench.suite.paths import check_paths, climbs_out
from bench.suite.schema import (
    MAX_CELLS,
    MAX_FILE_BYTES,
    MAX_IMAGES,
    MAX_NODES,
    MAX_SEED,
    MAX_STEPS,
    UNION_LABELS,
    DatasetEntry,
    ModelEntry,
    SamplesEntry,
    SuiteFile,
    TimingEntry,
    fields_at,
    loc_text,
)
from bench.suite.yaml_read import read_yaml

__all__ = ["Suite", "SuiteError", "SuiteFile", "climbs_out", "MAX_CELLS", "MAX_FILE_BYTES", "MAX_IMAGES",
           "MAX_NODES", "MAX_SEED", "MAX_STEPS", "DatasetEntry", "ModelEntry", "SamplesEntry", "TimingEntry"]


def _short(value, limit: int = 80) -> str:
    r = repr(value)
    return r if len(r) <= limit else r[:limit - 3] + "..."


def _schema_problem(err: dict) -> tuple[str, str]:
    loc = err["loc"]
    if err["type"] == "extra_forbidden":
        close = suggest(str(loc[-1]), fields_at(loc))
        return loc_text(loc), "unknown key" + (f" (did you mean {close!r}?)" if close else "")
    msg = err["msg"].removeprefix("Value error, ")
    if err["type"] == "missing":
        return loc_text(loc), "required key is missing"
    if err["type"].endswith("_type") or err["type"].endswith("_parsing"):
        return loc_text(loc), f"{msg} (got {_short(err.get('input'))})"
    return loc_text(loc), msg


def _schema_problems(errors: list[dict]) -> list[tuple[str, str]]:
    """One (key, message) per problem: unknown keys first; of a union's members (``seed: int | list``, a dataset
    given as a name or a mapping) the one that matched deepest speaks, and members that failed at the same depth
    are merged into one line."""
    by_pos: dict[tuple, list[dict]] = {}
    for err in errors:
        loc = tuple(err["loc"])
        cut = next((i for i, part in enumerate(loc) if part in UNION_LABELS or "[" in str(part)), len(loc))
        by_pos.setdefault(loc[:cut], []).append(err)
    chosen = []
    for pos, errs in by_pos.items():
        members = {tuple(e["loc"])[len(pos)] if len(e["loc"]) > len(pos) else None for e in errs}
        if len(members) > 1:
            deepest = max(len(e["loc"]) for e in errs)
            deep = [e for e in errs if len(e["loc"]) == deepest]
            errs = deep if deepest > len(pos) + 1 else errs
        chosen.extend(errs)
    merged: dict[str, list[str]] = {}
    for err in sorted(chosen, key=lambda x: x["type"] != "extra_forbidden"):
        key, msg = _schema_problem(err)
        if msg not in merged.setdefault(key, []):
            merged[key].append(msg)
    return [(k, ms[0] if len(ms) == 1 else "expected one of: " + "; or ".join(ms)) for k, ms in merged.items()]


def _entries(data: dict, spec: SuiteFile | None, section: str, model) -> list[tuple[int, Any]]:
    """(index, parsed entry) of a list section: from the validated spec, or, when the file as a whole did not
    validate, each raw entry that validates on its own (so its names and options are checked too)."""
    if spec is not None:
        return list(enumerate(getattr(spec, section)))
    raw = data.get(section)
    out = []
    for i, e in enumerate(raw if isinstance(raw, list) else []):
        try:
            out.append((i, model(id=e) if isinstance(e, str) and model is DatasetEntry else model.model_validate(e)))
        except ValidationError:
            continue
    return out


class Suite:
    """A validated suite: the parsed file, the validated options of its components, and where it came from."""

    def __init__(self, spec: SuiteFile, path: str, text: str, model_options: dict[str, dict],
                 dataset_options: dict[str, dict], metric_options: dict[str, dict],
                 kinds: dict[str, tuple[str, bool]] | None = None):
        self.spec = spec
        self.path, self.text = path, text
        self.sha256 = hashlib.sha256(text.encode()).hexdigest()
        self.model_options, self.dataset_options, self.metric_options = model_options, dataset_options, metric_options
        self.dataset_kinds = kinds or {}        # id -> (conditioning, has_images) (`checks.dataset_kinds`)

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

    @staticmethod
    def name_of(path: str | Path) -> str:
        """The ``suite:`` name of a suite file, read safely without validating the rest (no component is
        imported: what `bench report --suite FILE` needs, torch-free)."""
        try:
            text = Path(path).read_bytes()[:MAX_FILE_BYTES + 1].decode("utf-8")
        except (OSError, UnicodeDecodeError) as e:
            raise SuiteError(f"{path}: cannot read suite file ({e})") from None
        name = read_yaml(text, str(path)).get("suite")
        if not isinstance(name, str) or not name:
            raise SuiteError(f"{path}: suite: required key is missing")
        return name

    @classmethod
    def parse(cls, text: str, path: str = "<suite>") -> "Suite":
        data = read_yaml(text, path)
        problems = Problems(path)
        spec = None
        try:
            spec = SuiteFile.model_validate(data)
        except ValidationError as e:
            for key, msg in _schema_problems(e.errors()):
                problems.add(key, msg)
        models = _entries(data, spec, "models", ModelEntry)
        datasets = _entries(data, spec, "datasets", DatasetEntry)
        raw_metrics = spec.metrics if spec is not None else data.get("metrics")
        metrics = raw_metrics if isinstance(raw_metrics, dict) else {}
        dataset_options = check_datasets(datasets, problems)
        metric_options = check_metrics({k: v for k, v in metrics.items() if isinstance(k, str)}, problems)
        model_options = check_models(models, problems)
        kinds = dataset_kinds(datasets, dataset_options)
        plan = spec.samples.plan if spec is not None else None
        check_pairs(models, model_options, kinds, metric_options, plan, problems)
        trees = [(f"datasets[{i}].options", d.options, "options") for i, d in datasets]
        trees += [(f"metrics.{name}", opts or {}, name) for name, opts in metrics.items() if isinstance(opts, dict)]
        for i, m in models:
            trees += [(f"models[{i}].weights", m.weights, "weights"), (f"models[{i}].options", m.options, "options")]
        check_paths(trees, problems)
        problems.raise_if_any()
        suite = cls(spec, path, text, model_options, dataset_options, metric_options, kinds)
        n = suite.count()
        if n == 0:
            raise SuiteError(f"{path}: models: the sweep expands to zero cells")
        if n > MAX_CELLS:
            raise SuiteError(f"{path}: models: the sweep expands to {n} cells (limit {MAX_CELLS})")
        return suite

    def count(self) -> int:
        per_model = [len(m.steps or [None]) * len(m.cfg or [None]) * len(m.solver or [None])
                     for m in self.spec.models]
        return sum(per_model) * len(self.spec.datasets) * len(self.spec.seeds)

    def expand(self) -> list[Cell]:
        """Every cell, carrying validated options (defaults filled in) for its model, dataset and metrics. On a
        prompt-only dataset (no reference images) the metrics that compare with reference images are left out of
        its cells: absent from their rows, never a NaN."""
        s = self.spec
        metrics = {k: dict(self.metric_options[k]) for k in s.metrics}
        image_free = {k: v for k, v in metrics.items() if not registry.resolve("metric", k).needs_reference}
        plan = SamplePlan(kind=s.samples.plan, n=s.samples.n)
        cells = []
        for m in s.models:
            spec = ModelSpec(id=m.id, adapter=m.adapter, weights=m.weights, options=dict(self.model_options[m.id]))
            for d, seed in itertools.product(s.datasets, s.seeds):
                has_images = self.dataset_kinds.get(d.id, ("class", True))[1]
                for steps, cfg, solver in itertools.product(m.steps or [None], m.cfg or [None], m.solver or [None]):
                    cells.append(Cell(
                        suite=s.suite, model=spec, dataset=d.id, dataset_source=d.source_name,
                        dataset_options=dict(self.dataset_options[d.id]), steps=steps, cfg=cfg, solver=solver,
                        seed=seed, plan=plan, metrics=metrics if has_images else image_free,
                        batch_size=s.batch_size, dtype=s.dtype,
                        numerics=None if s.numerics == "strict" else s.numerics))
        if not cells:
            raise SuiteError(f"{self.path}: models: the sweep expands to zero cells")
        return cells
