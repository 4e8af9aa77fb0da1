"""`bench run` and `bench validate`: a suite's plan, and running it."""

from __future__ import annotations

import argparse
import sys

from bench.cli.common import DEFAULT_DB, INCLUDE_HELP, err, load_suite, positive_int
from bench.parts import PartError, declared_nfe, parse_part, planned_n  # planned_n lives in bench.parts now

PART_HELP = ("run only part i of N disjoint parts of the suite's cells, balanced by declared cost (NFE x samples) "
             "and the same on every machine; i is 0-based (0..N-1), as $SLURM_ARRAY_TASK_ID")


def cmd_validate(args) -> int:
    try:
        part = None if args.part is None else parse_part(args.part)
    except PartError as e:
        return err(str(e))
    suite = load_suite(args.suite, args.include)
    cells = suite.expand()
    if part is not None:
        from bench import parts
        costs = parts.costs(cells)
        keep = parts.partition(cells, part[1], costs)[part[0]]
        print(f"part {part[0]}/{part[1]}: {len(keep)} of {len(cells)} cells, declared cost (NFE x samples) "
              f"{sum(costs[j] for j in keep):,.0f} of {sum(costs):,.0f}")
        cells = [cells[j] for j in keep]
    import pandas as pd

    from bench import registry
    rows, total_images, total_nfe, unsized, adapters = [], 0, 0, 0, {}
    for c in cells:
        n = planned_n(c)
        nfe = declared_nfe(c, adapters)     # NaN: some adapters know their NFE only once loaded (counted anyway)
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
    for m in suite.spec.models:      # what cfg means for every model (the plan must not hide SoFlow's ignored axis)
        cls = registry.resolve("model adapter", m.adapter)
        if cls.cfg_ignored and m.cfg:
            print(f"note: {m.id} ({m.adapter}): the cfg axis is ignored -- {cls.guidance}; its cfg values "
                  f"{m.cfg} give identical images")
        elif not cls.sweeps:
            print(f"guidance: {m.id} ({m.adapter}): none (no steps or cfg axes: its images are not generated here)")
        else:
            print(f"guidance: {m.id} ({m.adapter}): {cls.guidance or 'not declared (the adapter sets no guidance)'}")
    if args.plan_only:
        return 0
    report = _preflight(cells, args)
    for line in report.notes:
        print(line)
    return _missing(report, keep_going=False, run=False)


def _preflight(cells, args):
    """The pre-flight of these cells (`bench.preflight`), with the run's own needs (Ray for --executor ray)."""
    from bench import preflight
    extra = [preflight.package("ray", "the Ray executor", "ray")] if getattr(args, "executor", "") == "ray" else []
    return preflight.check(cells, extra)


def _missing(report, keep_going: bool, run: bool = True) -> int:
    """Print what the pre-flight found missing (stderr); 2 when a run must not start, else 0."""
    for line in report.lines(keep_going=keep_going, run=run):
        print(line, file=sys.stderr)
    return 0 if report.ok or (keep_going and report.blocked_cells < report.cells) else 2


def cmd_run(args) -> int:
    from bench.runner import Runner
    try:
        part = None if args.part is None else parse_part(args.part)
    except PartError as e:
        return err(str(e))
    suite = load_suite(args.suite, args.include)
    runner = Runner(suite, db=args.db, overwrite=args.overwrite, progress=not args.quiet, device=args.device,
                    includes=tuple(args.include), part=part, cache_dir=args.cache, limit=args.limit)
    report = _preflight(runner.cells(), args)         # before the store is opened: a refused run writes nothing
    code = _missing(report, args.keep_going)
    for line in report.notes:
        print(line, file=sys.stderr)
    if code:
        return code
    if not report.ok:
        runner.skip = report.blocks
    if args.executor == "ray":
        from bench.dist.ray_executor import RayExecutor, RayOptions
        opts = RayOptions(address=args.ray_address, workers=args.workers, gpus_per_task=args.gpus_per_task,
                          cpus_per_task=args.cpus_per_task, shards_per_cell=args.shards_per_cell,
                          max_retries=args.max_retries)
        s = RayExecutor(runner, opts).run()
    else:
        s = runner.run()
    left = f", {s.left_out} left out (inputs missing, listed above)" if s.left_out else ""
    smoke = f" (smoke run: at most {args.limit} samples per cell)" if args.limit else ""
    print(f"{suite.name}: {s.planned} cells planned, {s.ran} ran, {s.skipped} already stored, {s.failed} failed"
          f"{left}; {s.images:,} images in {s.seconds:.1f} s -> {args.db}{smoke}")
    for line in s.failure_lines():                    # each distinct error once, with its count and cells
        print(f"  {line}", file=sys.stderr)
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
    p.add_argument("--part", default=None, metavar="i/N", help=PART_HELP + "; merge the stores with `bench merge`")
    p.add_argument("--limit", type=positive_int, default=None, metavar="N",
                   help="smoke run: cap every cell at N samples (kept apart from full cells: the cap is in the cell "
                        "key, and reports mark such cells)")
    p.add_argument("--keep-going", action="store_true",
                   help="when the pre-flight finds inputs missing, run the cells whose inputs are present and list "
                        "the rest (default: exit 2 before anything is run or written)")
    p.add_argument("--cache", default=None, metavar="DIR",
                   help="reference statistics folder (default: cache/ beside --db); share one between jobs")
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

    p = sub.add_parser("validate", help="check a suite, print its plan and what cfg means, and check that its "
                                        "inputs are on this machine")
    p.add_argument("suite")
    p.add_argument("--include", action="append", default=[], metavar="MODULE_OR_PATH", help=INCLUDE_HELP)
    p.add_argument("--max-rows", type=int, default=60, help="rows of the plan table to print")
    p.add_argument("--part", default=None, metavar="i/N",
                   help="print only part i of N of the plan, the cells `bench run --part i/N` runs (i: 0..N-1)")
    p.add_argument("--plan-only", action="store_true",
                   help="print the plan only, without the pre-flight checks of datasets, weights and packages "
                        "(by default a missing input exits 2, as `bench run` would)")
    p.set_defaults(fn=cmd_validate)

