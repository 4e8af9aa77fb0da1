"""Reading a store: `bench ls`, `bench show`, `bench export`, `bench report` (torch-free)."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from bench.cli.common import DEFAULT_DB, err, frame


def cmd_ls(args) -> int:
    from bench.store import ResultStore
    with ResultStore(args.db, read_only=True) as st:
        df = st.suites()
    print(df.to_string(index=False) if not df.empty else "(no cells stored)")
    return 0


# `bench show`'s columns; "*" stands for every ranked metric in the store (its stored display order, MMHM last)
SHOW_COLUMNS = ["model", "dataset", "steps", "cfg", "solver", "n", "*", "nfe", "latency_s", "status"]


def cmd_show(args) -> int:
    import pandas as pd

    from bench.report.directions import from_store
    from bench.report.source import snapshot
    df = frame(args)
    if df.empty:
        print("(no matching cells)")
        return 0
    with snapshot(args.db) as db:         # what each metric is: recorded in the store beside its values
        specs = from_store(db)
    metrics = specs.ranked(df)
    cols = [c for name in SHOW_COLUMNS for c in (metrics if name == "*" else [name]) if c in df.columns]
    formats = {c: (lambda v, s=specs[c]: "NaN" if pd.isna(v) else s.format(v)) for c in metrics
               if specs[c].fmt != ".4g"}
    with pd.option_context("display.max_rows", None, "display.width", 200, "display.float_format", "{:.4g}".format):
        print(df[cols].to_string(index=False, formatters=formats))
    failed = df[df["status"] == "failed"]
    for _, r in failed.iterrows():
        print(f"failed: {r['model']} {r['dataset']} steps={r['steps']} cfg={r['cfg']}: {r['error']}", file=sys.stderr)
    return 0


def cmd_export(args) -> int:
    df = frame(args)
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
        df = frame(argparse.Namespace(**{**vars(args), "db": str(db)}))
        if df.empty:
            return err(f"{args.db}: no cells for suite {args.suite!r}" if args.suite
                        else f"{args.db}: no cells stored")
        paths = write_report(df, args.out, db=db, shown_db=str(args.db))
    figures = [p for p in paths if p.suffix in (".png", ".svg")]
    for p in paths:
        if p not in figures:
            print(f"wrote {p}")
    print(f"wrote {len(figures)} plot files (PNG and SVG) beside them")
    return 0



def add(sub) -> None:
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

