"""Store and report: metric rows written through ResultStore.write, then `bench.load` and `bench report` on them.

Synthetic cells shaped like the default suite's (35 metric rows each: FID / IS / KID with stds, precision, recall,
CLIP Score and PickScore with std, bootstrap interval and 10 per-class means; 8 timing rows). The store grows in
blocks of 720 cells (25,200 metric rows: 4 datasets x 6 models x 5 steps x 6 CFG, a new set of models per block) to
100,800 rows; write, load and report are timed at 25k, 50k and 100k rows. Growth no worse than linear: the time per
row at 100k divided by the time per row at 25k is at most 1.10 (fixed costs make it smaller); for writes, a cell's
median write time in the last block of 25,200 rows (into a store already holding 75,600) divided by that of the same
cells written into an empty store. The two are written in turn, cell by cell (the order swapped every cell), so a
machine whose speed drifts over the minute a block takes slows both alike: comparing blocks written a minute apart
measured the neighbours' load as much as the store.
"""

from __future__ import annotations

import functools
import os
import random
import statistics
import time

import pytest
from perfkit import SUMMARY, device, target, timed

import bench
from bench import store_migrate
from bench.cli import main as cli_main
from bench.store import ResultStore

DATASETS = ("mini-val", "mini-v2", "mini-ood", "mini-x")
MODELS_PER_BLOCK = int(os.environ.get("STEPBENCH_PERF_STORE_MODELS", "6"))   # 6: 25,200 rows per block
STEPS, CFGS = (1, 2, 4, 8, 16), (1.0, 1.5, 2.0, 3.0, 4.0, 5.0)
BLOCKS = (1, 2, 4)                        # 25,200 / 50,400 / 100,800 metric rows
CLASSES = 10


def metric_rows(rng: random.Random) -> dict[str, tuple]:
    v = {"fid": rng.uniform(1, 80), "is": rng.uniform(2, 9), "is_std": rng.uniform(0, 0.3),
         "kid": rng.uniform(0, 0.05), "kid_std": rng.uniform(0, 0.01), "precision": rng.random(),
         "recall": rng.random()}
    for m, lo, hi in (("clip_score", 20, 35), ("pickscore", 15, 25)):
        mean = rng.uniform(lo, hi)
        v.update({m: mean, f"{m}_std": rng.uniform(1, 3), f"{m}_ci_low": mean - 0.2, f"{m}_ci_high": mean + 0.2})
        v.update({f"{m}/class/{y}": mean + rng.uniform(-1, 1) for y in range(CLASSES)})
    def source(name: str) -> str:
        return next((m for m in ("clip_score", "pickscore") if name.startswith(m)), "fid_is_kid")

    # with each value's declared Output, as the engine hands cells to the store (a 4-tuple is a version-1 row)
    return {k: (x, source(k), f"{source(k)}-2", {"synthetic": True}, _output(k)) for k, x in v.items()}


@functools.lru_cache(maxsize=None)
def _output(name: str):
    return store_migrate.v1_output(name)[0]


def write_block(store: ResultStore, block: int, run_id: str, cell_s: list[float] | None = None,
                partner: tuple[ResultStore, str, list[float]] | None = None) -> int:
    """Write one block of cells; ``cell_s`` collects the seconds of each ``store.write``. With ``partner`` (store,
    its run id, its seconds), each cell is also written there, in turn with the first store (order swapped each
    cell)."""
    rng, rows = random.Random(block), 0
    for mi in range(MODELS_PER_BLOCK):
        model = f"model-{block}-{mi}"
        for ds in DATASETS:
            for steps in STEPS:
                for cfg in CFGS:
                    key = f"{model}|{ds}|{steps}|{cfg}"
                    row = {"run_id": run_id, "suite": "perf-store", "model_id": model, "adapter": "synthetic",
                           "family": "flow", "dataset": ds, "steps": steps, "cfg": cfg, "solver": "euler", "seed": 42,
                           "plan": "per_reference n=500", "n": 500, "status": "ok", "error": None,
                           "config": {"model": model, "steps": steps, "cfg": cfg}, "provenance": {"synthetic": True},
                           "seconds": rng.uniform(1, 10)}
                    metrics = metric_rows(rng)
                    timings = {"nfe": (2.0 * steps, "evals/image"), "nfe_declared": (2.0 * steps, "evals/image"),
                               "generate_s": (rng.random(), "s"), "score_s": (rng.random(), "s"),
                               "latency_s": (rng.random() / 100, "s/image @ batch 1"),
                               "latency_iqr_s": (0.0, "s"), "throughput_ips": (rng.uniform(100, 1000), "images/s"),
                               "throughput_iqr_s": (0.0, "s/image")}
                    targets = [(store, run_id, cell_s)] + ([partner] if partner else [])
                    if len(targets) == 2 and rows // len(metrics) % 2:
                        targets.reverse()
                    for st, rid, seconds in targets:
                        t0 = time.perf_counter()
                        st.write(key, {**row, "run_id": rid}, metrics, timings)
                        if seconds is not None:
                            seconds.append(time.perf_counter() - t0)
                    rows += len(metrics)
    return rows


