"""`python -m mini_training.check`: does `make mini-weights` reproduce the shipped miniature-world weights?

Copies ``bench/`` and ``mini_training/`` (with the shipped weights) into a scratch folder, retrains every part
there exactly as `make mini-weights` does (two single-threaded chains: the metric networks, then sit -> meanflow
-> distill), and compares each fresh file with the shipped one tensor by tensor (``torch.equal`` on the stored
fp16 tensors), together with the manifest's training record (config, seed, steps). Timings are not compared.

Invariant: exit 0 only when every shipped entry was retrained and is bit-identical; otherwise each differing entry
is named with what differs, and the exit code is 1. The recipe is deterministic for a given torch build and CPU
kind (one thread, seeded generators, no wall-clock caps: two runs on one machine give the same bits); the manifest
records the torch build and CPU kind each file was made on, and a different one is reported, since float kernels of
another CPU kind round differently (measured: the classifier's recipe at the commit that first shipped it and today
agree bit for bit on one machine, and both differ from files trained on another). It takes about 40 minutes on 2 cores.
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
CHAINS = (("classifier", "clip", "pick"), ("sit", "meanflow", "distill"))   # as in the Makefile's mini-weights
RECORD = ("config", "seed", "steps", "dtype")                                # manifest fields that must agree


def compare(shipped_dir: Path, fresh_dir: Path, names: list[str] | None = None) -> dict[str, list[str]]:
    """{name: [what differs]} for each shipped entry (all, or ``names``); an empty list means bit-identical."""
    from safetensors.torch import load_file

    from bench.mini.weights import read_manifest

    shipped, fresh = read_manifest(shipped_dir), read_manifest(fresh_dir)
    out: dict[str, list[str]] = {}
    for name in names or sorted(shipped):
        diffs: list[str] = []
        if name not in fresh:
            out[name] = ["not retrained"]
            continue
        a, b = _record(shipped[name]), _record(fresh[name])
        diffs += [f"manifest {k}: shipped {a.get(k)!r}, fresh {b.get(k)!r}" for k in RECORD if a.get(k) != b.get(k)]
        ta, tb = load_file(str(shipped_dir / a["file"])), load_file(str(fresh_dir / b["file"]))
        if set(ta) != set(tb):
            diffs.append(f"tensor names differ: {sorted(set(ta) ^ set(tb))[:5]}")
        unequal = [k for k in sorted(set(ta) & set(tb)) if ta[k].shape != tb[k].shape or not ta[k].equal(tb[k])]
        if unequal:
            diffs.append(f"{len(unequal)} of {len(ta)} tensors differ (first: {unequal[0]})")
        out[name] = diffs
    return out


def _record(entry: dict) -> dict:
    """A manifest entry without its timings (``train_seconds``, and ``*_seconds`` inside the config such as the
    distillation's ``teacher_seconds``): what a rerun of the recipe must reproduce."""
    cfg = {k: v for k, v in (entry.get("config") or {}).items() if not k.endswith("_seconds")}
    files = {"file": entry["file"]} if "file" in entry else {}
    return {**{k: entry.get(k) for k in RECORD}, "config": cfg, **files}


def retrain(scratch: Path, threads: int = 1) -> None:
    """Retrain every part in a copy of the sources under ``scratch`` (its own weights folder)."""
    for pkg in ("bench", "mini_training"):
        shutil.copytree(ROOT / pkg, scratch / pkg, ignore=shutil.ignore_patterns("__pycache__"))
    env = dict(os.environ, PYTHONPATH=str(scratch), OMP_NUM_THREADS=str(threads))
    procs = [subprocess.Popen([sys.executable, "-m", "mini_training", *chain, "--threads", str(threads)],
                              cwd=scratch, env=env) for chain in CHAINS]
    codes = [p.wait() for p in procs]
    if any(codes):
        raise SystemExit(f"training failed (exit codes {codes})")


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m mini_training.check", description=__doc__.split("\n\n")[0])
    ap.add_argument("--keep", metavar="DIR", help="train in DIR and keep it (default: a temporary folder)")
    ap.add_argument("--fresh", metavar="DIR", help="compare with an already retrained copy's bench/mini/weights")
    args = ap.parse_args(argv)
    shipped = ROOT / "bench" / "mini" / "weights"
    t0 = time.time()
    if args.fresh:
        fresh = Path(args.fresh)
        return _report(shipped, fresh, t0)
    with tempfile.TemporaryDirectory(prefix="stepbench-mini-weights-") as tmp:
        scratch = Path(args.keep) if args.keep else Path(tmp)
        scratch.mkdir(parents=True, exist_ok=True)
        retrain(scratch)
        return _report(shipped, scratch / "bench" / "mini" / "weights", t0)


def _report(shipped: Path, fresh: Path, t0: float) -> int:
    import torch

    from bench.mini.weights import read_manifest
    result = compare(shipped, fresh)
    from bench.mini.weights import cpu
    entries = read_manifest(shipped).values()
    made_with, made_on = {e.get("torch") for e in entries}, {e.get("cpu") for e in entries}
    if made_with != {torch.__version__}:
        print(f"note: shipped weights were made with torch {sorted(map(str, made_with))}, this is {torch.__version__}")
    if made_on != {cpu()}:
        print(f"note: shipped weights were trained on {sorted(map(str, made_on))}, this is {cpu()!r}: float kernels "
              f"of another CPU kind may round differently, so differences here need not be a recipe defect")
    for name, diffs in result.items():
        print(f"{name:12s} {'identical' if not diffs else 'DIFFERS: ' + '; '.join(diffs)}")
    bad = [n for n, d in result.items() if d]
    print(f"{len(result) - len(bad)} of {len(result)} shipped weights reproduced bit for bit "
          f"({time.time() - t0:.0f} s)")
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
