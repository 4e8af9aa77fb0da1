"""`bench`: run · validate · score · merge · ls · show · report · export · data · cache · convert · compare ·
rescore (and `components`, an alias of `ls adapters|datasets|metrics`). Thin: parsing and printing only; each
command lives in its own module of this package and adds its own subparser. Every flag's help states its default
(`common.HelpFormatter`).

Exit codes: 0 success, 1 some cells failed, 2 bad input (suite, store, arguments), 130 interrupted.
"""

from __future__ import annotations

import argparse
import sys

from bench.cli import compare, components, data, merge, rescore, results, run, score, tools
from bench.cli.common import DEFAULT_DB, BenchParser, err, fill_common_help

COMMANDS = (run, score, merge, results, components, data, tools, compare, rescore)     # each has add(subparsers)


def build_parser() -> argparse.ArgumentParser:
    from bench import __version__
    ap = BenchParser(prog="bench", description="stepbench: fair benchmarking of one-step and multi-step image "
                     "generators across steps and guidance scales")
    ap.add_argument("--version", action="version", version=f"stepbench {__version__}",
                    help="print stepbench's version and exit")
    sub = ap.add_subparsers(dest="cmd", required=True, metavar="COMMAND")
    for module in COMMANDS:
        module.add(sub)
    fill_common_help(ap)
    return ap


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    from bench.registry import RegistryError
    from bench.store import StoreError
    from bench.suite import SuiteError
    try:
        return args.fn(args)
    except (SuiteError, StoreError, RegistryError) as e:
        return err(str(e))
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130


__all__ = ["main", "build_parser", "DEFAULT_DB"]
