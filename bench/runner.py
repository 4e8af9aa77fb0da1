"""The one loop: plan -> skip stored -> generate -> score -> store.

Each model is loaded once; each dataset and metric is built once per run (reference statistics cached on
disk by content hash). Images stream from the generator straight into every metric accumulator. A failing
cell is stored with its error and the sweep goes on; a killed run resumes where it stopped, because each
cell is written in one transaction.
"""

from __future__ import annotations

import hashlib
import io
import itertools
import signal
import sys
import time
import traceback
from contextlib import nullcontext
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import torch
from PIL import Image
from tqdm import tqdm

from bench import provenance, registry
from bench.cell import Cell, canonical_json
from bench.data.base import plan_labels, prompts_for
from bench.store import ResultStore
from bench.suite import Suite
from bench.timing import NFECounter, measure, summarize, sync

OVERWRITE = ("never", "missing", "always")
DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}


class CellError(RuntimeError):
    """A problem with one cell's generation or scoring (recorded; the sweep goes on)."""


@dataclass
class RunSummary:
    planned: int = 0
    skipped: int = 0
    ran: int = 0
    failed: int = 0
    images: int = 0
    seconds: float = 0.0
    failures: list[str] = field(default_factory=list)
    interrupted: bool = False

    @property
    def exit_code(self) -> int:
        return 130 if self.interrupted else (1 if self.failed else 0)


@dataclass
class PlannedModel:
    """One model's cells still to run (with their keys), its adapter and weights id, and any load error."""
    spec: Any
    adapter: Any
    weights_id: str
    cells: list[tuple[Cell, str]] = field(default_factory=list)
    load_error: BaseException | None = None


@dataclass
class Shard:
    """What generating and scoring samples [lo, hi) of a cell hands back: accumulator states (feature and score
    rows by sample id), counts and timings, never images (except the few kept sample PNGs of the first shard)."""
    lo: int
    hi: int
    states: dict[str, dict]
    nfe_rows: int
    generate_s: float
    score_s: float
    kept: list
    generation_batch: int
    backoffs: list
    latency: dict


def resolve_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    dev = torch.device(name)
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise RuntimeError(f"device {name!r} requested but CUDA is not available")
    return dev


def check_images(images: Any, n: int, where: str) -> torch.Tensor:
    if not torch.is_tensor(images):
        raise CellError(f"{where}: generator returned {type(images).__name__}, expected a uint8 tensor")
    if images.dtype != torch.uint8:
        raise CellError(f"{where}: generator returned dtype {images.dtype}, expected torch.uint8 NHWC")
    if images.dim() != 4 or images.shape[0] != n or images.shape[-1] != 3:
        raise CellError(f"{where}: generator returned shape {tuple(images.shape)}, expected ({n}, H, W, 3)")
    return images


def png_bytes(image: torch.Tensor) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(image.cpu().numpy()).save(buf, format="PNG")
    return buf.getvalue()


def generate(gen, cell: Cell, labels: torch.Tensor, sample_ids: torch.Tensor) -> Any:
    """The generator's call for a cell, under the suite's dtype (autocast unless float32): bulk pass and latency
    measurement go through here alike, so both time the same computation."""
    device_type = next((p.device.type for m in gen.networks() for p in m.parameters()), "cpu")
    ctx = torch.autocast(device_type, dtype=DTYPES[cell.dtype]) if cell.dtype != "float32" else nullcontext()
    with ctx:
        return gen.generate(labels, sample_ids, cell.settings())


def is_out_of_memory(err: BaseException) -> bool:
    """CUDA/MPS/CPU allocator failures: the ones a smaller batch can fix."""
    if isinstance(err, torch.OutOfMemoryError):
        return True
    msg = str(err).lower()
    return isinstance(err, RuntimeError) and ("out of memory" in msg or "can't allocate memory" in msg)


