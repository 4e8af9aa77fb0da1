"""The worker side of a run: an `Engine` loads models, datasets and metrics once and turns a `CellSpec` (and a
sample range of it) into a `Shard`; it merges a cell's shards into a `CellResult`. It never opens the store.

The local executor and the Ray executor (`bench.dist.ray_executor`) use the same two public pieces: the driver
(`bench.runner.Runner`: plan, skip stored, write) and this engine. Invariants:
- a shard carries accumulator states (feature and score rows by sample id), counts and timings, never images
  (except the few kept sample PNGs of the shard holding sample 0), so shards merge exactly in any split;
- ``finish`` needs no generator: what it records about the model (declared NFE, ``describe()``) comes back in
  the shards from the worker that had it loaded;
- a `CellResult` carries each per-sample metric's rows by sample id (`bench.metrics.base.Metric.per_sample`,
  stored in ``sample_scores``) and, on an engine made with ``keep_features``, every per-sample accumulator's
  sorted state for the feature store (`bench.features`); both come from the shards' states, whatever the split.
"""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Callable

import torch
from tqdm import tqdm

from bench import malloc, registry
from bench.cell import Cell, CellSpec, RunSettings, canonical_json
from bench.data.base import DatasetError, plan_labels, prompts_for
from bench.generation import generate, resolve_device, stream_cell
from bench.metrics.base import PerSampleAccumulator, numerics_mode
from bench.models.base import Generator, ModelSpec
from bench.suite.schema import TimingEntry
from bench.timing import measure, measure_stable, summarize


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
    nfe_declared: float = float("nan")
    generator: dict = field(default_factory=dict)      # the loaded adapter's describe()


@dataclass
class CellResult:
    """A finished cell, ready for the store: metric values with their declared outputs, timings, provenance."""
    n: int
    values: dict[str, tuple]           # name -> (value, source metric, source version, options, Output)
    timings: dict[str, tuple[float, str]]
    provenance: dict[str, Any]
    kept: list
    nfe: float
    # stored metric name -> (sample ids, values), ordered by sample id: the ``sample_scores`` rows
    per_sample: dict[str, tuple[torch.Tensor, torch.Tensor]] = field(default_factory=dict)
    # metric name -> (sorted state, metadata) for `bench.features.save`; empty unless the engine keeps features
    features: dict[str, tuple[dict, dict]] = field(default_factory=dict)


def sorted_state(states: list[dict]) -> dict[str, Any]:
    """Shards' `PerSampleAccumulator` states merged, each row concatenated and ordered by sample id
    (`PerSampleAccumulator.sorted_state`; no network is built: the rows are already embedded)."""
    acc = PerSampleAccumulator(None, None)          # type: ignore[arg-type]  (never embeds nor finalizes)
    for st in states:
        acc.add_state(st)
    return acc.sorted_state()


def _is_rows_state(state) -> bool:
    return isinstance(state, dict) and {"rows", "ids", "labels"} <= set(state)


def statistics(merged: dict[str, Any]) -> tuple[dict[str, dict[str, float]], float]:
    """Each merged accumulator's values (`Engine.merge`) and the seconds they took. Pure computation on rows already
    embedded: no network forward, no reference lookup, no global flag, so it may run on another thread (the
    runner's statistics thread) while this process generates the next cell."""
    t0 = time.perf_counter()
    return {name: acc.result() for name, acc in merged.items()}, time.perf_counter() - t0


