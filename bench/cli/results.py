"""Reading a store: `bench ls`, `bench show`, `bench export`, `bench report` (torch-free)."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from bench.cli.common import DEFAULT_DB, err, frame


def cmd_ls(args) -> int:
    """`bench ls KIND` lists components or suite files (`bench.cli.components`); `bench ls` the stored suites."""
    if args.kind:
        from bench.cli.components import cmd_list
        return cmd_list(args)
    from bench.store import ResultStore
    with ResultStore(args.db, read_only=True) as st:
        df = st.suites()
    print(df.to_string(index=False) if not df.empty else "(no cells stored)")
    return 0


# `bench show`'s columns; "*" stands for every ranked metric in the store (its stored display order, MMHM last)
SHOW_COLUMNS = ["model", "dataset", "steps", "cfg", "solver", "n", "*", "nfe", "latency_s", "status"]


def _bounds_frame(args):
    """(frame, saved bounds or None) for `bench show` / `bench report`: reads
    ``--mmhm-bounds`` and applies it, then writes ``--save-mmhm-bounds``; ValueError, one line naming the file."""
    from bench import composite
    applied = composite.read_bounds_file(args.mmhm_bounds) if args.mmhm_bounds else None
    try:
        df = frame(args, mmhm_bounds=applied)
    except ValueError as e:
        if applied is None:
            raise
        raise ValueError(f"{args.mmhm_bounds}: {e}") from None
    if args.save_mmhm_bounds:
        save = args.save_mmhm_bounds
        try:
            used = composite.bounds_used(df, applied)
        except ValueError as e:
            raise ValueError(f"--save-mmhm-bounds {save}: {e}") from None
        if not used:
            raise ValueError(f"--save-mmhm-bounds {save}: no full cell has all four MMHM inputs, no bounds to save")
        n = int((composite.eligible(df) & composite.is_full(df)).sum())
        source = f"reused from {args.mmhm_bounds}" if applied else f"computed from {n} ok cells of {args.shown_db}"
        try:
            composite.write_bounds_file(used, save, source)
        except OSError as e:
            raise ValueError(f"--save-mmhm-bounds {save}: cannot write ({e.strerror or e})") from None
        print(f"wrote MMHM bounds of {len(used)} dataset(s) ({source}) to {save}", file=sys.stderr)
    return df, applied


def cmd_show(args) -> int:
    import pandas as pd

    from bench.report.directions import from_store
    from bench.report.source import snapshot
    try:
        df, _ = _bounds_frame(argparse.Namespace(**{**vars(args), "shown_db": args.db}))
    except ValueError as e:
        return err(str(e))
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


EXPORT_FORMATS = {".csv": "csv", ".parquet": "parquet", ".pq": "parquet"}


def export_target(fmt: str | None, out: str | None, db: str) -> tuple[str, Path]:
    """(format, file) of `bench export`: the format follows --out's extension; --format and an extension that
    disagree are refused; without --out the file is export.<format> beside the store (``--db``)."""
    ext_fmt = EXPORT_FORMATS.get(Path(out).suffix.lower()) if out else None
    if fmt and ext_fmt and fmt != ext_fmt:
        raise ValueError(f"--format {fmt} contradicts --out {out} (a .{Path(out).suffix.lower().lstrip('.')} file "
                         f"is {ext_fmt}); drop one of them")
    if out and not fmt and not ext_fmt:
        raise ValueError(f"--out {out}: cannot tell the format from {Path(out).suffix or 'no extension'!r}; "
                         f"name a .csv or .parquet file, or pass --format")
    fmt = fmt or ext_fmt or "csv"
    return fmt, Path(out) if out else Path(db).parent / f"export.{fmt}"


def cmd_export(args) -> int:
    try:
        fmt, out = export_target(args.format, args.out, args.db)
    except ValueError as e:
        return err(str(e))
    df = frame(args)
    out.parent.mkdir(parents=True, exist_ok=True)
    if fmt == "csv":
        from bench.report.sanitize import write_csv
        write_csv(df, out)                       # no text cell runs as a formula in a spreadsheet
    else:
        df.to_parquet(out, index=False)
    print(f"wrote {len(df)} rows to {out} ({fmt})")
    return 0


def cmd_report(args) -> int:
    from bench.report import snapshot, write_report
    # read-only; while a `bench run` holds the store's lock, a copy of it taken now
    with snapshot(args.db, notify=lambda msg: print(f"note: {msg}", file=sys.stderr)) as db:
        try:
            df, applied = _bounds_frame(argparse.Namespace(**{**vars(args), "db": str(db), "shown_db": args.db}))
        except ValueError as e:
            return err(str(e))
        if df.empty:
            return err(f"{args.db}: no cells for suite {args.suite!r}" if args.suite
                        else f"{args.db}: no cells stored")
        # the page shows the bounds its MMHM used (bench.report.mmhm_view.note_html)
        extra = {"mmhm_bounds": applied, "mmhm_source": args.mmhm_bounds} if applied is not None else {}
        # dataset/model order and natural CFG: from --suite's file, else from the suite file each run recorded
        if args.suite and Path(args.suite).is_file():
            from bench.report.context import context_for
            extra["context"] = context_for(args.suite, df)
        paths = write_report(df, args.out, db=db, shown_db=str(args.db), **extra)
    figures = [p for p in paths if p.suffix in (".png", ".svg")]
    for p in paths:
        if p not in figures:
            print(f"wrote {p}")
    print(f"wrote {len(figures)} plot files (PNG and SVG) beside them")
    return 0



def add(sub) -> None:
    from bench.cli.components import KINDS, add_discovery_arguments
    p = sub.add_parser("ls", help="list stored suites; with KIND: registered adapters, datasets or metrics (name, "
                       "description, options with defaults, origin) or the suite files")
    p.add_argument("kind", nargs="?", choices=[*KINDS, "suites"], help="what to list instead of the stored suites")
    p.add_argument("--db", default=DEFAULT_DB)
    add_discovery_arguments(p)
    p.set_defaults(fn=cmd_ls)

    for name, fn, hlp in (("show", cmd_show, "table of stored cells with MMHM"),
                          ("export", cmd_export, "export the tidy table as CSV or Parquet"),
                          ("report", cmd_report, "write leaderboards and plots")):
        p = sub.add_parser(name, help=hlp)
        p.add_argument("--db", default=DEFAULT_DB)
        p.add_argument("--suite", default=None, help="only this suite (a suite name or a suite file)")
        p.add_argument("--dataset", default=None, help="only this dataset id")
        if name == "export":
            p.add_argument("--format", choices=["csv", "parquet"], default=None,
                           help="file format (default: from --out's extension, else csv)")
            p.add_argument("--out", default=None, help="output file (default: export.<format> beside --db)")
        if name == "report":
            p.add_argument("--out", default="reports", help="folder the report is written under (<out>/<suite>/)")
        if name in ("show", "report"):
            p.add_argument("--mmhm-bounds", default=None, metavar="FILE",
                           help="compute MMHM of full cells with these saved bounds (a --save-mmhm-bounds file, "
                                "or the paper's JSON) instead of bounds from this store's cells")
            p.add_argument("--save-mmhm-bounds", default=None, metavar="FILE",
                           help="write the MMHM bounds used, per dataset, to FILE (JSON, full precision)")
        p.set_defaults(fn=fn)

