"""Store and report: metric rows written through ResultStore.write, then `bench.load` and `bench report` on them.

Synthetic cells shaped like the default suite's (35 metric rows each: FID / IS / KID with stds, precision, recall,
CLIP Score and PickScore with std, bootstrap interval and 10 per-class means; 8 timing rows). The store grows in
blocks of 720 cells (25,200 metric rows: 4 datasets x 6 models x 5 steps x 6 CFG, a new set of models per block) to
100,800 rows; write, load and report are timed at 25k, 50k and 100k rows. Growth no worse than linear: the time per
row at 100k divided by the time per row at 25k is at most 1.10 (fixed costs make it smaller); for writes, a cell's
median write time in the last block of 25,200 rows (into a store already holding 75,600) divided by that of the first
block (into an empty one).
"""

from __future__ import annotations

import os
import random
import statistics
import time

from perfkit import SUMMARY, device, target, timed

import bench
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

    return {k: (x, source(k), f"{source(k)}-2", {"synthetic": True}) for k, x in v.items()}


def write_block(store: ResultStore, block: int, run_id: str, cell_s: list[float] | None = None) -> int:
    """Write one block of cells; ``cell_s`` collects the seconds of each ``store.write``."""
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
                    t0 = time.perf_counter()
                    store.write(key, row, metrics, timings)
                    if cell_s is not None:
                        cell_s.append(time.perf_counter() - t0)
                    rows += len(metrics)
    return rows


def test_store_and_report_scale_linearly(benchmark, tmp_path):
    dev = device()
    db = tmp_path / "store.duckdb"
    store = ResultStore(db)
    run_id = store.begin_run("perf-store", "<synthetic>", "0" * 64, {"synthetic": True})
    rows, written, timings, block_s = 0, 0, {}, []     # block_s: per block, each cell's write seconds
    for blocks in BLOCKS:
        before = rows
        t0 = time.perf_counter()
        while written < blocks:
            block_s.append([])
            rows += write_block(store, written, run_id, block_s[-1])
            written += 1
        t_write = time.perf_counter() - t0
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
        # write: a cell's median write time in the last block (into a store of 75,600 rows) against the first block
        # (into an empty store); medians over 720 cells each, steadier than block totals on a drifting VM
        ratio = (statistics.median(block_s[-1]) / statistics.median(block_s[0]) if what == "write_per_row"
                 else (b / big) / (a / small))
        label = ("write: median cell write, last 25,200-row block (store at 75,600) / first (empty store)"
                 if what == "write_per_row" else f"{what}: per-row time {big:,} / {small:,} rows")
        SUMMARY.add(sec, label, ratio, "<= 1.10",
                    ratio <= 1.10, dev=dev)
        target(ratio <= 1.10, f"{what} per-row time grows {ratio:.2f}x from {small} to {big} rows")
    print("\n" + "\n".join(f"{r} rows: {v}" for r, v in sorted(timings.items())))
