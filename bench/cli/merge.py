"""`bench merge OUT IN...`: result stores (e.g. the parts of `bench run --part i/N`) into one (`bench.merge`).

Prints one line per input and one per conflict; exit code 0, 1 when a conflict was left unwritten (no --prefer),
2 for a store that cannot be read (one line, nothing written)."""

from __future__ import annotations

import sys


def cmd_merge(args) -> int:
    from bench.merge import merge
    report = merge(args.out, args.inputs, prefer=args.prefer)
    for r in report.inputs:
        print(r.line())
    for c in report.conflicts:
        print(c.line(), file=sys.stderr if not c.resolved else sys.stdout)
    if report.unresolved:
        print(f"{report.unresolved} conflicting cells not written; give --prefer newest|first to choose",
              file=sys.stderr)
        return 1
    return 0


def add(sub) -> None:
    from bench.merge import PREFER
    p = sub.add_parser("merge", help="merge result stores (e.g. the parts of `bench run --part i/N`) into OUT",
                       description="Copy every cell of each IN store, with all its rows, into OUT (created when "
                       "missing), one transaction per input. A key stored twice with the same result is kept once; "
                       "with different results it is a conflict, reported and not written unless --prefer. Exit "
                       "code 1 when a conflict was left unwritten, 2 for a store that cannot be read (nothing is "
                       "written then).")
    p.add_argument("out", metavar="OUT", help="the merged store (e.g. results/bench.duckdb)")
    p.add_argument("inputs", metavar="IN", nargs="+", help="stores to merge in, in this order")
    p.add_argument("--prefer", choices=PREFER, default=None,
                   help="resolve conflicts: newest = the copy finished last, first = OUT's own copy, else the "
                        "first input's")
    p.set_defaults(fn=cmd_merge)
