"""`bench`: run · validate · components · ls · show · report · export · data · cache · convert. Thin: parsing and
printing only; each command lives in its own module of this package and adds its own subparser.

Exit codes: 0 success, 1 some cells failed, 2 bad input (suite, store, arguments), 130 interrupted.
"""

from __future__ import annotations

import argparse
import sys

from bench.cli import components, data, results, run, tools
from bench.cli.common import DEFAULT_DB, err

COMMANDS = (run, components, results, data, tools)     # each has add(subparsers)


def build_parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(prog="bench", description="stepbench: fair benchmarking of one-step and "
                                 "multi-step image generators across steps and guidance scales")
    sub = ap.add_subparsers(dest="cmd", required=True)
    for module in COMMANDS:
        module.add(sub)
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
