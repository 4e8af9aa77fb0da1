"""Typed options: the one base every adapter's, metric's and dataset's ``Options`` model derives from, and the
one formatter that turns a pydantic error into lines that name the key and suggest the closest known one.

Invariant: an ``Options`` model forbids unknown keys and coerces nothing ('4' is not 4, true is not 1; an int
is accepted where a float is expected), and ``validated(Options, d)`` is idempotent: validating its own output
gives the same dict, so a cell key made from validated options does not depend on which defaults a user spelt
out. Torch-free (imported by `bench validate`).
"""

from __future__ import annotations

import difflib
from typing import Any

from pydantic import BaseModel, ConfigDict, ValidationError


class StrictOptions(BaseModel):
    """Base of every ``Options`` model: unknown keys are errors, types are strict."""
    model_config = ConfigDict(extra="forbid", strict=True, frozen=True, protected_namespaces=())


class NoOptions(StrictOptions):
    """For a component that takes no options: any key is unknown."""


class OptionsError(ValueError):
    """Invalid options: ``problems`` is a list of (dotted key, message) pairs, one per error."""

    def __init__(self, problems: list[tuple[str, str]]):
        self.problems = problems
        super().__init__("; ".join(f"{k}: {m}" if k else m for k, m in problems))


def suggest(name: str, known) -> str | None:
    """The closest known name to a misspelt one (edit distance, then shared prefix), or None."""
    known = [str(k) for k in known]
    close = difflib.get_close_matches(str(name), known, n=1)
    if close:
        return close[0]
    pref = [k for k in known if k.startswith(str(name)) or str(name).startswith(k)]
    return pref[0] if pref else None


def _short(value, limit: int = 80) -> str:
    r = repr(value)
    return r if len(r) <= limit else r[:limit - 3] + "..."


def _fields_at(model: type[BaseModel], loc: tuple) -> list[str]:
    """Field names of the (nested) model at ``loc[:-1]`` for did-you-mean; [] when it cannot be told."""
    for part in loc[:-1]:
        if isinstance(part, int):
            continue
        f = model.model_fields.get(str(part))
        if f is None:
            return []
        ann = f.annotation
        sub = next((a for a in getattr(ann, "__args__", (ann,)) if isinstance(a, type) and issubclass(a, BaseModel)),
                   None)
        if sub is None:
            return []
        model = sub
    return list(model.model_fields)


def _dotted(loc: tuple) -> str:
    out = ""
    for part in loc:
        if isinstance(part, int):
            out += f"[{part}]"
        elif any(c in str(part) for c in "[]()") or str(part) in ("str", "int", "float", "bool", "list", "dict",
                                                                   "none", "tuple"):
            continue                      # pydantic's union-member labels, not keys
        else:
            out += f".{part}" if out else str(part)
    return out


def problems(model: type[BaseModel], err: ValidationError) -> list[tuple[str, str]]:
    """(dotted key, message) for every error of a validation, with did-you-mean for unknown keys."""
    out: list[tuple[str, str]] = []
    seen = set()
    for e in err.errors():
        loc = tuple(e["loc"])
        key = _dotted(loc)
        if e["type"] == "extra_forbidden":
            known = _fields_at(model, loc)
            close = suggest(str(loc[-1]), known)
            msg = "unknown option" + (f" (did you mean {close!r}?)" if close else
                                      (f" (known: {', '.join(known)})" if known else " (this takes no options)"))
        elif e["type"] == "missing":
            msg = "required option is missing"
        else:
            msg = e["msg"].removeprefix("Value error, ")
            if e["type"].endswith(("_type", "_parsing")):
                msg += f" (got {_short(e.get('input'))})"
        if (key, msg) not in seen:
            seen.add((key, msg))
            out.append((key, msg))
    merged: dict[str, list[str]] = {}           # a union reports one error per member: one line per key
    for key, msg in out:
        merged.setdefault(key, []).append(msg)
    return [(key, msgs[0] if len(msgs) == 1 else "expected one of: " + "; or ".join(msgs))
            for key, msgs in merged.items()]


def keyed_when_set(dumped: dict[str, Any], defaults: dict[str, Any]) -> dict[str, Any]:
    """``dumped`` without the options whose value equals their entry in ``defaults``. An option added after cells
    were stored is dumped through this (a ``model_serializer(mode="wrap")``), so it stays out of the validated dict,
    and out of every cell key, until a suite sets it; validating the result fills the default back in, so
    ``validated`` stays idempotent."""
    return {k: v for k, v in dumped.items() if k not in defaults or v != defaults[k]}


def validated(model: type[BaseModel], options: dict[str, Any] | None) -> dict[str, Any]:
    """``options`` checked against ``model`` with defaults filled in, as plain JSON-like data (the form stored in
    cell configs and keys). Raises `OptionsError` listing every problem."""
    try:
        obj = model.model_validate(dict(options or {}))
    except ValidationError as e:
        raise OptionsError(problems(model, e)) from None
    return obj.model_dump(mode="python")


def parse(model: type[BaseModel], options: dict[str, Any] | None) -> BaseModel:
    """The typed options object (raises `OptionsError`)."""
    try:
        return model.model_validate(dict(options or {}))
    except ValidationError as e:
        raise OptionsError(problems(model, e)) from None
