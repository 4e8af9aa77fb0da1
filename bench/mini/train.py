"""`python -m bench.mini.train [PART ...]`: retrain the miniature world's weights on CPU from fixed seeds.

Parts run in dependency order: the metric networks first (classifier, clip, pick), then the generators
(sit, meanflow, then distill, whose teacher is sit). `make mini-weights` runs all of them.
"""

from __future__ import annotations

import argparse
import importlib
import time

PARTS = {
    "classifier": "bench.mini.train_metrics:train_classifier",
    "clip": "bench.mini.train_metrics:train_clip",
    "pick": "bench.mini.train_metrics:train_pick",
    "sit": "bench.mini.train_generators:train_sit",
    "meanflow": "bench.mini.train_generators:train_meanflow_recipe",
    "distill": "bench.mini.train_generators:train_distill",
}


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(prog="python -m bench.mini.train", description=__doc__)
    ap.add_argument("parts", nargs="*", choices=list(PARTS), default=list(PARTS))
    ap.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's choice)")
    args = ap.parse_args(argv)
    import torch
    if args.threads:
        torch.set_num_threads(args.threads)
    for part in args.parts:
        mod, attr = PARTS[part].split(":")
        t0 = time.time()
        print(f"== training {part}", flush=True)
        getattr(importlib.import_module(mod), attr)()
        print(f"== {part} done in {time.time() - t0:.0f} s", flush=True)


if __name__ == "__main__":
    main()
