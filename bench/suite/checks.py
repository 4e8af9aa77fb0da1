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
