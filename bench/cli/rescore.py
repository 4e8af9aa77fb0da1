"""`bench rescore SUITE --metrics NAME[,NAME]`: set metrics recomputed from kept features, stored as new cells
(`bench.rescore`). No sample is generated. Exit 0: every stored cell rescored; 1: some stored cells could not be
(one line each: which, and why); 2: nothing could be rescored, or bad input."""

from __future__ import annotations

import sys

from bench.cli.common import DEFAULT_DB, INCLUDE_HELP, err, load_suite, positive_int


def cmd_rescore(args) -> int:
    from bench.rescore import RescoreError, Rescorer, parse_sets
    from bench.runner import Runner
    suite = load_suite(args.suite, args.include)
    metrics = [m.strip() for m in args.metrics.split(",") if m.strip()]
    runner = Runner(suite, db=args.db, progress=False, device=args.device, includes=tuple(args.include),
                    cache_dir=args.cache, limit=args.limit)
    try:
        rescorer = Rescorer(runner, metrics, reference=args.reference, sets=parse_sets(args.set, metrics))
        report = rescorer.run()
    except RescoreError as e:
        return err(str(e))
    for line in report.lines:
        print(line)
    for line in report.problems:
        print(f"cannot rescore {line}", file=sys.stderr)
    stored = len(report.rescored) + len(report.problems)
    print(f"{suite.name}: {len(report.rescored)} of {stored} stored cells rescored ({', '.join(metrics)}"
          + (f", reference {args.reference}" if args.reference else "") + f") -> {args.db}"
          + (f"; {report.not_stored} cells of the suite are not stored (bench run first)" if report.not_stored else ""))
    if not report.rescored:
        return err("nothing could be rescored" + ("" if report.problems else
                                                  f": no cell of suite {suite.name!r} is stored in {args.db}"))
    return 1 if report.problems else 0


def add(sub) -> None:
    p = sub.add_parser("rescore", help="recompute set metrics of stored cells from their kept features (suite "
                                       "keep_features: true) with other options or another reference set, as new "
                                       "cells; generates nothing")
    p.add_argument("suite")
    p.add_argument("--metrics", required=True, metavar="NAME[,NAME]",
                   help="the suite's metrics to recompute, comma-separated (e.g. fid_is_kid)")
    p.add_argument("--db", default=DEFAULT_DB)
    p.add_argument("--reference", default=None, metavar="DATASET_ID",
                   help="the reference set to compare with: a dataset id of the suite, or a registered dataset "
                        "(default: each cell's own dataset)")
    p.add_argument("--set", action="append", default=[], metavar="METRIC.OPTION=VALUE",
                   help="change an option computed from the features (value read as YAML), repeatable, e.g. "
                        "fid_is_kid.kid_subsets=100; options that choose the network or its input are refused")
    p.add_argument("--limit", type=positive_int, default=None, metavar="N",
                   help="rescore the smoke-run cells of `bench run --limit N`")
    p.add_argument("--device", default=None, help="override the suite's device (auto, cpu, cuda[:N])")
    p.add_argument("--cache", default=None, metavar="DIR",
                   help="reference statistics folder (default: cache/ beside --db)")
    p.add_argument("--include", action="append", default=[], metavar="MODULE_OR_PATH", help=INCLUDE_HELP)
    p.set_defaults(fn=cmd_rescore)
