"""What every `bench` command shares: defaults, the parser class and help formatter (every flag's help says its
default), the error printer (one line per problem, exit code 2), suite loading with --include, the tidy frame of a
store filtered by suite and dataset."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

DEFAULT_DB = "results/bench.duckdb"
INCLUDE_HELP = ("import a module (dotted name or .py file) that registers adapters, metrics or datasets; repeatable; "
                "Ray workers import it too (installed packages register through entry points instead)")
# Help for arguments that several command groups spell the same way (filled in where a module gave none).
COMMON_HELP = {"db": "the result store (a DuckDB file; created by the first run)", "suite": "a suite YAML file",
               "include": INCLUDE_HELP}


class HelpFormatter(argparse.ArgumentDefaultsHelpFormatter):
    """Every flag's help says its default, unless there is none worth saying (None, False, an empty list) or the
    help text already speaks of it."""

    def _get_help_string(self, action: argparse.Action) -> str:
        text = action.help or ""
        d = action.default
        if "%(default)" in text or "default" in text.lower() or d is argparse.SUPPRESS or d is None or d is False \
                or (isinstance(d, list) and not d):
            return text
        if not action.option_strings and action.nargs not in (argparse.OPTIONAL, argparse.ZERO_OR_MORE):
            return text
        return text + " (default: %(default)s)"


class BenchParser(argparse.ArgumentParser):
    """The parser class of `bench` and, passed down by argparse, of every sub-command: `HelpFormatter`."""

    def __init__(self, *args, **kwargs):
        kwargs.setdefault("formatter_class", HelpFormatter)
        super().__init__(*args, **kwargs)


def parsers(parser: argparse.ArgumentParser):
    """``(command path, parser)`` of a parser and of every sub-command below it, parents first."""
    todo = [((), parser)]
    while todo:
        path, p = todo.pop(0)
        yield path, p
        for a in p._actions:
            if isinstance(a, argparse._SubParsersAction):
                todo += [((*path, name), sp) for name, sp in a.choices.items()]


def fill_common_help(parser: argparse.ArgumentParser) -> None:
    """`COMMON_HELP` for every argument of every command that was added without help text."""
    for _, p in parsers(parser):
        for a in p._actions:
            if a.help is None and a.dest in COMMON_HELP:
                a.help = COMMON_HELP[a.dest]


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


def frame(args, mmhm_bounds=None):
    """The tidy frame of ``args.db`` filtered by ``--suite`` / ``--dataset``. ``mmhm_bounds`` (``{dataset or "*":
    bounds}``): saved MMHM bounds applied to the selected full cells (a dataset filtered out needs none);
    ValueError naming a selected dataset they do not cover."""
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
    if mmhm_bounds is not None:           # comparison sets are whole (suite, dataset, cap) groups: filters keep them
        from bench.composite import TIDY_BY, add_mmhm
        df = add_mmhm(df, by=TIDY_BY, dataset_bounds=mmhm_bounds)
    return df

