"""Where a cell's time goes: wall time per component, measured by wrapping the functions that do each part.

`Breakdown` patches the functions named in `COMPONENTS` for the duration of a ``with`` block and adds up the time
spent in each, *exclusive* of the other components it calls (the batch-1 latency timing calls the generator: those
calls count as latency, not as the bulk pass), so the components never overlap and ``other`` (the cell's wall time
minus all components) is what no component names: Python glue, the progress bar, accumulator bookkeeping. Work done
on another thread is counted on that thread's own stack. Wrapping costs a few microseconds per call; the wrapped
functions are called tens of times per cell, so the breakdown does not change what it measures.

A name that does not exist is skipped and listed in `Breakdown.missing`, never an error (a component may name the
functions of older code too, to compare versions); `Breakdown.unmeasured` lists the components none of whose names
exist (a function renamed: that time then shows under ``other``).
"""

from __future__ import annotations

import importlib
import threading
import time
from collections import defaultdict
from typing import Any, Callable

LATENCY = "batch-1 latency and throughput timing"
STORE_OPEN = "store: open, run record, close"
GENERATOR_LOAD = "generator load"
# (component, [targets]); a target is "module:attribute path" (a function, a method, or a property's getter)
COMPONENTS: list[tuple[str, list[str]]] = [
    ("generator networks (bulk pass)", ["bench.generation:BatchBackoff.__call__"]),
    (LATENCY, ["bench.engine:Engine._latency"]),
    ("metric networks (extractor, CLIP, PickScore)", ["bench.metrics.fid_is_kid:FidIsKid.features",
                                                      "bench.metrics.clip_score:ClipScore.scores"]),
    ("reference features (memory or disk cache)", ["bench.metrics.fid_is_kid:FidIsKid.reference",
                                                   "bench.metrics.fid_is_kid:FidIsKid.reference_features"]),
    ("KID subsets", ["bench.metrics.kid:kid_poly", "bench.metrics.fid_is_kid:kid_features_to_metric"]),
    ("precision / recall", ["bench.metrics.prc:precision_recall"]),
    ("FID + IS statistics", ["bench.metrics.fid_is_kid:FidIsKid.compute"]),
    ("CLIP / Pick bootstrap", ["bench.metrics.bootstrap:mean_ci"]),
    ("CLIP / Pick mean, std, per class", ["bench.metrics.clip_score:ClipScore.summarize"]),
    (GENERATOR_LOAD, ["bench.engine:Engine.load"]),
    ("metric networks load", ["bench.metrics.clip_score:make_backend", "bench.metrics.fid_is_kid:FidIsKid.extractor"]),
    ("plan and cell keys", ["bench.runner:Runner.plan_model"]),
    ("provenance (environment)", ["bench.provenance:environment"]),
    ("kept-sample PNGs", ["bench.generation:png_bytes"]),
    (STORE_OPEN, ["bench.store:ResultStore.__init__", "bench.store:ResultStore.begin_run",
                  "bench.store:ResultStore.finish_run", "bench.store:ResultStore.close"]),
    ("store: cell writes", ["bench.store:ResultStore.write"]),
]
# what a run pays once however many cells it has (a suite's run opens the store once and loads each model once)
PER_RUN = (STORE_OPEN, GENERATOR_LOAD)
OTHER = "other (glue, bookkeeping)"


def _resolve(target: str) -> tuple[Any, str, Any] | None:
    """(owner object, attribute name, current value) of ``module:a.b.c``, or None when it does not exist."""
    module, path = target.split(":")
    try:
        owner: Any = importlib.import_module(module)
    except ImportError:
        return None
    *parents, name = path.split(".")
    for p in parents:
        owner = getattr(owner, p, None)
        if owner is None:
            return None
    if isinstance(owner, type) and name in owner.__dict__:
        return owner, name, owner.__dict__[name]
    if not isinstance(owner, type) and hasattr(owner, name):
        return owner, name, getattr(owner, name)
    return None


class Breakdown:
    """``with Breakdown() as b: run()``; then ``b.seconds`` (component -> exclusive seconds), ``b.calls``, and
    `shares` against a wall time."""

    def __init__(self, components: list[tuple[str, list[str]]] = COMPONENTS):
        self.components = components
        self.seconds: dict[str, float] = defaultdict(float)
        self.calls: dict[str, int] = defaultdict(int)
        self.missing: list[str] = []
        self._patched: list[tuple[Any, str, Any]] = []
        self._local = threading.local()
        self._lock = threading.Lock()

    def _wrap(self, label: str, fn: Callable) -> Callable:
        def timed(*args, **kwargs):
            stack = self._local.__dict__.setdefault("stack", [])
            stack.append(0.0)                     # time spent in components called from here
            t0 = time.perf_counter()
            try:
                return fn(*args, **kwargs)
            finally:
                dt = time.perf_counter() - t0
                inner = stack.pop()
                if stack:
                    stack[-1] += dt
                with self._lock:
                    self.seconds[label] += dt - inner
                    self.calls[label] += 1
        timed.__wrapped__ = fn
        return timed

    def __enter__(self) -> "Breakdown":
        self.missing = []
        for label, targets in self.components:
            for target in targets:
                found = _resolve(target)
                if found is None:
                    self.missing.append(target)
                    continue
                owner, name, value = found
                if isinstance(value, property):
                    new: Any = property(self._wrap(label, value.fget), value.fset, value.fdel, value.__doc__)
                elif isinstance(value, (staticmethod, classmethod)):
                    new = type(value)(self._wrap(label, value.__func__))
                else:
                    new = self._wrap(label, value)
                setattr(owner, name, new)
                self._patched.append((owner, name, value))
        return self

    @property
    def unmeasured(self) -> list[str]:
        """Components none of whose targets exist in the code being measured."""
        return [label for label, targets in self.components if all(t in self.missing for t in targets)]

    def __exit__(self, *exc) -> None:
        for owner, name, value in reversed(self._patched):
            setattr(owner, name, value)
        self._patched.clear()

    def shares(self, wall_s: float) -> list[tuple[str, float, float, int]]:
        """(component, seconds, share of ``wall_s``, calls) for every component, in `COMPONENTS` order, then
        ``other`` (``wall_s`` minus the components' sum)."""
        rows = [(label, self.seconds.get(label, 0.0), self.seconds.get(label, 0.0) / wall_s,
                 self.calls.get(label, 0)) for label, _ in self.components]
        rest = wall_s - sum(r[1] for r in rows)
        return rows + [(OTHER, rest, rest / wall_s, 0)]
