"""Run a suite on Ray: cells (and shards of a cell: disjoint sample-id ranges) as tasks on model actors.

What runs where:
- the driver (`bench run --executor ray`) plans exactly as the local runner does (same keys, same skip rules),
  is the only process that opens the DuckDB store, merges each cell's shard states with the accumulators' own
  merge, and writes the cell as soon as its last shard is back;
- a `_Worker` actor per (model, worker slot) holds an `Engine` (the local executor's worker too), loads its
  model once and serves every shard of that model sent to it; it returns accumulator states (feature / score
  rows by sample id), counts and timings, never images. Reference statistics come from the content-keyed cache
  under the results folder, so on one machine (or a shared filesystem) they are computed once whatever the
  number of workers.
Fault tolerance: an actor whose process dies (killed, out of host memory) is restarted and the task retried up to
``max_retries`` times; a shard that still cannot finish fails its cell with the reason, and the sweep goes on.
Completed cells are stored as they finish, so a killed driver loses nothing stored and a rerun resumes.
"""

from __future__ import annotations

import os
import time
from collections import deque
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from bench import registry
from bench.cell import CellSpec, RunSettings
from bench.engine import Engine, Shard
from bench.runner import PlannedModel, Runner, RunSummary


@dataclass(frozen=True)
class RayOptions:
    address: str | None = None          # None: RAY_ADDRESS, else a local Ray started here
    workers: int | None = None          # actors per model; default: what the cluster's resources allow
    gpus_per_task: float = 0.0
    cpus_per_task: float = 1.0
    shards_per_cell: int = 1
    max_retries: int = 2
    imports: tuple[str, ...] = ()       # --include modules (driver and workers import them first)
    num_cpus: int | None = None         # for a local Ray only


def split(n: int, k: int) -> list[tuple[int, int]]:
    """k contiguous, disjoint sample ranges covering [0, n) (no empty ones)."""
    k = max(1, min(k, n)) if n else 1
    edges = [round(i * n / k) for i in range(k + 1)]
    return [(edges[i], edges[i + 1]) for i in range(k)]


class _Worker:
    """Body of the Ray actor: one `Engine` (the same worker the local executor uses), the model loaded once,
    datasets and metrics built once, shards served on request. It imports the run's --include modules and
    registers the driver's run-time registrations before anything is resolved."""

    def __init__(self, settings: RunSettings, registrations: dict[str, dict[str, str]], spec):
        for kind, table in registrations.items():
            for name, target in table.items():
                registry.register(kind, name, target)
        self.engine = Engine(settings)
        self.spec = spec        # loaded on the first task, so a load error fails cells with its reason

    def count(self, cs: CellSpec) -> int:
        return self.engine.count(cs)

    def shard(self, cs: CellSpec, lo: int, hi: int | None, with_latency: bool) -> Shard:
        return self.engine.run_shard(cs, lo, hi, with_latency)

    def pid(self) -> int:
        return os.getpid()


def _init_ray(opts: RayOptions):
    import ray
    if ray.is_initialized():
        return ray
    address = opts.address or os.environ.get("RAY_ADDRESS")
    root = str(Path(__file__).resolve().parents[2])
    env = {"PYTHONPATH": os.pathsep.join([root, os.getcwd(), os.environ.get("PYTHONPATH", "")]).rstrip(os.pathsep)}
    if address:
        ray.init(address=address, runtime_env={"env_vars": env}, log_to_driver=False)
    else:
        ray.init(num_cpus=opts.num_cpus, include_dashboard=False, runtime_env={"env_vars": env},
                 log_to_driver=False, configure_logging=False)
    return ray


