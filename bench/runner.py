"""The driver of a run: plan -> skip stored -> (an executor generates and scores) -> merge -> store.

The driver is the only process that opens the store. It expands the suite into cells, makes each cell's content
key, skips stored ones, hands `CellSpec`s to an executor and writes each finished cell in one transaction. The
generating and scoring is the worker `bench.engine.Engine`'s: the local executor (`Runner.run`) drives one engine
in this process, the Ray executor drives one per actor; both call only public methods of the engine and of this
class. A failing cell is stored with its error and the sweep goes on; a killed run resumes where it stopped; a
crash outside any cell marks the run ``failed`` (never ``ok``) and is raised; a store write that fails (disk full,
permissions) stops the run with one `StoreError` line naming the store and the first cause, stored cells kept.
A suite with ``keep_features: true`` also keeps each cell's accumulator rows in the feature store beside the store
(`bench.features`): saved just before the cell's transaction and removed when it fails, so a cell's features are
written with the cell or not at all; a skipped (stored) cell keeps its files, a re-run one (``overwrite``) rewrites
them.
"""

from __future__ import annotations

import hashlib
import itertools
import signal
import sys
import time
import traceback
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Callable

import torch
from tqdm import tqdm

from bench import features, parts, provenance, registry
from bench.cell import Cell, CellSpec, RunSettings, canonical_json
from bench.cores import usable_cores
from bench.engine import CellResult, Engine, Shard, statistics
from bench.generation import (  # noqa: F401  (re-exported: the runner's public names before the engine split)
    BatchBackoff,
    CellError,
    check_images,
    generate,
    is_out_of_memory,
    resolve_device,
    stream_cell,
)
from bench.store import WRITER_THREADS, ResultStore, StoreError, StoreWriteError
from bench.suite import Suite

OVERWRITE = ("never", "missing", "always")


@dataclass
class RunSummary:
    """What a run did. ``failures`` has one line per failed cell; `failure_lines` groups identical errors into
    one line each (count, error, the cells it hit), which is how a run prints them: once, at the end.
    ``left_out``: cells not run because the pre-flight found their inputs missing (``--keep-going``)."""
    planned: int = 0
    skipped: int = 0
    ran: int = 0
    failed: int = 0
    images: int = 0
    seconds: float = 0.0
    failures: list[str] = field(default_factory=list)
    interrupted: bool = False
    left_out: int = 0
    failed_cells: list[tuple[str, str, str]] = field(default_factory=list)    # (error, model id, cell text)

    @property
    def exit_code(self) -> int:
        return 130 if self.interrupted else (1 if self.failed or self.left_out else 0)

    def add_failure(self, cell: Cell, msg: str) -> None:
        where = f"{cell.dataset} steps={cell.steps} cfg={cell.cfg}" + (f" {cell.solver}" if cell.solver else "")
        self.failed += 1
        self.failures.append(f"{cell.model.id} / {cell.dataset} / steps={cell.steps} cfg={cell.cfg}: {msg}")
        self.failed_cells.append((msg, cell.model.id, where))

    def failure_groups(self) -> list[tuple[str, list[tuple[str, str]]]]:
        """(error, [(model id, cell text)]) per distinct error, most frequent first (then first seen)."""
        groups: dict[str, list[tuple[str, str]]] = {}
        for msg, model, where in self.failed_cells:
            groups.setdefault(msg, []).append((model, where))
        return sorted(groups.items(), key=lambda kv: -len(kv[1]))

    def failure_lines(self, max_cells: int = 4) -> list[str]:
        """One line per distinct error: how many cells it failed, the error (on one line), and those cells (by
        model; at most ``max_cells`` named per model, the rest counted)."""
        out = []
        for msg, hits in self.failure_groups():
            by_model: dict[str, list[str]] = {}
            for model, where in hits:
                by_model.setdefault(model, []).append(where)
            cells = "; ".join(f"{m}: " + ", ".join(w[:max_cells]) + (f" and {len(w) - max_cells} more"
                                                                      if len(w) > max_cells else "")
                              for m, w in by_model.items())
            one_line = " | ".join(ln.strip() for ln in msg.splitlines() if ln.strip())
            out.append(f"{len(hits)} cell{'s' if len(hits) != 1 else ''} failed: {one_line} [{cells}]")
        return out


@dataclass
class PlannedModel:
    """One model's cells still to run, its (unloaded) adapter class's instance and weights id, and any error that
    fails them all before they start (weights that cannot be identified)."""
    spec: Any
    adapter: Any
    weights_id: str
    cells: list[CellSpec] = field(default_factory=list)
    load_error: BaseException | None = None


