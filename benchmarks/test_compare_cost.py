"""Cost of the paired statistics on a store shaped like the default suite's (suites/mini.yaml) with kept features:
`bench compare` of two cells and the rank bootstrap of the report (rank intervals and sample-size curves of every
leaderboard).

The store: 3 datasets x 45 cells (mini-sit 5 steps x 4 CFG, mini-meanflow and mini-distill 3 x 4, one real row)
of n = 500, each with kept fid_is_kid features (128-d FID layer and 10 logits, float32, as the mini-classifier
gives) and per-sample CLIP Score / PickScore rows, written through `ResultStore.write` and `bench.features.save`
(synthetic values: the cost does not depend on them); the reference features are the mini-classifier's on
mini-val (computed once into the store's cache, outside the timings). Timed: ``bench compare`` in-process (open,
resolve, load both cells, 1,000 resamples of 7 metrics, print), and `bench.report.ranks.board_stats` (200
resamples per board for the rank intervals, 100 per subset size for the sample-size curves), each the median of
2 calls after one warm-up.
"""

from __future__ import annotations

import io
import statistics
import time
from contextlib import redirect_stdout

import numpy as np
import torch
from perfkit import SUMMARY

import bench
from bench import features
from bench.cli import main as cli_main
from bench.outputs import Output
from bench.store import ResultStore

SEC = "paired statistics"
N = 500
OPTS = {"feature_extractor": "mini-classifier", "kid_subset_size": 250, "kid_subsets": 50, "batch_size": 500}
MODELS = (("mini-sit", (1, 2, 4, 8, 16)), ("mini-meanflow", (1, 2, 4)), ("mini-distill", (1, 2, 4)))
CFGS = (1.0, 1.5, 3.0, 5.0)
OUT = {m: Output(m, hib, m) for m, hib in (("fid", False), ("is", True), ("clip_score", True), ("pickscore", True))}


def _store(folder) -> str:
    rng = np.random.default_rng(0)
    db = folder / "bench.duckdb"
    root = features.root_for(db)
    with ResultStore(db) as st:
        for dataset in ("mini-val", "mini-v2", "mini-ood"):
            cells = [(m, s, c) for m, steps in MODELS for s in steps for c in CFGS] + [("real-vs-real", None, None)]
            for i, (model, steps, cfg) in enumerate(cells):
                key = f"{dataset}-{i:03d}".ljust(64, "0")
                z = rng.normal(size=(N, 128)).astype(np.float32)
                state = {"rows": {"fid": torch.tensor(z), "isc": torch.tensor(rng.normal(size=(N, 10)) * 3,
                                                                               dtype=torch.float32)},
                         "ids": torch.arange(N), "labels": torch.tensor(rng.integers(0, 10, N))}
                features.save(root, key, "fid_is_kid", state, {"synthetic": True})
                scores = {"clip_score": rng.normal(30, 3, N), "pickscore": rng.normal(20, 1, N)}
                values = {"fid": rng.uniform(5, 60), "is": rng.uniform(2, 8),
                          **{m: float(v.mean()) for m, v in scores.items()}}
                row = {"suite": "mini", "model_id": model, "adapter": model, "dataset": dataset, "steps": steps,
                       "cfg": cfg, "seed": 42, "plan": "per_reference:500", "n": N, "status": "ok",
                       "family": "real" if model == "real-vs-real" else model,
                       "config": {"dataset": dataset, "dataset_source": dataset, "dataset_options": {"size": 1000},
                                  "metrics": {"fid_is_kid": OPTS}}}
                st.write(key, row, {m: (v, m, "syn", {}, OUT[m]) for m, v in values.items()}, {}, [],
                         {m: (np.arange(N), v) for m, v in scores.items()})
    return str(db)


def _median(fn, calls: int = 2) -> float:
    fn()                                        # warm-up: imports, reference features, networks
    times = []
    for _ in range(calls):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def test_compare_and_rank_bootstrap_cost(benchmark, tmp_path):
    db = _store(tmp_path)
    args = ["compare", "--db", db, "mini-sit:4:1.5@mini-val", "mini-meanflow:1:1.5@mini-val"]

    def compare():
        with redirect_stdout(io.StringIO()):
            assert cli_main(args) == 0
    compare_s = _median(compare)
    from bench.report.directions import from_store
    from bench.report.ranks import board_stats
    df = bench.load(db)
    specs = from_store(db)
    out = {}

    def ranks():
        out.update(board_stats(db, df, specs))
    ranks_s = _median(ranks)
    assert len(out) == 3 and all(b.ranks is not None and not b.note for b in out.values())
    SUMMARY.add(SEC, "bench compare: s for two cells (n = 500, 1,000 resamples, FID + IS from features, CLIP + "
                "Pick from scores)", f"{compare_s:.3g}", note="in-process: store open, load, bootstrap, print")
    SUMMARY.add(SEC, "rank bootstrap of the default suite's leaderboards: s (3 boards x 44 cells, 200 resamples; "
                "sample-size curves 100 per size)", f"{ranks_s:.3g}", note="bench.report.ranks.board_stats")
    benchmark.extra_info.update(compare_s=compare_s, rank_bootstrap_s=ranks_s)
    benchmark.pedantic(lambda: None, rounds=1, iterations=1)
