"""Class names for the report's sample grids, read torch-free from what a cell's stored config names.

The store keeps a sample's class id (``samples.label``), not its name; a cell's config keeps its dataset's source
and options. The names are those the dataset itself uses, found without opening the dataset (which would import
torch): the miniature world's class tuple (`bench.mini.data.CLASSES`, a NumPy/PIL module) for ``mini-*`` sources,
and the ImageNet-1k class index (``datasets/imagenet-1k.json``, the file `bench.data.classes` reads) for
``imagenet-val``, ``imagenet-v2`` and ``relaionet``, which all label by ImageNet-1k id. Any other source (a
folder of images, a hub dataset, a plugin) gets no names and the grid says ``class N``. Never raises: an
unreadable index means no names.
"""

from __future__ import annotations

import functools
import json
from pathlib import Path

import pandas as pd

IMAGENET_SOURCES = ("imagenet-val", "imagenet-v2", "relaionet")
INDEX_FILE = Path(__file__).resolve().parents[2] / "datasets" / "imagenet-1k.json"   # as bench.data.classes


@functools.lru_cache(maxsize=1)
def _imagenet() -> tuple[str, ...] | None:
    try:
        classes = json.loads(INDEX_FILE.read_text(encoding="utf-8"))["classes"]
        return tuple(str(c["readable"]) for c in classes)
    except (OSError, ValueError, KeyError, TypeError):
        return None


def names_for_source(source: str | None) -> tuple[str, ...] | None:
    """The class names (index = class id) of a dataset source, or None when they cannot be read torch-free."""
    if not isinstance(source, str):
        return None
    if source.startswith("mini-"):
        from bench.mini.data import CLASSES
        return tuple(CLASSES)
    if source in IMAGENET_SOURCES:
        return _imagenet()
    return None


def class_names(prov: pd.DataFrame | None) -> dict[str, tuple[str, ...]]:
    """dataset id -> class names, from the cells' stored configs (`bench.report.source.read_extras`)."""
    out: dict[str, tuple[str, ...]] = {}
    if prov is None or prov.empty or "config" not in prov.columns:
        return out
    for cfg in prov["config"]:
        if not isinstance(cfg, dict) or not isinstance(cfg.get("dataset"), str) or cfg["dataset"] in out:
            continue
        names = names_for_source(cfg.get("dataset_source"))
        if names:
            out[cfg["dataset"]] = names
    return out


def name_of(names: tuple[str, ...] | None, label) -> str:
    """A class id as shown: its name when known (and in range), else 'class N'."""
    i = int(label)
    return names[i] if names is not None and 0 <= i < len(names) else f"class {i}"


def kept_prompts(prov: pd.DataFrame | None) -> dict[str, dict[int, str]]:
    """dataset id -> {sample id: its caption} for caption sets, from the cells' stored provenance
    (``kept_prompts``, written for the kept samples of a caption-conditioned cell); empty for class sets."""
    out: dict[str, dict[int, str]] = {}
    if prov is None or prov.empty or "provenance" not in prov.columns or "config" not in prov.columns:
        return out
    for cfg, pv in zip(prov["config"], prov["provenance"]):
        if not isinstance(cfg, dict) or not isinstance(pv, dict) or not isinstance(pv.get("kept_prompts"), dict):
            continue
        dest = out.setdefault(str(cfg.get("dataset")), {})
        for i, text in pv["kept_prompts"].items():
            if str(i).isdigit() and isinstance(text, str):
                dest.setdefault(int(i), text)
    return out
