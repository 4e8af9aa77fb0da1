"""Discovery: `bench ls adapters|datasets|metrics|suites` (and `bench components [KIND]`, its alias).

What is listed comes from the contracts, never from a hand-kept list: every registered name (built in, entry points,
--include) with a one-line description (a dataset's card title, else the class docstring's first sentence), its
options with their defaults (the class's ``Options`` model), and where it comes from; suite files with their
description and cell counts. A component whose module cannot be imported here (an optional dependency missing) is
listed with the reason, and the rest still are.
"""

from __future__ import annotations

import sys
import textwrap
from pathlib import Path
from typing import Any

from bench.cli.common import INCLUDE_HELP

KINDS = {"adapters": "model adapter", "metrics": "metric", "datasets": "dataset"}
WIDTH = 110
SUITES_DIR = Path(__file__).resolve().parents[2] / "suites"     # the project's suites/ (a checkout)


def first_sentence(doc: str | None, limit: int = WIDTH - 19) -> str:
    """A docstring's first sentence (its first paragraph, lines joined, cut at the first '. '), at most ``limit``
    characters."""
    para = " ".join((doc or "").strip().split("\n\n")[0].split())
    cut = para.find(". ")
    text = para[:cut + 1] if cut >= 0 else para
    return text if len(text) <= limit else text[:limit - 3].rstrip() + "..."


def description(cls: type, name: str) -> str:
    """A dataset's card title; else the class's own docstring (not an inherited one); else its module's."""
    card = getattr(cls, "card", None)
    c = card(name) if callable(card) else None
    if c is not None and c.title:
        return c.title
    return first_sentence(cls.__dict__.get("__doc__")) or first_sentence(sys.modules[cls.__module__].__doc__)


def options(cls: type) -> list[str]:
    """``name=default`` for every field of the class's ``Options`` model (``name (required)`` without one)."""
    from pydantic_core import PydanticUndefined
    out = []
    for k, f in cls.Options.model_fields.items():
        if f.is_required():
            out.append(f"{k} (required)")
        else:
            d = f.get_default(call_default_factory=True)
            out.append(f"{k}={'<unset>' if d is PydanticUndefined else repr(d)}")
    return out


def describe(kind: str, name: str) -> dict[str, Any]:
    """Everything `bench ls` says about one registered name: description, options, origin, or why it cannot be
    loaded here."""
    from bench import registry
    reg = registry.KINDS[KINDS[kind]]
    row: dict[str, Any] = {"name": name, "origin": reg.origin(name)}
    try:
        cls = reg.resolve(name)
    except Exception as e:             # an optional dependency missing: say so, list the rest
        row["error"] = f"cannot be loaded here: {type(e).__name__}: {e}"
        return row
    row["description"] = description(cls, name)
    row["options"] = options(cls)
    card = cls.card(name) if kind == "datasets" else None
    if card is not None:
        where = f"$STEPBENCH_DATA/{card.folder}" if card.folder else (card.get or "options.root")
        counts = ", ".join(f"{v:,} {k}" for k, v in (("images", card.images), ("classes", card.classes)) if v)
        row["card"] = where + (f"; {counts}" if counts else "")
    return row


def print_kind(kind: str) -> int:
    from bench import registry
    shown = registry.KINDS[KINDS[kind]].names()
    print(f"{kind} ({len(shown)}):")
    for name in shown:
        row = describe(kind, name)
        print(f"  {name:<16} {row.get('description', '')}")
        lines = [f"{row['origin']}; " + (row["error"] if "error" in row else
                                          "options: " + (", ".join(row["options"]) or "none"))]
        if row.get("card"):
            lines.append(f"data: {row['card']}")
        for line in lines:
            print(textwrap.fill(line, WIDTH, initial_indent=" " * 19, subsequent_indent=" " * 21))
    return 0


def suite_rows(folder: Path) -> list[dict[str, Any]]:
    """Each ``*.yaml`` of a folder: suite name, description, cells, models, datasets (or the first error line)."""
    from bench.suite import Suite, SuiteError
    rows = []
    for path in sorted(folder.glob("*.yaml")):
        try:
            s = Suite.load(path)
        except SuiteError as e:
            rows.append({"file": str(path), "error": str(e).splitlines()[0]})
            continue
        rows.append({"file": str(path), "suite": s.name, "description": s.spec.description, "cells": s.count(),
                     "models": len(s.spec.models), "datasets": len(s.spec.datasets)})
    return rows


def print_suites(folder: str | None) -> int:
    from bench.cli.common import err
    d = Path(folder) if folder else (Path("suites") if Path("suites").is_dir() else SUITES_DIR)
    if not d.is_dir():
        return err(f"no suites folder {str(d)!r} (pass --dir)")
    rows = suite_rows(d)
    print(f"suites in {d} ({len(rows)}):")
    for r in rows:
        if "error" in r:
            print(f"  {Path(r['file']).name:<24} cannot be read: {r['error']}")
            continue
        print(f"  {Path(r['file']).name:<24} suite {r['suite']!r}: {r['cells']} cells ({r['models']} models, "
              f"{r['datasets']} datasets)")
        if r["description"]:
            print(textwrap.fill(r["description"], WIDTH, initial_indent=" " * 27, subsequent_indent=" " * 27))
    return 0


def cmd_list(args) -> int:
    """`bench ls KIND` / `bench components [KIND]`: registered components, or suite files."""
    from bench import registry
    from bench.score import register_sources
    register_sources()                   # the reference sources `bench score` opens paths with
    for ref in getattr(args, "include", []) or []:
        registry.include(ref)
    kind = args.kind
    if kind == "suites":
        return print_suites(getattr(args, "dir", None))
    for k in ([kind] if kind else list(KINDS)):
        print_kind(k)
    return 0


def add_discovery_arguments(p) -> None:
    """The flags `bench ls` and `bench components` share."""
    p.add_argument("--include", action="append", default=[], metavar="MODULE_OR_PATH", help=INCLUDE_HELP)
    p.add_argument("--dir", default=None, help="with `suites`: the folder of suite files (default: ./suites, else "
                   "the project's suites/)")


def add(sub) -> None:
    p = sub.add_parser("components", help="alias of `bench ls adapters|datasets|metrics` (all three without KIND)")
    p.add_argument("kind", nargs="?", choices=[*KINDS, "suites"], help="what to list (default: adapters, datasets "
                   "and metrics)")
    p.add_argument("--options", action="store_true", help="accepted for compatibility: options are always listed")
    add_discovery_arguments(p)
    p.set_defaults(fn=cmd_list)
