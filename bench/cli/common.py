"""What every `bench` command shares: defaults, the error printer (one line per problem, exit code 2), suite
loading with --include, the tidy frame of a store filtered by suite and dataset."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

DEFAULT_DB = "results/bench.duckdb"
INCLUDE_HELP = ("import a module (dotted name or .py file) that registers adapters, metrics or datasets; repeatable; "
                "Ray workers import it too (installed packages register through entry points instead)")


def err(msg: str) -> int:
    for line in str(msg).splitlines() or [""]:
        print(f"error: {line}", file=sys.stderr)
    return 2


def load_suite(path: str, includes: list[str] | tuple[str, ...] = ()):
    from bench import registry
    from bench.suite import Suite
    for ref in includes:                 # user modules that register adapters, metrics or datasets
        registry.include(ref)
    return Suite.load(path)


def positive_int(v: str) -> int:
    if not v.isdigit() or int(v) < 1:
        raise argparse.ArgumentTypeError(f"expected a whole number >= 1, got {v!r}")
    return int(v)


def frame(args):
    from bench.report.source import snapshot
    from bench.store import load
    with snapshot(args.db) as db:         # readable even while a `bench run` holds the store
        df = load(db)
    suite = getattr(args, "suite", None)
    if suite:
        name = suite
        if Path(suite).is_file():
            from bench.suite import Suite
            name = Suite.name_of(suite)           # the name only: no component is imported (reports are torch-free)
        df = df[df["suite"] == name]
    if getattr(args, "dataset", None):
        df = df[df["dataset"] == args.dataset]
    return df