@pytest.mark.timeout(3600)       # three reports of up to 100,800 rows: minutes each on a small shared CPU
def test_store_and_report_scale_linearly(benchmark, tmp_path):
    dev = device()
    db = tmp_path / "store.duckdb"
    store = ResultStore(db)
    run_id = store.begin_run("perf-store", "<synthetic>", "0" * 64, {"synthetic": True})
    rows, written, timings, block_s = 0, 0, {}, []     # block_s: per block, each cell's write seconds
    empty = ResultStore(tmp_path / "empty.duckdb")        # the last block's cells again, into an empty store
    empty_s: list[float] = []
    empty_run = empty.begin_run("perf-store", "<synthetic>", "0" * 64, {"synthetic": True})
    for blocks in BLOCKS:
        before, first = rows, written
        while written < blocks:
            block_s.append([])
            last = written == BLOCKS[-1] - 1
            rows += write_block(store, written, run_id, block_s[-1], (empty, empty_run, empty_s) if last else None)
            written += 1
        t_write = sum(sum(b) for b in block_s[first:])     # the seconds of this store's writes only
        store.close()
        out = tmp_path / f"report-{blocks}"
        t_load = timed(lambda: bench.load(str(db)), dev)
        t_report = timed(lambda o=out: cli_main(["report", "--db", str(db), "--out", str(o)]), dev)
        timings[rows] = {"write_per_row": t_write / (rows - before), "rows_added": rows - before,
                         "load": t_load, "report": t_report}
        df = bench.load(str(db))
        assert len(df) == written * MODELS_PER_BLOCK * len(DATASETS) * len(STEPS) * len(CFGS)
        assert (out / "perf-store" / "index.html").is_file()
        store = ResultStore(db)
    store.close()
    empty.close()
    benchmark.pedantic(lambda: bench.load(str(db)), rounds=1, iterations=1)

    small, big = min(timings), max(timings)
    sec = "3 store + report"
    benchmark.extra_info.update({f"{r}_rows": v for r, v in timings.items()})
    for r, v in sorted(timings.items()):
        SUMMARY.add(sec, f"{r:,} rows: write / load / report (s)",
                    f"{v['write_per_row'] * v['rows_added']:.3g} / {v['load']:.3g} / {v['report']:.3g}",
                    note=f"write {v['write_per_row'] * 1e6:.0f} us/row (the {v['rows_added']:,} rows added)", dev=dev)
    for what in ("write_per_row", "load", "report"):
        a, b = timings[small][what], timings[big][what]
        # write: a cell's median write time in the last block (into a store of 75,600 rows) against the same cells
        # written in turn into an empty store; medians over 720 cells each
        ratio = (statistics.median(block_s[-1]) / statistics.median(empty_s) if what == "write_per_row"
                 else (b / big) / (a / small))
        label = ("write: median cell write, last 25,200-row block (store at 75,600) / the same cells into an "
                 "empty store, written in turn" if what == "write_per_row"
                 else f"{what}: per-row time {big:,} / {small:,} rows")
        note = (f"median {statistics.median(block_s[-1]) * 1e3:.3g} ms vs {statistics.median(empty_s) * 1e3:.3g} ms; "
                f"first block / last block written a minute apart: "
                f"{statistics.median(block_s[-1]) / statistics.median(block_s[0]):.3g}" if what == "write_per_row"
                else "")
        SUMMARY.add(sec, label, ratio, "<= 1.10", ratio <= 1.10, note, dev=dev)
        target(ratio <= 1.10, f"{what} per-row time grows {ratio:.2f}x from {small} to {big} rows")
    print("\n" + "\n".join(f"{r} rows: {v}" for r, v in sorted(timings.items())))