class Engine:
    """Models, datasets and metrics of one process, each built once; `run_shard` and `finish` over cell specs."""

    def __init__(self, settings: RunSettings, keep_features: bool = False):
        """``keep_features``: `assemble` also hands back every per-sample accumulator's sorted state (the driver's
        engine of a suite with ``keep_features: true``; workers never need it: they only run shards)."""
        self.settings, self.keep_features = settings, keep_features
        malloc.keep_freed_memory()                  # this process's allocator keeps freed activations (bench.malloc)
        for ref in settings.includes:              # the same user modules in every process
            registry.include(ref)
        self.device = resolve_device(settings.device)
        self.cache_dir = Path(settings.cache_dir)
        self.timing = TimingEntry(**settings.timing)
        self._datasets: dict[str, Any] = {}
        self._metrics: dict[str, Any] = {}
        self._adapters: dict[str, Generator] = {}
        self._latency_memo: dict[str, dict[str, float]] = {}   # see TimingEntry.latency; emptied by begin_run

    def begin_run(self) -> None:
        """A new run on this engine: what is shared "within a run" (a setting's batch-1 latency, `TimingEntry.
        latency`) is measured again; loaded metrics and datasets stay (they do not depend on the run)."""
        self._latency_memo.clear()

    # -- shared resources, built once ---------------------------------------------------------------------------
    def dataset(self, cell: Cell):
        """The cell's dataset, opened once per suite id as ``cls(source, **options)`` (the source name is what
        its card, conventional folder and mini stream are found by; no fingerprint depends on the name), then
        named by the suite's id, so its later messages (decode failures, plans) name the dataset as the suite
        does; an error while opening it is re-worded the same way."""
        if cell.dataset not in self._datasets:
            src, sid = cell.dataset_source, cell.dataset
            cls = registry.resolve("dataset", src)
            try:
                ds = cls(src, **cell.dataset_options)
            except DatasetError as e:
                if sid == src:
                    raise
                raise DatasetError(str(e).replace(f"dataset {src!r}", f"dataset {sid!r} ({src})", 1)) from None
            ds.name = sid
            self._datasets[sid] = ds
        return self._datasets[cell.dataset]

    def metrics(self, cell: Cell) -> dict[str, Any]:
        out = {}
        for name, opts in cell.metrics.items():
            k = name + canonical_json(opts)
            if k not in self._metrics:
                self._metrics[k] = registry.resolve("metric", name)(opts, self.device, self.cache_dir)
            out[name] = self._metrics[k]
        return out

    def metric_versions(self, cell: Cell) -> dict[str, str]:
        return {name: m.version_key() for name, m in self.metrics(cell).items()}

    def load(self, spec: ModelSpec) -> Generator:
        """The model's adapter, loaded onto this engine's device once (raises what loading raises)."""
        key = canonical_json(asdict(spec))
        if key not in self._adapters:
            adapter = registry.resolve("model adapter", spec.adapter)()
            adapter.load(spec, self.device)
            self._adapters[key] = adapter
        return self._adapters[key]

    def unload(self, spec: ModelSpec) -> None:
        self._adapters.pop(canonical_json(asdict(spec)), None)

    # -- one cell -----------------------------------------------------------------------------------------------
    def samples(self, cs: CellSpec) -> tuple[Any, torch.Tensor, torch.Tensor]:
        """(dataset, labels, sample_ids) of a cell: the whole plan (its first ``cell.limit`` samples in a smoke
        run), the same in every process."""
        cell = cs.cell
        adapter = self.load(cell.model)
        dataset = self.dataset(cell)
        adapter.bind_dataset(dataset)
        labels, ids = adapter.plan(*plan_labels(dataset, cell.plan, cell.seed))
        if cell.limit is not None:
            labels, ids = labels[:cell.limit], ids[:cell.limit]
        return dataset, labels, ids

    def count(self, cs: CellSpec) -> int:
        """How many samples the cell has (what a driver splits into shards)."""
        return len(self.samples(cs)[2])

    def run_shard(self, cs: CellSpec, lo: int = 0, hi: int | None = None, with_latency: bool = True,
                  barrier: Callable[[], None] | None = None) -> Shard:
        with numerics_mode(cs.cell.numerics):      # strict float32 metric forwards unless the suite opted out
            return self._run_shard(cs, lo, hi, with_latency, barrier)

    def _run_shard(self, cs: CellSpec, lo: int, hi: int | None, with_latency: bool,
                   barrier: Callable[[], None] | None) -> Shard:
        """Generate and score the samples [lo, hi) of a cell's plan; return accumulator states, never images.
        The shard holding sample 0 keeps the sample PNGs and (``with_latency``) measures latency. ``barrier``
        (idempotent) is called once the first batch is generated, before any metric sees it, and again before
        latency is measured: work the caller runs beside this shard (the previous cell's statistics) overlaps only
        the first batch's generation, never a metric forward or a timed measurement."""
        cell = cs.cell
        adapter = self.load(cell.model)
        dataset, labels, ids = self.samples(cs)
        hi = len(ids) if hi is None else min(hi, len(ids))
        accs = {name: m.accumulator(dataset) for name, m in self.metrics(cell).items()}
        bar = tqdm(total=hi - lo, desc=f"{cell.model.id} {cell.dataset} s={cell.steps} w={cell.cfg}",
                   unit="img", leave=False, disable=not self.settings.progress, position=1)
        try:
            out = stream_cell(adapter, cell, dataset, list(accs.values()), labels[lo:hi], ids[lo:hi], self.device,
                              keep=self.settings.keep_samples if lo == 0 else 0, bar=bar, after_first=barrier)
        finally:
            bar.close()
        if barrier is not None:
            barrier()
        latency = (self._latency(cell, adapter, labels[lo:hi], ids[lo:hi], out["batch_times"],
                                 out["generation_batch"]) if with_latency else {})
        return Shard(lo, hi, {k: a.state() for k, a in accs.items()}, out["nfe_rows"], out["generate_s"],
                     out["score_s"], out["kept"], out["generation_batch"], out["backoffs"], latency,
                     nfe_declared=adapter.nfe_per_image(cell.settings()), generator=adapter.describe())

    def finish(self, cs: CellSpec, shards: list[Shard]) -> CellResult:
        """Merge the shards' accumulator states (exact: rows are ordered by sample id) and compute the values,
        under the cell's numerics mode (also when called from the statistics thread)."""
        with numerics_mode(cs.cell.numerics):
            return self._finish(cs, shards)

    def _finish(self, cs: CellSpec, shards: list[Shard]) -> CellResult:
        return self.assemble(cs, shards, *statistics(self.merge(cs, shards)))

    def merge(self, cs: CellSpec, shards: list[Shard]) -> dict[str, Any]:
        """Each metric's accumulator with the shards' states added (what `statistics` computes from), built in the
        calling thread: it may look up reference sets, under the caller's numerics mode."""
        dataset = self.dataset(cs.cell)
        merged = {}
        with numerics_mode(cs.cell.numerics):           # the reference sets of the cell's numerics mode
            for name, metric in self.metrics(cs.cell).items():
                acc = metric.accumulator(dataset)
                for sh in sorted(shards, key=lambda sh: sh.lo):
                    acc.add_state(sh.states[name])
                merged[name] = acc
        return merged

    def assemble(self, cs: CellSpec, shards: list[Shard], results: dict[str, dict[str, float]],
                 statistics_s: float) -> CellResult:
        """The `CellResult` of a cell from its metrics' results (`statistics`) and its shards' counts and timings."""
        cell = cs.cell
        shards = sorted(shards, key=lambda sh: sh.lo)
        n = sum(sh.hi - sh.lo for sh in shards)
        dataset = self.dataset(cell)
        metrics = self.metrics(cell)
        values: dict[str, tuple] = {}
        for name, metric in metrics.items():
            desc = metric.describe()
            for k, v in results[name].items():
                values[k] = (v, name, metric.version, desc, metric.output(k))
        score_s = sum(sh.score_s for sh in shards) + statistics_s
        nfe = sum(sh.nfe_rows for sh in shards) / n if n else 0.0
        timings = {"nfe": (nfe, "evals/image"), "nfe_declared": (shards[0].nfe_declared, "evals/image"),
                   "generate_s": (sum(sh.generate_s for sh in shards), "s"), "score_s": (score_s, "s")}
        for sh in shards:
            timings.update(sh.latency)
        prov = {"weights": cs.weights_id, "dataset_fingerprint": dataset.fingerprint(),
                "metrics": {n_: m.version_key() for n_, m in metrics.items()}, "device": str(self.device),
                "dtype": cell.dtype, "batch_size": cell.batch_size,
                "generation_batch": min(sh.generation_batch for sh in shards)}
        if shards[0].generator:
            prov["generator"] = shards[0].generator     # resolved pipeline, scheduler, resize filter, guidance
        if len(shards) > 1:
            prov["shards"] = [[sh.lo, sh.hi] for sh in shards]
        backoffs = [b for sh in shards for b in sh.backoffs]
        if backoffs:
            prov["out_of_memory_backoffs"] = backoffs
        prov.update(dataset.provenance())              # decode failures, unmapped folders
        if getattr(dataset, "conditioning", "class") == "caption":     # the report's grids show the kept prompts
            kept_ids = [k[0] for sh in shards for k in sh.kept]
            ids = torch.tensor(kept_ids, dtype=torch.long)
            prov["kept_prompts"] = dict(zip(map(str, kept_ids), prompts_for(dataset, torch.zeros_like(ids), ids)))
        per_sample, features = self._rows(cs, shards, metrics, prov["dataset_fingerprint"])
        return CellResult(n, values, timings, prov, [k for sh in shards for k in sh.kept], nfe, per_sample, features)

    def _rows(self, cs: CellSpec, shards: list[Shard], metrics: dict[str, Any], fingerprint: str):
        """(per-sample values, kept features) of a cell from its shards' states (see `CellResult`)."""
        per_sample, features = {}, {}
        for name, metric in metrics.items():
            states = [sh.states[name] for sh in shards]
            wanted = getattr(metric, "per_sample", {}) or {}
            if not all(map(_is_rows_state, states)) or not (wanted or self.keep_features):
                continue                             # a plugin's own accumulator: nothing per sample to store
            state = sorted_state(states)
            for row, stored in wanted.items():
                if row in state["rows"]:
                    per_sample[stored] = (state["ids"], state["rows"][row])
            if self.keep_features:
                features[name] = (state, {"version_key": metric.version_key(), "options": cs.cell.metrics[name],
                                          "dataset_fingerprint": fingerprint, "cell_key": cs.key})
        return per_sample, features

    # -- latency ------------------------------------------------------------------------------------------------
    def _latency(self, cell: Cell, adapter, labels, ids, batch_times, gen_batch: int) -> dict[str, tuple[float, str]]:
        """Batch-1 latency, measured apart from the bulk pass by the robust rule (`bench.latency_rule`: timed until
        IQR / median reaches ``timing.iqr_target``, bounded; ``latency_repeats`` the timed calls); throughput at the
        suite batch size, either measured apart too ("separate") or from the bulk pass's full, synchronised batches
        after the first ("bulk"). With ``latency: per_setting`` a measurement is shared with the later cells of the
        same setting when it reached its target; after an unstable one the next such cell measures once more (a later
        moment of the run, so one contention episode is not copied to every dataset) and that one is shared."""
        t = self.timing
        if not t.enabled or not adapter.networks():
            return {}

        def call(b: int) -> None:
            generate(adapter, cell, labels[:b], ids[:b])

        # what batch-1 latency depends on: not the dataset, sample plan or seed (the seed's noise costs the same)
        memo = canonical_json({"model": asdict(cell.model), "adapter_version": adapter.version, "steps": cell.steps,
                               "cfg": cell.cfg, "solver": cell.solver, "dtype": cell.dtype, "device": str(self.device),
                               "timing": t.model_dump()})
        known = self._latency_memo.get(memo)
        reuse = t.latency == "per_setting" and known is not None and (known["stable"] == 1.0 or known["tries"] >= 2)
        if reuse:
            lat = known
        else:
            lat = self._latency_memo[memo] = {**measure_stable(
                call, 1, warmup=t.warmup, repeats=t.repeats, max_repeats=t.repeat_cap, target=t.iqr_target,
                max_seconds=t.max_seconds, device=self.device), "tries": (known or {}).get("tries", 0) + 1}
        shared = {"latency_shared": (float(reuse), "1 = taken from an earlier cell of these settings in this run"),
                  "latency_repeats": (lat["count"], "calls")}
        b = min(gen_batch, len(ids))    # the suite's batch size, or what out-of-memory back-off left of it
        full = [sec / n for n, sec in batch_times[1:] if n == min(cell.batch_size, len(ids))]
        if t.throughput == "bulk" and full:
            thr = summarize(full)
        else:
            thr = measure(call, b, min(t.warmup, 1), t.throughput_repeats, self.device)
        return {"latency_s": (lat["median_s"], "s/image @ batch 1"), "latency_iqr_s": (lat["iqr_s"], "s"),
                **shared, "throughput_ips": (1.0 / thr["median_s"], f"images/s @ batch {b}"),
                "throughput_iqr_s": (thr["iqr_s"], "s/image")}
