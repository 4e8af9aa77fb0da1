"""The ImageNet-1k class index (datasets/imagenet-1k.json): ids, synsets, lemmas and prompt-name variants."""

from __future__ import annotations

import functools
import json
import re
from pathlib import Path

from bench.data.base import DatasetError

INDEX_FILE = Path(__file__).resolve().parents[2] / "datasets" / "imagenet-1k.json"
NAME_VARIANTS = ("underscored", "readable")


@functools.lru_cache(maxsize=1)
def imagenet_classes() -> tuple[dict, ...]:
    try:
        data = json.loads(INDEX_FILE.read_text())
    except (OSError, ValueError) as e:
        raise DatasetError(f"{INDEX_FILE}: cannot read the ImageNet-1k class index ({e}); regenerate it with "
                           "`python -m bench.data.make_class_index`") from e
    classes = tuple(data["classes"])
    if [c["index"] for c in classes] != list(range(1000)):
        raise DatasetError(f"{INDEX_FILE}: expected classes with index 0..999 in order")
    return classes


def class_names(variant: str = "underscored") -> list[str]:
    """The 1000 names in index order, in the chosen variant (``underscored``: great_white_shark, the default and
    the paper's form; ``readable``: great white shark)."""
    if variant not in NAME_VARIANTS:
        raise DatasetError(f"options.class_names must be one of {', '.join(NAME_VARIANTS)}, got {variant!r}")
    return [c[variant] for c in imagenet_classes()]


@functools.lru_cache(maxsize=1)
def synset_to_index() -> dict[str, int]:
    return {c["synset"]: c["index"] for c in imagenet_classes()}


def normalize(name: str) -> str:
    """reLAIONet's folder-name rule, applied to both sides: lower-case; spaces, '-' and "'" -> '_'."""
    return re.sub(r"[\s\-']", "_", name.strip().lower())


@functools.lru_cache(maxsize=1)
def name_lookup() -> tuple[dict[str, int], dict[str, int], set[str]]:
    """(first-lemma name -> id, any-lemma name -> id, ambiguous names), all keys normalised. A name shared by
    several classes (e.g. 'crane', 'maillot') is ambiguous and maps to no id unless a class_map gives it."""
    first: dict[str, set[int]] = {}
    anyl: dict[str, set[int]] = {}
    for c in imagenet_classes():
        first.setdefault(normalize(c["lemmas"][0]), set()).add(c["index"])
        for lemma in c["lemmas"]:
            anyl.setdefault(normalize(lemma), set()).add(c["index"])
    ambiguous = {n for n, ids in first.items() if len(ids) > 1}
    return ({n: next(iter(i)) for n, i in first.items() if len(i) == 1},
            {n: next(iter(i)) for n, i in anyl.items() if len(i) == 1}, ambiguous)


def id_for_name(name: str) -> int | None:
    """The class id of a class-name folder: unique first-lemma match, else unique any-lemma match, else None."""
    first, anyl, ambiguous = name_lookup()
    key = normalize(name)
    if key in ambiguous:
        return None
    return first.get(key, anyl.get(key))