def _free_memory(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.empty_cache()


class BatchBackoff:
    """Generates a batch in sub-batches of the largest size that fits: on out-of-memory the size halves and the
    failed sub-batch is generated again (sample i depends only on (seed, i), so the images are the same ones), and
    the NFE counted by the failed attempt is taken back. The size never grows again within the cell."""

    def __init__(self, size: int, counter: NFECounter | None = None):
        self.size, self.counter, self.backoffs = size, counter, []

    def __call__(self, gen, cell: Cell, ys: torch.Tensor, ids: torch.Tensor, device: torch.device) -> torch.Tensor:
        where = f"model {cell.model.id!r}"
        parts, i = [], 0
        while i < len(ids):
            b = self.size
            rows = self.counter.rows if self.counter is not None else 0
            try:
                part = generate(gen, cell, ys[i:i + b], ids[i:i + b])
            except Exception as e:
                if not is_out_of_memory(e) or self.size == 1:
                    raise
                if self.counter is not None:
                    self.counter.rows = rows
                _free_memory(device)
                self.size = max(1, self.size // 2)
                self.backoffs.append(self.size)
                continue
            parts.append(check_images(part, len(ids[i:i + b]), where))
            i += b
        return parts[0] if len(parts) == 1 else torch.cat(parts)


def stream_cell(gen, cell: Cell, dataset, accumulators: list, labels: torch.Tensor, sample_ids: torch.Tensor,
                device: torch.device, keep: int = 0, bar: tqdm | None = None) -> dict[str, Any]:
    """Generate ``sample_ids`` in batches and feed every accumulator; returns counts, NFE and kept samples.
    Generation backs off to smaller sub-batches on out-of-memory (see `BatchBackoff`)."""
    counter = NFECounter()
    backoff = BatchBackoff(cell.batch_size, counter)
    kept: list[tuple[int, int, bytes]] = []
    batch_times: list[tuple[int, float]] = []
    gen_s = score_s = 0.0
    with counter.watch(gen.networks()):
        for start in range(0, len(sample_ids), cell.batch_size):
            ids = sample_ids[start:start + cell.batch_size]
            ys = labels[start:start + cell.batch_size]
            t0 = time.perf_counter()
            images = backoff(gen, cell, ys, ids, device)
            sync(device)
            t1 = time.perf_counter()
            if start == 0:
                size = tuple(images.shape[1:3])
            elif tuple(images.shape[1:3]) != size:
                raise CellError(f"model {cell.model.id!r}: image size changed mid-cell from {size[0]}x{size[1]} "
                                f"to {images.shape[1]}x{images.shape[2]}")
            prompts = prompts_for(dataset, ys)
            for acc in accumulators:
                acc.update(images, ys, prompts, ids)
            score_s += time.perf_counter() - t1
            gen_s += t1 - t0
            batch_times.append((len(ids), t1 - t0))
            for j in range(min(len(ids), max(0, keep - len(kept)))):
                kept.append((int(ids[j]), int(ys[j]), png_bytes(images[j])))
            if bar is not None:
                bar.update(len(ids))
    return {"nfe": counter.per_image(len(sample_ids)), "nfe_rows": counter.rows, "generate_s": gen_s,
            "score_s": score_s, "kept": kept,
            "batch_times": batch_times, "generation_batch": backoff.size, "backoffs": backoff.backoffs}


class Runner:
    def __init__(self, suite: Suite, db: str | Path = "results/bench.duckdb", overwrite: str = "missing",
                 progress: bool = True, device: str | None = None):
        if overwrite not in OVERWRITE:
            raise ValueError(f"overwrite must be one of {OVERWRITE}, got {overwrite!r}")
        self.suite, self.db, self.overwrite, self.progress = suite, Path(db), overwrite, progress
        self.device = resolve_device(device or suite.spec.device)
        self.cache_dir = self.db.parent / "cache"
        self._datasets: dict[str, Any] = {}
        self._metrics: dict[str, Any] = {}
        self._latency_memo: dict[str, dict[str, tuple[float, str]]] = {}   # see TimingEntry.latency

    # -- shared resources, built once per run ----------------------------------------------------------------
    def dataset(self, cell: Cell):
        if cell.dataset not in self._datasets:
            cls = registry.resolve("dataset", cell.dataset_source)
            self._datasets[cell.dataset] = cls(cell.dataset_source, **cell.dataset_options)
        return self._datasets[cell.dataset]

    def metrics(self, cell: Cell) -> dict[str, Any]:
        out = {}
        for name, opts in cell.metrics.items():
            k = name + canonical_json(opts)
            if k not in self._metrics:
                self._metrics[k] = registry.resolve("metric", name)(opts, self.device, self.cache_dir)
            out[name] = self._metrics[k]
        return out

    def key(self, cell: Cell, adapter, weights_id: str) -> str:
        ds = self.dataset(cell)
        versions = {name: m.version_key() for name, m in self.metrics(cell).items()}
        return cell.key(adapter_version=adapter.version, weights_id=weights_id,
                        dataset_fingerprint=ds.fingerprint(), metric_versions=versions)

    def _needs_run(self, status: str | None) -> bool:
        if self.overwrite == "always":
            return True
        if self.overwrite == "never":
            return status is None
        return status != "ok"

    # -- the loop ---------------------------------------------------------------------------------------------
    def run(self) -> RunSummary:
        return self.execute(self._run_model_local)

    def execute(self, run_model) -> RunSummary:
        """Plan the suite and call ``run_model(planned_model, store, run_id, summary, cell_bar)`` per model; the
        local loop and the Ray executor (`bench.dist`) share everything but that call."""
        cells = self.suite.expand()
        summary = RunSummary(planned=len(cells))
        self._latency_memo.clear()                      # shared within a run, never across runs
        t_start = time.perf_counter()
        env = provenance.environment(self.device, self.suite.spec.dtype)
        store = ResultStore(self.db)
        run_id = store.begin_run(self.suite.name, self.suite.path, self.suite.sha256, env)
        old_term = signal.signal(signal.SIGTERM, _raise_interrupt)
        cell_bar = tqdm(total=len(cells), desc="cells", unit="cell", disable=not self.progress, position=0)
        try:
            for _, group in itertools.groupby(cells, key=lambda c: c.model.id):
                planned = self.plan_model(list(group), store, run_id, summary, cell_bar)
                if planned.cells:
                    run_model(planned, store, run_id, summary, cell_bar)
        except KeyboardInterrupt:
            summary.interrupted = True
        finally:
            cell_bar.close()
            signal.signal(signal.SIGTERM, old_term)
            status = "interrupted" if summary.interrupted else ("failed" if summary.failed else "ok")
            store.finish_run(run_id, status)
            store.close()
            summary.seconds = time.perf_counter() - t_start
        return summary

    def _log(self, msg: str) -> None:
        if self.progress:
            tqdm.write(msg, file=sys.stderr)

    def plan_model(self, cells: list[Cell], store: ResultStore, run_id: str, summary: RunSummary,
                   cell_bar: tqdm) -> "PlannedModel":
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
                self._fail(store, run_id, cell, None, adapter, planned.weights_id, e, summary, cell_bar)
                continue
            if self._needs_run(store.status(key)):
                planned.cells.append((cell, key))
            else:
                summary.skipped += 1
                cell_bar.update(1)
        return planned

    def load_model(self, planned: "PlannedModel") -> None:
        if planned.load_error is None:
            try:
                t0 = time.perf_counter()
                planned.adapter.load(planned.spec, self.device)
                self._log(f"loaded {planned.spec.id} ({planned.spec.adapter}) in {time.perf_counter() - t0:.1f} s")
            except Exception as e:
                planned.load_error = e

    def _run_model_local(self, planned: "PlannedModel", store: ResultStore, run_id: str, summary: RunSummary,
                         cell_bar: tqdm) -> None:
        self.load_model(planned)
        adapter, wid = planned.adapter, planned.weights_id
        for cell, key in planned.cells:
            if planned.load_error is not None:
                self._fail(store, run_id, cell, key, adapter, wid, planned.load_error, summary, cell_bar)
                continue
            try:
                t0 = time.perf_counter()
                shard = self.run_shard(cell, adapter, 0, None, with_latency=True)
                self.finish_cell(cell, key, adapter, wid, [shard], store, run_id, summary, t0)
            except KeyboardInterrupt:
                raise
            except Exception as e:
                self._fail(store, run_id, cell, key, adapter, wid, e, summary, cell_bar)
                continue
            cell_bar.update(1)

    def _row(self, cell: Cell, run_id: str, adapter, status: str, error: str | None, n: int | None,
             prov: dict, seconds: float | None) -> dict[str, Any]:
        return {"run_id": run_id, "suite": cell.suite, "model_id": cell.model.id, "adapter": cell.model.adapter,
                "family": getattr(adapter, "family", None), "dataset": cell.dataset, "steps": cell.steps,
                "cfg": cell.cfg, "solver": cell.solver, "seed": cell.seed, "plan": cell.plan.describe(), "n": n,
                "status": status, "error": error, "config": cell.config(), "provenance": prov, "seconds": seconds}

    def _fail(self, store, run_id, cell, key, adapter, wid, err: BaseException, summary: RunSummary, bar) -> None:
        msg = f"{type(err).__name__}: {err}"
        if key is None:
            key = "failed-" + hashlib.sha256((canonical_json(cell.config()) + wid).encode()).hexdigest()
        prov = {"weights": wid, "adapter_version": getattr(adapter, "version", None),
                "traceback": "".join(traceback.format_exception(err))[-4000:]}
        store.write(key, self._row(cell, run_id, adapter, "failed", msg, None, prov, None), {}, {})
        summary.failed += 1
        summary.failures.append(f"{cell.model.id} / {cell.dataset} / steps={cell.steps} cfg={cell.cfg}: {msg}")
        self._log(f"FAILED {cell.model.id} {cell.dataset} steps={cell.steps} cfg={cell.cfg}: {msg}")
        bar.update(1)

    def cell_samples(self, cell: Cell, adapter) -> tuple[Any, torch.Tensor, torch.Tensor]:
        """(dataset, labels, sample_ids) of a cell: the whole plan, the same in every process."""
        dataset = self.dataset(cell)
        if hasattr(adapter, "bind_dataset"):
            adapter.bind_dataset(dataset)
        labels, ids = plan_labels(dataset, cell.plan, cell.seed)
        if hasattr(adapter, "plan"):
            labels, ids = adapter.plan(labels, ids)
        return dataset, labels, ids

    def run_shard(self, cell: Cell, adapter, lo: int, hi: int | None, with_latency: bool) -> "Shard":
        """Generate and score the samples [lo, hi) of a cell's plan; return accumulator states, never images.
        The shard holding sample 0 keeps the sample PNGs and (``with_latency``) measures latency."""
        dataset, labels, ids = self.cell_samples(cell, adapter)
        hi = len(ids) if hi is None else min(hi, len(ids))
        metrics = self.metrics(cell)
        accs = {name: m.accumulator(dataset) for name, m in metrics.items()}
        bar = tqdm(total=hi - lo, desc=f"{cell.model.id} {cell.dataset} s={cell.steps} w={cell.cfg}",
                   unit="img", leave=False, disable=not self.progress, position=1)
        try:
            out = stream_cell(adapter, cell, dataset, list(accs.values()), labels[lo:hi], ids[lo:hi], self.device,
                              keep=self.suite.spec.keep_samples if lo == 0 else 0, bar=bar)
        finally:
            bar.close()
        latency = (self._latency(cell, adapter, labels[lo:hi], ids[lo:hi], out["batch_times"],
                                 out["generation_batch"]) if with_latency else {})
        return Shard(lo, hi, {k: a.state() for k, a in accs.items()}, out["nfe_rows"], out["generate_s"],
                     out["score_s"], out["kept"], out["generation_batch"], out["backoffs"], latency)

    def finish_cell(self, cell: Cell, key: str, adapter, wid: str, shards: list["Shard"], store: ResultStore,
                    run_id: str, summary: RunSummary, t0: float) -> None:
        """Merge the shards' accumulator states (exact: rows are ordered by sample id), compute and store."""
        shards = sorted(shards, key=lambda sh: sh.lo)
        n = sum(sh.hi - sh.lo for sh in shards)
        dataset = self.dataset(cell)
        t_res = time.perf_counter()
        metrics = self.metrics(cell)
        values: dict[str, tuple] = {}
        for name, metric in metrics.items():
            acc = metric.accumulator(dataset)
            for sh in shards:
                acc.add_state(sh.states[name])
            desc = metric.describe()
            for k, v in acc.result().items():
                values[k] = (v, name, metric.version, desc)
        s = cell.settings()
        score_s = sum(sh.score_s for sh in shards) + time.perf_counter() - t_res
        nfe = sum(sh.nfe_rows for sh in shards) / n if n else 0.0
        timings = {"nfe": (nfe, "evals/image"), "nfe_declared": (adapter.nfe_per_image(s), "evals/image"),
                   "generate_s": (sum(sh.generate_s for sh in shards), "s"), "score_s": (score_s, "s")}
        for sh in shards:
            timings.update(sh.latency)
        gen_batch = min(sh.generation_batch for sh in shards)
        prov = {"weights": wid, "adapter_version": adapter.version, "dataset_fingerprint": dataset.fingerprint(),
                "metrics": {n_: m.version_key() for n_, m in metrics.items()}, "device": str(self.device),
                "dtype": cell.dtype, "batch_size": cell.batch_size, "generation_batch": gen_batch}
        if hasattr(adapter, "describe"):
            prov["generator"] = adapter.describe()     # resolved pipeline, scheduler, resize filter, guidance
        if len(shards) > 1:
            prov["shards"] = [[sh.lo, sh.hi] for sh in shards]
        backoffs = [b for sh in shards for b in sh.backoffs]
        if backoffs:
            prov["out_of_memory_backoffs"] = backoffs
            self._log(f"{cell.model.id}: out of memory at batch {cell.batch_size}; generated in sub-batches of "
                      f"{gen_batch}")
        failures = getattr(dataset, "decode_failures", None)
        if failures:
            prov["decode_failures"] = {"count": len(failures), "files": list(failures)[:1000]}
        unmapped = getattr(dataset, "unmapped_folders", None)
        if unmapped:
            prov["unmapped_folders"] = list(unmapped)[:1000]
        seconds = time.perf_counter() - t0
        kept = [k for sh in shards for k in sh.kept]
        store.write(key, self._row(cell, run_id, adapter, "ok", None, n, prov, seconds), values, timings, kept)
        summary.ran += 1
        summary.images += n
        shown = ", ".join(f"{k}={values[k][0]:.4g}" for k in ("fid", "is", "clip_score", "pickscore") if k in values)
        self._log(f"{cell.model.id:>16} {cell.dataset:>9} steps={cell.steps} cfg={cell.cfg} "
                  f"nfe={nfe:.3g}: {shown} ({seconds:.1f} s)")

    def _latency(self, cell: Cell, adapter, labels, ids, batch_times, gen_batch: int) -> dict[str, tuple[float, str]]:
        """Batch-1 latency, measured apart from the bulk pass; throughput at the suite batch size, either measured
        apart too ("separate") or from the bulk pass's full, synchronised batches after the first ("bulk")."""
        t = self.suite.spec.timing
        if not t.enabled or not adapter.networks():
            return {}
        def call(b: int) -> None:
            generate(adapter, cell, labels[:b], ids[:b])

        # what batch-1 latency depends on: not the dataset, sample plan or seed (the seed's noise costs the same)
        memo = canonical_json({"model": asdict(cell.model), "adapter_version": adapter.version, "steps": cell.steps,
                               "cfg": cell.cfg, "solver": cell.solver, "dtype": cell.dtype, "device": str(self.device),
                               "timing": t.model_dump()})
        reuse = t.latency == "per_setting" and memo in self._latency_memo
        if reuse:
            lat = self._latency_memo[memo]
        else:
            lat = self._latency_memo[memo] = measure(call, 1, t.warmup, t.repeats, self.device)
        shared = {"latency_shared": (float(reuse), "1 = taken from an earlier cell of these settings in this run")}
        b = min(gen_batch, len(ids))    # the suite's batch size, or what out-of-memory back-off left of it
        full = [sec / n for n, sec in batch_times[1:] if n == min(cell.batch_size, len(ids))]
        if t.throughput == "bulk" and full:
            thr = summarize(full)
        else:
            thr = measure(call, b, min(t.warmup, 1), t.throughput_repeats, self.device)
        return {"latency_s": (lat["median_s"], "s/image @ batch 1"), "latency_iqr_s": (lat["iqr_s"], "s"),
                **shared, "throughput_ips": (1.0 / thr["median_s"], f"images/s @ batch {b}"),
                "throughput_iqr_s": (thr["iqr_s"], "s/image")}


def _raise_interrupt(signum, frame):
    raise KeyboardInterrupt
