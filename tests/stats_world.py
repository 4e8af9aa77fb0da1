"""Stores for the paired-statistics tests: a synthetic one (per-sample scores with known differences, written
through `ResultStore.write`) and a tiny mini-world run with ``keep_features: true`` (real features, CPU, seconds)."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from bench.outputs import Output
from bench.store import ResultStore

MINI_SUITE = """
suite: tiny-stats
seed: 42
batch_size: 100
device: cpu
samples: {plan: per_reference, n: 100}
keep_samples: 0
keep_features: %s
timing: {warmup: 0, repeats: 1, throughput: bulk}
datasets:
  - {id: mini-val, options: {size: 100}}
metrics:
  fid_is_kid: {feature_extractor: mini-classifier, kid_subset_size: 50, kid_subsets: 5, batch_size: 100}
  clip_score: {backend: mini, model: clip, batch_size: 100}
  pickscore: {backend: mini, model: pick, batch_size: 100}
models:
  - {id: mini-sit, adapter: mini-sit, steps: %s, cfg: [1.0], solver: [euler]}
  - {id: mini-meanflow, adapter: mini-meanflow, steps: [1], cfg: [1.0]}
"""


def mini_store(folder: Path, keep_features: bool = True, sit_steps: str = "[1]") -> Path:
    """A tiny mini-world store (mini-sit at ``sit_steps``, mini-meanflow at 1 step; 100 samples of mini-val) run
    in-process; returns the store's path."""
    from bench.runner import Runner
    from bench.suite import Suite
    folder.mkdir(parents=True, exist_ok=True)
    suite = folder / "tiny.yaml"
    suite.write_text(MINI_SUITE % ("true" if keep_features else "false", sit_steps))
    db = folder / "bench.duckdb"
    Runner(Suite.load(str(suite)), db=db, progress=False).run()
    return db


OUT = {"clip_score": Output("clip_score", True, "CLIP Score"), "pickscore": Output("pickscore", True, "PickScore"),
       "fid": Output("fid", False, "FID")}


def synthetic_store(db: Path, cells: dict[tuple, dict[str, np.ndarray]], fid: dict[tuple, float] | None = None,
                    dataset: str = "syn-val", prefix: str = "") -> dict[tuple, str]:
    """Cells ``(model, steps, cfg) -> {metric: per-sample values}`` written with their means as stored values (and
    a stored FID without features when ``fid`` gives one); returns (model, steps, cfg) -> key."""
    keys = {}
    with ResultStore(db) as st:
        for i, ((model, steps, cfg), scores) in enumerate(cells.items()):
            key = f"{prefix}{i:02d}{model}-{steps}-{cfg}".ljust(64, "0")
            metrics = {m: (float(np.mean(v)), m, f"{m}-1", {}, OUT[m]) for m, v in scores.items()}
            if fid and (model, steps, cfg) in fid:
                metrics["fid"] = (fid[(model, steps, cfg)], "fid_is_kid", "fid_is_kid-2", {}, OUT["fid"])
            row = {"suite": "syn", "model_id": model, "adapter": "syn", "family": "syn", "dataset": dataset,
                   "steps": steps, "cfg": cfg, "seed": 0, "plan": "per_reference",
                   "n": len(next(iter(scores.values()))),
                   "status": "ok", "config": {"dataset": dataset, "metrics": {}}}
            st.write(key, row, metrics, {}, [],
                     {m: (np.arange(len(v)), np.asarray(v, dtype=np.float64)) for m, v in scores.items()})
            keys[(model, steps, cfg)] = key
    return keys
