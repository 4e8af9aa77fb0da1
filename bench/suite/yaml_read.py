"""Reading a suite's YAML safely: plain data only, duplicate keys refused, alias bombs and size caps stopped."""

from __future__ import annotations

import yaml

from bench.suite.errors import SuiteError
from bench.suite.schema import MAX_FILE_BYTES, MAX_NODES


class _Loader(yaml.CSafeLoader if hasattr(yaml, "CSafeLoader") else yaml.SafeLoader):
    """yaml's safe loader (plain data only: no python/* tags, no object construction) that also refuses duplicate
    keys in a mapping, which plain YAML loading silently resolves to the last value."""

    def construct_mapping(self, node, deep=False):
        if isinstance(node, yaml.MappingNode):
            seen = set()
            for key_node, _ in node.value:
                if key_node.tag == "tag:yaml.org,2002:merge":
                    continue
                key = self.construct_object(key_node, deep=deep)
                try:
                    dup = key in seen
                    seen.add(key)
                except TypeError:        # unhashable key: the base class reports it
                    continue
                if dup:
                    raise yaml.constructor.ConstructorError(None, None, f"duplicate key {key!r}",
                                                            key_node.start_mark)
        return super().construct_mapping(node, deep)


def _expanded_size(data, limit: int) -> int:
    """Values in ``data`` counting every alias use (without expanding anything); stops past ``limit``.
    Raises ValueError on a recursive structure (an alias inside its own anchor)."""
    sizes: dict[int, int] = {}
    on_path: set[int] = set()
    stack = [(data, False)]

    def children(x):
        return [*x.keys(), *x.values()] if isinstance(x, dict) else x

    while stack:
        obj, done = stack.pop()
        if not isinstance(obj, (dict, list)):
            continue
        oid = id(obj)
        if done:
            on_path.discard(oid)
            sizes[oid] = 1 + sum(sizes.get(id(c), 1) if isinstance(c, (dict, list)) else 1 for c in children(obj))
            if sizes[oid] > limit:
                return sizes[oid]
            continue
        if oid in sizes:
            continue
        if oid in on_path:
            raise ValueError("a recursive alias (an alias used inside its own anchor)")
        on_path.add(oid)
        stack.append((obj, True))
        stack.extend((c, False) for c in children(obj) if isinstance(c, (dict, list)) and id(c) not in sizes)
    return sizes.get(id(data), 1)


def read_yaml(text: str, path: str):
    """The suite's data, or a `SuiteError` for text that is not safe, well-formed, bounded YAML."""
    if len(text) > MAX_FILE_BYTES:
        raise SuiteError(f"{path}: suite text is {len(text):,} characters (limit {MAX_FILE_BYTES:,})")
    try:
        data = yaml.load(text, Loader=_Loader)    # safe: _Loader is yaml's SafeLoader (plain data only)
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        problem = getattr(e, "problem", None) or str(e).splitlines()[0]
        raise SuiteError(f"{path}: invalid YAML{where}: {' '.join(str(problem).split())}") from None
    except RecursionError:
        raise SuiteError(f"{path}: invalid YAML: nested too deeply") from None
    try:
        size = _expanded_size(data, MAX_NODES)
    except ValueError as e:
        raise SuiteError(f"{path}: invalid suite: {e}") from None
    if size > MAX_NODES:
        raise SuiteError(f"{path}: invalid suite: more than {MAX_NODES:,} values once aliases are expanded")
    if not isinstance(data, dict):
        raise SuiteError(f"{path}: <top level>: expected a mapping of suite keys, got {type(data).__name__}")
    bad = [k for k in data if not isinstance(k, str)]
    if bad:
        raise SuiteError(f"{path}: {bad[0]!r}: keys must be strings")
    return data