class Runner:
    """The driver. ``run()`` executes locally; `bench.dist.ray_executor.RayExecutor` passes its own per-model
    executor to ``execute``."""

    def __init__(self, suite: Suite, db: str | Path = "results/bench.duckdb", overwrite: str = "missing",
                 progress: bool = True, device: str | None = None, includes: tuple[str, ...] = (),
                 part: tuple[int, int] | None = None, cache_dir: str | Path | None = None,
                 limit: int | None = None, skip: Callable[[Cell], bool] | None = None,
                 overlap_statistics: bool | None = None):
        """``part``: (i, N) runs only part i of N of the suite's cells (`bench.parts`, 0-based); ``cache_dir``: the
        reference statistics folder (default ``<db folder>/cache``; a shared one serves many stores). ``limit``: a
        smoke run, every cell capped at that many samples (and keyed with it: `Cell.limit`); ``skip``: cells left
        out and counted (`RunSummary.left_out`), e.g. those the pre-flight found inputs missing for.
        ``overlap_statistics``: a cell's statistics computed on a worker thread beside the next cell's first batch
        (`_run_model_local`); None (the default): only where they have a core of their own (`spare_core`)."""
        if overwrite not in OVERWRITE:
            raise ValueError(f"overwrite must be one of {OVERWRITE}, got {overwrite!r}")
        self.suite, self.db, self.overwrite, self.progress = suite, Path(db), overwrite, progress
        self.part = part
        if limit is not None and limit < 1:
            raise ValueError(f"limit must be >= 1, got {limit}")
        self.limit, self.skip = limit, skip
        cache_dir = self.db.parent / "cache" if cache_dir is None else Path(cache_dir)
        self.settings = RunSettings(device=device or suite.spec.device, cache_dir=str(cache_dir),
                                    keep_samples=suite.spec.keep_samples, timing=suite.spec.timing.model_dump(),
                                    progress=progress, includes=tuple(includes))
        # the driver's own engine: keys, merging, the kept features; the local executor's worker
        self.engine = Engine(self.settings, keep_features=suite.spec.keep_features)
        self.features_root = features.root_for(self.db)
        self.device = self.engine.device
        self.overlap_statistics = spare_core(self.device) if overlap_statistics is None else bool(overlap_statistics)
        self.store: ResultStore | None = None
        self.run_id = ""
        self.summary = RunSummary()
        self._bar: tqdm | None = None

    # shared resources (kept for callers of the runner before the engine split)
    def dataset(self, cell: Cell):
        return self.engine.dataset(cell)

    def metrics(self, cell: Cell) -> dict[str, Any]:
        return self.engine.metrics(cell)

    def key(self, cell: Cell, adapter, weights_id: str) -> str:
        return cell.key(adapter_version=adapter.version, weights_id=weights_id,
                        dataset_fingerprint=self.engine.dataset(cell).fingerprint(),
                        metric_versions=self.engine.metric_versions(cell))

    def _needs_run(self, status: str | None) -> bool:
        if self.overwrite == "always":
            return True
        if self.overwrite == "never":
            return status is None
        return status != "ok"

    # -- the loop -----------------------------------------------------------------------------------------------
    def run(self) -> RunSummary:
        return self.execute(self._run_model_local)

    def execute(self, run_model: Callable[["PlannedModel"], None]) -> RunSummary:
        """Plan the suite and call ``run_model(planned_model)`` per model with cells to run; ``run_model`` reports
        back through `finish_cell` and `fail_cell`."""
        cells = self.cells()
        self.summary = summary = RunSummary(planned=len(cells))
        if self.skip is not None:
            kept = [c for c in cells if not self.skip(c)]
            summary.left_out, cells = len(cells) - len(kept), kept
        t_start = time.perf_counter()
        self.engine.begin_run()                     # a second run() of this Runner measures latency again
        env = provenance.environment(self.device, self.suite.spec.dtype, self.suite.spec.numerics)
        env["includes"] = list(self.settings.includes)
        if self.part is not None:
            env["part"] = f"{self.part[0]}/{self.part[1]}"
        self.store = store = ResultStore(self.db, threads=WRITER_THREADS)
        try:
            self.run_id = store.begin_run(self.suite.name, self.suite.path, self.suite.sha256, env)
        except StoreWriteError:
            store.close()
            raise
        old_term = signal.signal(signal.SIGTERM, _raise_interrupt)
        self._bar = tqdm(total=len(cells), desc="cells", unit="cell", disable=not self.progress, position=0)
        status, write_error = "failed", None
        try:
            for _, group in itertools.groupby(cells, key=lambda c: c.model.id):
                planned = self.plan_model(list(group))
                if planned.cells:
                    run_model(planned)
            status = "failed" if summary.failed else "ok"
        except KeyboardInterrupt:
            summary.interrupted = True
            status = "interrupted"
        except StoreWriteError as e:                # disk full, permissions: the run stops, stored cells stay
            write_error = e
        finally:                                    # any other exception: the run is 'failed' and it propagates
            self._bar.close()
            signal.signal(signal.SIGTERM, old_term)
            try:
                store.finish_run(self.run_id, status)
            except StoreWriteError as e:
                write_error = write_error or e      # the first failure is the one to report
            finally:
                _close_quietly(store)
            summary.seconds = time.perf_counter() - t_start
        if write_error is not None:
            raise StoreError(f"{write_error}; the run stopped after storing {summary.ran} cell"
                             f"{'s' if summary.ran != 1 else ''} in this run; every cell stored so far is kept: free "
                             f"space or choose another --db, then run the same command again to resume") from None
        return summary

    def cells(self) -> list[Cell]:
        """The cells this run plans: the suite's, this part's share of them, each capped at ``limit`` samples."""
        cells = self.suite.expand()
        if self.part is not None:                   # this job's share of the cells, in expansion order
            cells = parts.select(cells, *self.part)
        if self.limit is not None:
            cells = [replace(c, limit=self.limit) for c in cells]
        return cells

    def _log(self, msg: str) -> None:
        if self.progress:
            tqdm.write(msg, file=sys.stderr)

    def plan_model(self, cells: list[Cell]) -> PlannedModel:
        """Keys for one model's cells, skipping stored ones; a cell whose key cannot be made fails here."""
        spec = cells[0].model
        adapter = registry.resolve("model adapter", spec.adapter)()
        planned = PlannedModel(spec, adapter, "")
        try:
            planned.weights_id = provenance.weights_id(adapter, spec)
        except Exception as e:  # missing weights etc.: every cell of this model fails with the reason
            planned.weights_id, planned.load_error = f"unavailable:{spec.weights}", e
        for cell in cells:
            try:
                key = self.key(cell, adapter, planned.weights_id)
            except Exception as e:
                self.fail_cell(CellSpec(cell, "", planned.weights_id), e)
                continue
            if self._needs_run(self.store.status(key)):
                planned.cells.append(CellSpec(cell, key, planned.weights_id))
            else:
                self.summary.skipped += 1
                self._bar.update(1)
        return planned

    def _run_model_local(self, planned: PlannedModel) -> None:
        """The local executor: this process's engine loads the model once and runs each cell as one shard. With
        ``overlap_statistics`` a cell's statistics (`bench.engine.statistics`: FID, KID, precision/recall, bootstrap
        on rows already embedded; no network, reference lookup or global flag) run on a worker thread while the
        next cell's first batch generates (`Engine.run_shard`'s barrier: never beside a metric forward or a timed
        measurement); merging and every store write stay on this thread, in cell order. The values are the same
        either way (tests/test_values_unchanged.py)."""
        if planned.load_error is None:
            try:
                t0 = time.perf_counter()
                self.engine.load(planned.spec)
                self._log(f"loaded {planned.spec.id} ({planned.spec.adapter}) in {time.perf_counter() - t0:.1f} s")
            except Exception as e:
                planned.load_error = e
        pool = ThreadPoolExecutor(1, thread_name_prefix="stepbench-statistics") if self.overlap_statistics else None
        pending: list = []                           # [(cell spec, shard, future of statistics, seconds so far)]

        def collect() -> None:                       # the previous cell's statistics, then its store write
            if pending:
                cs, shard, future, seconds = pending.pop()
                try:
                    results, statistics_s = future.result()
                    result = self.engine.assemble(cs, [shard], results, statistics_s)
                except (KeyboardInterrupt, StoreError):
                    raise
                except Exception as e:
                    self.fail_cell(cs, e)
                    return
                self.finish_cell(cs, result, time.perf_counter() - seconds - statistics_s)

        try:
            for cs in planned.cells:
                if planned.load_error is not None:
                    collect()
                    self.fail_cell(cs, planned.load_error)
                    continue
                t0 = time.perf_counter()
                try:
                    shard = self.engine.run_shard(cs, 0, None, with_latency=True, barrier=collect)
                    merged = self.engine.merge(cs, [shard]) if pool is not None else None
                except (KeyboardInterrupt, StoreError):     # also the previous cell's write, from the barrier
                    raise
                except Exception as e:
                    collect()
                    self.fail_cell(cs, e)
                    continue
                if pool is not None:                 # statistics only (`bench.engine.statistics`) on the thread
                    pending.append((cs, shard, pool.submit(statistics, merged), time.perf_counter() - t0))
                    continue
                try:
                    result = self.engine.finish(cs, [shard])
                except KeyboardInterrupt:
                    raise
                except Exception as e:
                    self.fail_cell(cs, e)
                    continue
                self.finish_cell(cs, result, t0)
            collect()
        finally:
            if pool is not None:
                pool.shutdown(wait=True, cancel_futures=True)   # an interrupted run: the pending cell is not written
            self.engine.unload(planned.spec)         # one model in memory at a time

    # -- what an executor reports back --------------------------------------------------------------------------
    def finish_cell(self, cs: CellSpec, result: CellResult, t0: float) -> None:
        """Store a finished cell (one transaction) and count it."""
        cell, adapter = cs.cell, registry.resolve("model adapter", cs.cell.model.adapter)
        prov = {"adapter_version": adapter.version, **result.provenance}
        if "out_of_memory_backoffs" in prov:
            self._log(f"{cell.model.id}: out of memory at batch {cell.batch_size}; generated in sub-batches of "
                      f"{prov['generation_batch']}")
        seconds = time.perf_counter() - t0
        row = self._row(cell, adapter, "ok", None, result.n, prov, seconds)
        saved = []                                   # features first (atomic files), then the cell's transaction
        try:
            for name, (state, meta) in result.features.items():
                features.save(self.features_root, cs.key, name, state, meta)
                saved.append(name)
            self.store.write(cs.key, row, result.values, result.timings, result.kept, result.per_sample)
        except BaseException as e:
            features.discard(self.features_root, cs.key, saved)    # no features without their cell
            if isinstance(e, OSError):               # the feature store's disk: stop as for the store's own
                raise StoreWriteError(self.features_root / cs.key, e) from None
            raise
        self.summary.ran += 1
        self.summary.images += result.n
        values = result.values
        shown = ", ".join(f"{k}={values[k][0]:.4g}" for k in values if values[k][4].ranked and "/" not in k)
        self._log(f"{cell.model.id:>16} {cell.dataset:>9} steps={cell.steps} cfg={cell.cfg} "
                  f"nfe={result.nfe:.3g}: {shown} ({seconds:.1f} s)")
        self._bar.update(1)

    def fail_cell(self, cs: CellSpec, err: BaseException) -> None:
        """Store a cell as failed with its reason (and traceback in its provenance); the sweep goes on."""
        cell, wid = cs.cell, cs.weights_id
        adapter = registry.resolve("model adapter", cell.model.adapter)
        msg = f"{type(err).__name__}: {err}"
        key = cs.key or "failed-" + hashlib.sha256((canonical_json(cell.config()) + wid).encode()).hexdigest()
        prov = {"weights": wid, "adapter_version": adapter.version,
                "traceback": "".join(traceback.format_exception(err))[-4000:]}
        self.store.write(key, self._row(cell, adapter, "failed", msg, None, prov, None), {}, {})
        # a stored cell re-run (--overwrite) that failed: its rows are gone from the store, and so are its features
        features.discard(self.features_root, key, features.available(self.features_root, key))
        self.summary.add_failure(cell, msg)        # printed once, grouped, at the end (`failure_lines`)
        self._bar.set_postfix(failed=self.summary.failed, refresh=False)
        self._bar.update(1)

    def _row(self, cell: Cell, adapter, status: str, error: str | None, n: int | None, prov: dict,
             seconds: float | None) -> dict[str, Any]:
        return {"run_id": self.run_id, "suite": cell.suite, "model_id": cell.model.id, "adapter": cell.model.adapter,
                "family": adapter.family, "dataset": cell.dataset, "steps": cell.steps,
                "cfg": cell.cfg, "solver": cell.solver, "seed": cell.seed, "plan": cell.plan.describe(), "n": n,
                "status": status, "error": error, "config": cell.config(), "provenance": prov, "seconds": seconds}


def spare_core(device) -> bool:
    """Whether a cell's statistics computed beside the next cell's generation have a core of their own: on a GPU
    (the CPU mostly waits for the device), or when this process may use more cores than torch's intra-op threads.
    Where generation already keeps every core busy the thread only competes with it: on the 2-core CPU of
    ``make perf``, with torch on both cores, one setting on 3 datasets ran 1-14% slower with the thread than without
    it in each of five A/B runs (medians of 6 interleaved rounds: 1.14, 1.05, 1.01 at n = 500; 1.09, 1.03 at
    n = 250), never faster, so it is off there."""
    if getattr(device, "type", str(device)) != "cpu":
        return True
    return usable_cores() > torch.get_num_threads()


def _close_quietly(store: ResultStore) -> None:
    """Close the store; after a failed write DuckDB may refuse even that, and the write's error is the one told."""
    try:
        store.close()
    except Exception:
        pass


def _raise_interrupt(signum, frame):
    raise KeyboardInterrupt


__all__ = ["Runner", "RunSummary", "PlannedModel", "Engine", "Shard", "CellResult", "OVERWRITE"]
