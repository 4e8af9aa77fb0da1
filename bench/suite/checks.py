"""What a suite names, checked against the registries: every dataset source, metric and adapter exists, and its
options validate against the component's declared ``Options`` model (`bench.options`). Each problem is one line
(`file: datasets[i].options.key: ...`, `metrics.name.key: ...`, `models[i].options.key: ...`), all reported at once.

The validated options (defaults filled in) are what the cells carry and what their keys hash, so
``options: {}`` and the defaults spelt out give the same key.
"""

from __future__ import annotations

from typing import Any

from bench import registry
from bench.options import OptionsError
from bench.suite.errors import Problems
from bench.suite.schema import DatasetEntry, ModelEntry


def _component(kind: str, name: str, where: str, problems: Problems):
    """The registered class, or None after recording why it cannot be had."""
    try:
        return registry.resolve(kind, name)
    except registry.UnknownName as e:
        problems.add(where, str(e))
    except registry.RegistryError as e:
        problems.add(where, str(e))
    except ImportError as e:
        problems.add(where, f"{kind} {name!r} cannot be imported ({type(e).__name__}: {e}); install the package "
                            f"it needs")
    return None


def _options(cls, options: dict[str, Any] | None, where: str, problems: Problems) -> dict[str, Any] | None:
    try:
        return cls.validate_options(options)
    except OptionsError as e:
        for key, msg in e.problems:
            problems.add(f"{where}.{key}" if key else where, msg)
    return None


def check_datasets(entries: list[tuple[int, DatasetEntry]], problems: Problems) -> dict[str, dict[str, Any]]:
    """dataset id -> validated options, for the entries that pass."""
    out = {}
    for i, d in entries:
        cls = _component("dataset", d.source_name, f"datasets[{i}].{'source' if d.source else 'id'}", problems)
        if cls is not None:
            opts = _options(cls, d.options, f"datasets[{i}].options", problems)
            if opts is not None:
                out[d.id] = opts
    return out


def check_metrics(metrics: dict[str, Any], problems: Problems) -> dict[str, dict[str, Any]]:
    """metric name -> validated options, for the metrics that pass."""
    out = {}
    for name, opts in metrics.items():
        cls = _component("metric", name, f"metrics.{name}", problems)
        if cls is not None:
            if opts is not None and not isinstance(opts, dict):
                problems.add(f"metrics.{name}", f"expected a mapping of options (or nothing), got {opts!r}")
                continue
            valid = _options(cls, opts or {}, f"metrics.{name}", problems)
            if valid is not None:
                out[name] = valid
    return out


def check_models(entries: list[tuple[int, ModelEntry]], problems: Problems) -> dict[str, dict[str, Any]]:
    """model id -> validated options; also the axes each adapter declares (sweeps, solvers)."""
    out = {}
    for i, m in entries:
        cls = _component("model adapter", m.adapter, f"models[{i}].adapter", problems)
        if cls is None:
            continue
        if cls.sweeps:
            for key in ("steps", "cfg"):
                if getattr(m, key) is None:
                    problems.add(f"models[{i}].{key}", f"required for adapter {m.adapter!r}")
        else:
            for key in ("steps", "cfg", "solver"):
                if getattr(m, key) is not None:
                    problems.add(f"models[{i}].{key}", f"adapter {m.adapter!r} takes no {key}")
        if cls.solvers is not None and m.solver:
            for j, sv in enumerate(m.solver):
                if sv not in cls.solvers:
                    problems.add(f"models[{i}].solver[{j}]",
                                 f"unknown solver {sv!r} ({registry.hint(sv, cls.solvers)})")
        opts = _options(cls, m.options, f"models[{i}].options", problems)
        if opts is not None:
            out[m.id] = opts
            for j, n in enumerate(m.steps or []):
                why = cls.check_steps(opts, n)
                if why:
                    problems.add(f"models[{i}].steps[{j}]", why)
    return out


def dataset_kinds(datasets: list[tuple[int, DatasetEntry]], dataset_options: dict[str, dict[str, Any]]
                  ) -> dict[str, tuple[str, bool]]:
    """dataset id -> (conditioning, has_images) (`bench.data.base.Dataset.describes`), for the entries that passed
    their own checks; known without opening any data."""
    out = {}
    for _, d in datasets:
        if d.id in dataset_options:
            cls = registry.resolve("dataset", d.source_name)
            out[d.id] = cls.describes(d.source_name, dataset_options[d.id])
    return out


def check_pairs(models: list[tuple[int, ModelEntry]], model_options: dict[str, dict[str, Any]],
                kinds: dict[str, tuple[str, bool]], metric_options: dict[str, dict[str, Any]], plan: str | None,
                problems: Problems) -> None:
    """What each model x dataset and metric x dataset pair needs: a caption set takes a ``per_reference`` plan and
    models that take captions (`bench.models.base.Generator.check_conditioning`); a metric that compares with
    reference images needs at least one dataset that has them (on prompt-only sets it is left out of the cell)."""
    captioned = [d for d, (cond, _) in kinds.items() if cond == "caption"]
    if captioned and plan not in (None, "per_reference"):
        problems.add("samples.plan", f"dataset {captioned[0]!r} gives each item its own caption: the plan must be "
                                     f"per_reference (sample i is made from caption i), not {plan!r}")
    for i, m in models:
        if m.id not in model_options:
            continue
        cls = registry.resolve("model adapter", m.adapter)
        for d, (cond, _) in kinds.items():
            why = cls.check_conditioning(model_options[m.id], cond)
            if why:
                problems.add(f"models[{i}].adapter", f"dataset {d!r}: {why}")
    if kinds and not any(has for _, has in kinds.values()):
        for name in metric_options:
            if registry.resolve("metric", name).needs_reference:
                problems.add(f"metrics.{name}", f"compares with reference images, and no dataset of the suite has "
                                                f"any ({', '.join(map(repr, kinds))}: prompt-only); drop it or add a "
                                                f"dataset with images")
