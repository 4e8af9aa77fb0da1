"""`bench`: run · validate · ls · show · report · export. Thin: parsing and printing only.

Exit codes: 0 success, 1 some cells failed, 2 bad input (suite, store, arguments), 130 interrupted.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

DEFAULT_DB = "results/bench.duckdb"


def _err(msg: str) -> int:
    print(f"error: {msg}", file=sys.stderr)
    return 2


def _load_suite(path: str):
    from bench.suite import Suite
    return Suite.load(path)


def cmd_validate(args) -> int:
    suite = _load_suite(args.suite)
    cells = suite.expand()
    import pandas as pd

    from bench import registry
    rows, total_images, total_nfe = [], 0, 0
    for c in cells:
        adapter = registry.resolve("model adapter", c.model.adapter)()
        n = _planned_n(c)
        nfe = adapter.nfe_per_image(c.settings()) if n is not None else None
        if n is not None:
            total_images += n
            total_nfe += n * (nfe or 0)
        rows.append({"model": c.model.id, "adapter": c.model.adapter, "dataset": c.dataset, "steps": c.steps,
                     "cfg": c.cfg, "solver": c.solver, "seed": c.seed, "n": n, "nfe/img": nfe})
    df = pd.DataFrame(rows)
    print(f"suite {suite.name!r} ({args.suite}): {len(cells)} cells, {len(suite.spec.datasets)} datasets, "
          f"{len(suite.spec.models)} models, metrics: {', '.join(suite.spec.metrics)}")
    with pd.option_context("display.max_rows", args.max_rows, "display.width", 160):
        print(df.to_string(index=False, max_rows=args.max_rows))
    print(f"total images: {total_images:,}   total declared NFE: {total_nfe:,}")
    return 0


def _planned_n(cell) -> int | None:
    """Samples a cell will generate, from the plan alone (None when it depends on the dataset's size)."""
    p = cell.plan
    if p.kind == "per_class":
        if cell.dataset_source.startswith("mini-"):
            from bench.mini.data import NUM_CLASSES
            return p.n * NUM_CLASSES
        return None
    if p.kind == "uniform" or p.n is not None:
        return p.n
    if cell.dataset_source.startswith("mini-"):
        return int(cell.dataset_options.get("size", 1000))
    return None


def cmd_run(args) -> int:
    from bench.runner import Runner
    suite = _load_suite(args.suite)
    runner = Runner(suite, db=args.db, overwrite=args.overwrite, progress=not args.quiet, device=args.device)
    s = runner.run()
    print(f"{suite.name}: {s.planned} cells planned, {s.ran} ran, {s.skipped} already stored, {s.failed} failed; "
          f"{s.images:,} images in {s.seconds:.1f} s -> {args.db}")
    for f in s.failures:
        print(f"  failed: {f}", file=sys.stderr)
    if s.interrupted:
        print("interrupted: cells written so far are kept; run the same command again to resume", file=sys.stderr)
    return s.exit_code


def cmd_ls(args) -> int:
    from bench.store import ResultStore
    with ResultStore(args.db, read_only=True) as st:
        df = st.suites()
    print(df.to_string(index=False) if not df.empty else "(no cells stored)")
    return 0


SHOW_COLUMNS = ["model", "dataset", "steps", "cfg", "solver", "n", "fid", "is", "kid", "clip_score", "pickscore",
                "mmhm", "nfe", "latency_s", "status"]


def _frame(args):
    from bench.report.source import snapshot
    from bench.store import load
    with snapshot(args.db) as db:         # readable even while a `bench run` holds the store
        df = load(db)
    suite = getattr(args, "suite", None)
    if suite:
        name = suite
        if Path(suite).is_file():
            name = _load_suite(suite).name
        df = df[df["suite"] == name]
    if getattr(args, "dataset", None):
        df = df[df["dataset"] == args.dataset]
    return df


def cmd_show(args) -> int:
    import pandas as pd
    df = _frame(args)
    if df.empty:
        print("(no matching cells)")
        return 0
    cols = [c for c in SHOW_COLUMNS if c in df.columns]
    with pd.option_context("display.max_rows", None, "display.width", 200, "display.float_format", "{:.4g}".format):
        print(df[cols].to_string(index=False))
    failed = df[df["status"] == "failed"]
    for _, r in failed.iterrows():
        print(f"failed: {r['model']} {r['dataset']} steps={r['steps']} cfg={r['cfg']}: {r['error']}", file=sys.stderr)
    return 0


def cmd_export(args) -> int:
    df = _frame(args)
    out = Path(args.out or f"results/export.{args.format}")
    out.parent.mkdir(parents=True, exist_ok=True)
    if args.format == "csv":
        df.to_csv(out, index=False)
    else:
        df.to_parquet(out, index=False)
    print(f"wrote {len(df)} rows to {out}")
    return 0


def cmd_report(args) -> int:
    from bench.report import snapshot, write_report
    # read-only; while a `bench run` holds the store's lock, a copy of it taken now
    with snapshot(args.db, notify=lambda msg: print(f"note: {msg}", file=sys.stderr)) as db:
        df = _frame(argparse.Namespace(**{**vars(args), "db": str(db)}))
        if df.empty:
            return _err(f"{args.db}: no cells for suite {args.suite!r}" if args.suite
                        else f"{args.db}: no cells stored")
        paths = write_report(df, args.out, db=db, shown_db=str(args.db))
    figures = [p for p in paths if p.suffix in (".png", ".svg")]
    for p in paths:
        if p not in figures:
            print(f"wrote {p}")
    print(f"wrote {len(figures)} plot files (PNG and SVG) beside them")
    return 0


def build_parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(prog="bench", description="stepbench: fair benchmarking of one-step and "
                                 "multi-step image generators across steps and guidance scales")
    sub = ap.add_subparsers(dest="cmd", required=True)

    p = sub.add_parser("run", help="run a suite (skips cells already stored)")
    p.add_argument("suite")
    p.add_argument("--db", default=DEFAULT_DB)
    p.add_argument("--overwrite", choices=["never", "missing", "always"], default="missing",
                   help="never: keep every stored cell; missing (default): re-run missing and failed cells; "
                        "always: re-run everything")
    p.add_argument("--device", default=None, help="override the suite's device (auto, cpu, cuda[:N])")
    p.add_argument("-q", "--quiet", action="store_true", help="no progress bars or per-cell lines")
    p.set_defaults(fn=cmd_run)

    p = sub.add_parser("validate", help="check a suite and print its plan")
    p.add_argument("suite")
    p.add_argument("--max-rows", type=int, default=60)
    p.set_defaults(fn=cmd_validate)

    p = sub.add_parser("ls", help="list stored suites")
    p.add_argument("--db", default=DEFAULT_DB)
    p.set_defaults(fn=cmd_ls)

    for name, fn, hlp in (("show", cmd_show, "table of stored cells with MMHM"),
                          ("export", cmd_export, "export the tidy table as CSV or Parquet"),
                          ("report", cmd_report, "write leaderboards and plots")):
        p = sub.add_parser(name, help=hlp)
        p.add_argument("--db", default=DEFAULT_DB)
        p.add_argument("--suite", default=None, help="suite name or suite file")
        p.add_argument("--dataset", default=None)
        if name == "export":
            p.add_argument("--format", choices=["csv", "parquet"], default="csv")
            p.add_argument("--out", default=None)
        if name == "report":
            p.add_argument("--out", default="reports")
        p.set_defaults(fn=fn)
    return ap


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    from bench.store import StoreError
    from bench.suite import SuiteError
    try:
        return args.fn(args)
    except (SuiteError, StoreError) as e:
        return _err(str(e))
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
