"""Run a suite on Ray: cells (and shards of a cell: disjoint sample-id ranges) as tasks on model actors.

What runs where:
- the driver (`bench run --executor ray`) plans exactly as the local runner does (same keys, same skip rules),
  is the only process that opens the DuckDB store, merges each cell's shard states with the accumulators' own
  merge, and writes the cell as soon as its last shard is back;
- a `ModelWorker` actor per (model, worker slot) loads its model once and serves every shard of that model
  sent to it; it returns accumulator states (feature / score rows by sample id), counts and timings, never
  images. Reference statistics come from the content-keyed cache under the results folder, so on one machine
  (or a shared filesystem) they are computed once whatever the number of workers.
Fault tolerance: an actor whose process dies (killed, out of host memory) is restarted and the task retried up to
``max_retries`` times; a shard that still cannot finish fails its cell with the reason, and the sweep goes on.
Completed cells are stored as they finish, so a killed driver loses nothing stored and a rerun resumes.
"""

from __future__ import annotations

import os
import time
from collections import deque
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bench import registry
from bench.runner import PlannedModel, Runner, RunSummary
from bench.suite import Suite


@dataclass(frozen=True)
class RayOptions:
    address: str | None = None          # None: RAY_ADDRESS, else a local Ray started here
    workers: int | None = None          # actors per model; default: what the cluster's resources allow
    gpus_per_task: float = 0.0
    cpus_per_task: float = 1.0
    shards_per_cell: int = 1
    max_retries: int = 2
    imports: tuple[str, ...] = ()       # modules workers import first (third-party registrations)
    num_cpus: int | None = None         # for a local Ray only


def split(n: int, k: int) -> list[tuple[int, int]]:
    """k contiguous, disjoint sample ranges covering [0, n) (no empty ones)."""
    k = max(1, min(k, n)) if n else 1
    edges = [round(i * n / k) for i in range(k + 1)]
    return [(edges[i], edges[i + 1]) for i in range(k)]


class _Worker:
    """Body of the Ray actor: one model loaded once, datasets/metrics built once, shards served on request."""

    def __init__(self, suite_path: str, suite_text: str, db: str, device: str | None, model_id: str,
                 registry_kinds: dict[str, dict[str, str]], imports: tuple[str, ...]):
        import importlib
        for m in imports:
            importlib.import_module(m)
        for kind, table in registry_kinds.items():
            registry.KINDS[kind].update(table)
        suite = Suite.parse(suite_text, suite_path)
        self.runner = Runner(suite, db=Path(db), device=device, progress=False)
        cell = next(c for c in suite.expand() if c.model.id == model_id)
        self.adapter = registry.resolve("model adapter", cell.model.adapter)()
        self.adapter.load(cell.model, self.runner.device)

    def shard(self, cell, lo: int, hi: int, with_latency: bool):
        return self.runner.run_shard(cell, self.adapter, lo, hi, with_latency)

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
    def __init__(self, runner: Runner, opts: RayOptions):
        self.runner, self.opts = runner, opts
        if opts.shards_per_cell < 1:
            raise ValueError(f"--shards-per-cell must be >= 1, got {opts.shards_per_cell}")

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

    def _run_model(self, planned: PlannedModel, store, run_id: str, summary: RunSummary, cell_bar) -> None:
        runner, ray = self.runner, self.ray
        adapter, wid = planned.adapter, planned.weights_id
        if planned.load_error is not None:
            for cell, key in planned.cells:
                runner._fail(store, run_id, cell, key, adapter, wid, planned.load_error, summary, cell_bar)
            return
        suite = runner.suite
        kinds = {k: dict(v) for k, v in registry.KINDS.items()}
        tasks: deque = deque()
        pending: dict[str, dict[str, Any]] = {}
        for cell, key in planned.cells:
            n = len(runner.cell_samples(cell, adapter)[2])
            ranges = split(n, self.opts.shards_per_cell)
            pending[key] = {"cell": cell, "left": len(ranges), "shards": [], "t0": time.perf_counter(),
                            "failed": False}
            tasks.extend((key, lo, hi) for lo, hi in ranges)
        n_workers = min(self._n_workers(), len(tasks))
        actors = [self.actor_cls.remote(str(suite.path), suite.text, str(runner.db), str(runner.device),
                                        planned.spec.id, kinds, tuple(self.opts.imports))
                  for _ in range(n_workers)]
        idle, inflight = deque(actors), {}
        try:
            while tasks or inflight:
                while tasks and idle:
                    key, lo, hi = tasks.popleft()
                    if pending[key]["failed"]:
                        continue
                    actor = idle.popleft()
                    ref = actor.shard.remote(pending[key]["cell"], lo, hi, lo == 0)
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
                    runner._fail(store, run_id, job["cell"], key, adapter, wid, _unwrap(e), summary, cell_bar)
                    continue
                job["left"] -= 1
                if job["left"] == 0:
                    try:
                        runner.finish_cell(job["cell"], key, adapter, wid, job["shards"], store, run_id, summary,
                                           job["t0"])
                        cell_bar.update(1)
                    except Exception as e:
                        runner._fail(store, run_id, job["cell"], key, adapter, wid, e, summary, cell_bar)
        finally:
            for a in actors:
                ray.kill(a)


def _unwrap(err: BaseException) -> BaseException:
    """The user's exception inside a RayTaskError, so failed cells read like local ones."""
    cause = getattr(err, "cause", None)
    return cause if isinstance(cause, BaseException) else err
