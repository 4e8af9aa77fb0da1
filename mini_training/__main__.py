"""`python -m mini_training [PART ...]`: retrain the miniature world's weights on CPU from fixed seeds.

Parts run in dependency order: the metric networks first (classifier, clip, pick), then the generators
(sit, meanflow, then distill, whose teacher is sit). `make mini-weights` runs all of them.
"""

from __future__ import annotations

import argparse
import importlib
import time

PARTS = {
    "classifier": "mini_training.classifier:train_classifier",
    "clip": "mini_training.clip:train_clip",
    "pick": "mini_training.pick:train_pick",
    "sit": "mini_training.generators:train_sit",
    "meanflow": "mini_training.generators:train_meanflow_recipe",
    "distill": "mini_training.generators:train_distill",
}


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(prog="python -m mini_training", description=__doc__)
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
