"""Paths in suites: which option values are paths, and the rule that a relative one may not climb out."""

from __future__ import annotations

import posixpath
import re

# Paths in suites. Option values under path-like keys (root, path, dir, folder, file, weights, or ending in _root,
# _path, ...) and any option value with a '/' or '\\' in it are paths. Absolute paths ('/...', '~/...') are explicit
# and allowed anywhere; '$VAR/rest' is the variable's folder plus a relative rest. A relative path (and the rest of
# '$VAR/rest') must not climb out of the folder it is resolved against: after normalisation it may not start with
# '..' ('a/../b' is fine, '../b' and 'a/../../b' are refused). Hub ids ('org/name', 'hf://...') never climb.
_PATH_KEY = re.compile(r"(^|_)(root|path|dir|folder|file|weights|pretrained)$")
_ENV_PREFIX = re.compile(r"^\$(\{[A-Za-z_][A-Za-z0-9_]*\}|[A-Za-z_][A-Za-z0-9_]*)")


def climbs_out(value: str) -> bool:
    """True for a relative path (or the part after a leading $VAR) that leaves its base folder with '..'."""
    v = value.strip().replace("\\", "/")
    if v.startswith("hf://"):
        v = v[5:]
    m = _ENV_PREFIX.match(v)
    if m:
        v = v[m.end():].lstrip("/")
        if not v:
            return False
    elif v.startswith(("/", "~")) or re.match(r"^[A-Za-z]:/", v):
        return False
    norm = posixpath.normpath(v)
    return norm == ".." or norm.startswith("../")


def _paths(value, key: str, where: str):
    """(location, string) for every path-like string in an option tree."""
    if isinstance(value, dict):
        for k, v in value.items():
            yield from _paths(v, str(k), f"{where}.{k}")
    elif isinstance(value, list):
        for i, v in enumerate(value):
            yield from _paths(v, key, f"{where}[{i}]")
    elif isinstance(value, str) and (_PATH_KEY.search(key) or "/" in value or "\\" in value or value.strip() == ".."):
        yield where, value


def check_paths(trees: list[tuple[str, object, str]], problems) -> None:
    """Every path-like string in ``(location, option tree, key)`` trees that climbs out is a problem."""
    for where, tree, key in trees:
        for loc, value in _paths(tree, key, where):
            if climbs_out(value):
                problems.add(loc, f"relative path {value!r} climbs out of its base folder with '..'; "
                                  f"write an absolute path to use a location outside it")
