"""`bench run` and `bench validate`: a suite's plan, and running it."""

from __future__ import annotations

import argparse
import sys

from bench.cli.common import DEFAULT_DB, INCLUDE_HELP, load_suite, positive_int


def cmd_validate(args) -> int:
    suite = load_suite(args.suite, args.include)
    cells = suite.expand()
    import pandas as pd

    from bench import registry
    rows, total_images, total_nfe, unsized = [], 0, 0, 0
    for c in cells:
        adapter = registry.resolve("model adapter", c.model.adapter)()
        n = planned_n(c)
        try:
            nfe = adapter.nfe_per_image(c.settings())
        except Exception:       # some adapters know their NFE only once loaded (counted at run time anyway)
            nfe = float("nan")
        if n is None:
            unsized += 1
        else:
            total_images += n
            total_nfe += n * (nfe if nfe == nfe else 0)     # NaN: adaptive solvers, counted at run time
        rows.append({"model": c.model.id, "adapter": c.model.adapter, "dataset": c.dataset, "steps": c.steps,
                     "cfg": c.cfg, "solver": c.solver, "seed": c.seed, "n": n, "nfe/img": nfe})
    df = pd.DataFrame(rows)
    print(f"suite {suite.name!r} ({args.suite}): {len(cells)} cells, {len(suite.spec.datasets)} datasets, "
          f"{len(suite.spec.models)} models, metrics: {', '.join(suite.spec.metrics)}")
    with pd.option_context("display.max_rows", args.max_rows, "display.width", 160):
        print(df.to_string(index=False, max_rows=args.max_rows))
    print(f"total images: {total_images:,}   total declared NFE: {total_nfe:,}"
          + (f"   (+ {unsized} cells sized by their dataset's copy on disk)" if unsized else ""))
    for m in suite.spec.models:      # guidance semantics the plan must not hide (e.g. SoFlow's ignored cfg axis)
        cls = registry.resolve("model adapter", m.adapter)
        if cls.cfg_ignored and m.cfg:
            print(f"note: {m.id} ({m.adapter}): the cfg axis is ignored -- {cls.guidance}; its cfg values "
                  f"{m.cfg} give identical images")
        elif cls.guidance and m.cfg:
            print(f"guidance: {m.id} ({m.adapter}): {cls.guidance}")
    return 0


def planned_n(cell) -> int | None:
    """Samples a cell will generate, from the plan and the dataset's card alone (None when only the copy on disk
    can tell)."""
    from bench import registry
    p = cell.plan
    ds = registry.resolve("dataset", cell.dataset_source)
    if p.kind == "per_class":
        card = ds.card(cell.dataset_source)
        return p.n * card.classes if card is not None and card.classes else None
    if p.kind == "uniform":
        return p.n
    size = ds.planned_size(cell.dataset_source, cell.dataset_options)
    if p.n is not None:
        return p.n if size is None else min(p.n, size)
    return size


def cmd_run(args) -> int:
    from bench.runner import Runner
    suite = load_suite(args.suite, args.include)
    runner = Runner(suite, db=args.db, overwrite=args.overwrite, progress=not args.quiet, device=args.device,
                    includes=tuple(args.include))
    if args.executor == "ray":
        from bench.dist.ray_executor import RayExecutor, RayOptions
        opts = RayOptions(address=args.ray_address, workers=args.workers, gpus_per_task=args.gpus_per_task,
                          cpus_per_task=args.cpus_per_task, shards_per_cell=args.shards_per_cell,
                          max_retries=args.max_retries)
        s = RayExecutor(runner, opts).run()
    else:
        s = runner.run()
    print(f"{suite.name}: {s.planned} cells planned, {s.ran} ran, {s.skipped} already stored, {s.failed} failed; "
          f"{s.images:,} images in {s.seconds:.1f} s -> {args.db}")
    for f in s.failures:
        print(f"  failed: {f}", file=sys.stderr)
    if s.interrupted:
        print("interrupted: cells written so far are kept; run the same command again to resume", file=sys.stderr)
    return s.exit_code



def add(sub) -> None:
    p = sub.add_parser("run", help="run a suite (skips cells already stored)")
    p.add_argument("suite")
    p.add_argument("--include", action="append", default=[], metavar="MODULE_OR_PATH", help=INCLUDE_HELP)
    p.add_argument("--db", default=DEFAULT_DB)
    p.add_argument("--overwrite", choices=["never", "missing", "always"], default="missing",
                   help="never: keep every stored cell; missing (default): re-run missing and failed cells; "
                        "always: re-run everything")
    p.add_argument("--device", default=None, help="override the suite's device (auto, cpu, cuda[:N])")
    p.add_argument("-q", "--quiet", action="store_true", help="no progress bars or per-cell lines")
    g = p.add_argument_group("scale-out (Ray)")
    g.add_argument("--executor", choices=["local", "ray"], default="local",
                   help="local (default): one process; ray: cells and shards as tasks on a Ray cluster")
    g.add_argument("--ray-address", default=None, help="Ray cluster address (default: $RAY_ADDRESS, else a local Ray)")
    g.add_argument("--workers", type=positive_int, default=None,
                   help="model actors per model (default: as many as the cluster's CPUs/GPUs allow)")
    g.add_argument("--gpus-per-task", type=float, default=0.0, help="GPUs each worker holds (0 on CPU clusters)")
    g.add_argument("--cpus-per-task", type=float, default=1.0, help="CPUs each worker holds")
    g.add_argument("--shards-per-cell", type=positive_int, default=1,
                   help="split each cell's samples into K disjoint ranges run in parallel and merged exactly")
    g.add_argument("--max-retries", type=int, default=2, help="retries of a shard whose worker died")
    g.add_argument("--ray-import", action="append", dest="include", metavar="MODULE", help=argparse.SUPPRESS)
    p.set_defaults(fn=cmd_run)

    p = sub.add_parser("validate", help="check a suite and print its plan")
    p.add_argument("suite")
    p.add_argument("--include", action="append", default=[], metavar="MODULE_OR_PATH", help=INCLUDE_HELP)
    p.add_argument("--max-rows", type=int, default=60)
    p.set_defaults(fn=cmd_validate)