class RayExecutor:
    """Executes a `Runner`'s plan on Ray: per model, actors load it once and serve shards; the driver merges each
    cell's shards with its own engine (`Engine.finish`) and stores the cell as soon as its last shard is back."""

    def __init__(self, runner: Runner, opts: RayOptions):
        self.runner, self.opts = runner, opts
        if opts.shards_per_cell < 1:
            raise ValueError(f"--shards-per-cell must be >= 1, got {opts.shards_per_cell}")
        for ref in opts.imports:                    # the driver resolves names from them too
            registry.include(ref)

    def run(self) -> RunSummary:
        self.ray = _init_ray(self.opts)
        remote_opts = {"num_cpus": self.opts.cpus_per_task, "num_gpus": self.opts.gpus_per_task,
                       "max_restarts": self.opts.max_retries, "max_task_retries": self.opts.max_retries}
        self.actor_cls = self.ray.remote(**remote_opts)(_Worker)
        return self.runner.execute(self._run_model)

    def _n_workers(self) -> int:
        if self.opts.workers:
            return self.opts.workers
        res = self.ray.cluster_resources()
        by_cpu = int(res.get("CPU", 1) // max(self.opts.cpus_per_task, 1e-9))
        if self.opts.gpus_per_task:
            return max(1, min(by_cpu, int(res.get("GPU", 0) // self.opts.gpus_per_task)))
        return max(1, by_cpu)

    def _worker_settings(self) -> RunSettings:
        s = self.runner.settings
        includes = tuple(dict.fromkeys((*self.opts.imports, *s.includes)))
        return replace(s, device=str(self.runner.device), progress=False, includes=includes)

    def _run_model(self, planned: PlannedModel) -> None:
        runner, ray = self.runner, self.ray
        if planned.load_error is not None:
            for cs in planned.cells:
                runner.fail_cell(cs, planned.load_error)
            return
        settings, regs = self._worker_settings(), registry.runtime_registrations()
        n_workers = min(self._n_workers(), len(planned.cells) * self.opts.shards_per_cell)
        actors = [self.actor_cls.remote(settings, regs, planned.spec) for _ in range(n_workers)]
        try:
            self._serve(planned, actors)
        finally:
            for a in actors:
                ray.kill(a)

    def _ranges(self, cs: CellSpec, actor) -> list[tuple[int, int | None]]:
        """The shard ranges of a cell: the whole cell, or K ranges of the size a loaded worker reports (the plan
        can depend on the loaded model, e.g. pre-generated samples with their own labels)."""
        if self.opts.shards_per_cell == 1:
            return [(0, None)]
        return split(self.ray.get(actor.count.remote(cs)), self.opts.shards_per_cell)

    def _serve(self, planned: PlannedModel, actors: list) -> None:
        runner, ray = self.runner, self.ray
        tasks: deque = deque()
        pending: dict[str, dict[str, Any]] = {}
        for cs in planned.cells:
            try:
                ranges = self._ranges(cs, actors[0])
            except Exception as e:                  # the plan itself fails (too few samples, ...): this cell only
                runner.fail_cell(cs, _unwrap(e))
                continue
            pending[cs.key] = {"cs": cs, "left": len(ranges), "shards": [], "t0": time.perf_counter(),
                               "failed": False}
            tasks.extend((cs.key, lo, hi) for lo, hi in ranges)
        idle, inflight = deque(actors), {}
        while tasks or inflight:
            while tasks and idle:
                key, lo, hi = tasks.popleft()
                if pending[key]["failed"]:
                    continue
                actor = idle.popleft()
                ref = actor.shard.remote(pending[key]["cs"], lo, hi, lo == 0)
                inflight[ref] = (actor, key)
            if not inflight:
                continue
            done, _ = ray.wait(list(inflight), num_returns=1)
            actor, key = inflight.pop(done[0])
            idle.append(actor)
            job = pending[key]
            if job["failed"]:
                continue
            try:
                job["shards"].append(ray.get(done[0]))
            except Exception as e:   # the task's own error, or its worker died more often than retried
                job["failed"] = True
                runner.fail_cell(job["cs"], _unwrap(e))
                continue
            job["left"] -= 1
            if job["left"] == 0:
                try:
                    result = runner.engine.finish(job["cs"], job["shards"])
                except Exception as e:
                    runner.fail_cell(job["cs"], e)
                    continue
                runner.finish_cell(job["cs"], result, job["t0"])


def _unwrap(err: BaseException) -> BaseException:
    """The user's exception inside a RayTaskError, so failed cells read like local ones."""
    cause = getattr(err, "cause", None)
    return cause if isinstance(cause, BaseException) else err
