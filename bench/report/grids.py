"""Sample grids: the same sample ids (same seed, so the same noise and labels) across models, steps and CFG.

Built from the store's ``samples`` table (PNG bytes per (key, sample_id)). One grid per dataset and seed: a
row per cell (real-vs-real first, then model, steps, CFG, solver), a column per sample id, headed by the
sample's class name (`bench.report.classnames`; ``class N`` when the dataset's names cannot be read). Each
sample is its own PNG tile, so a page can show the columns of one class only; tiny images (the 16x16
miniature world) are upscaled with nearest-neighbour so pixels stay pixels, a missing sample is a grey tile.
"""

from __future__ import annotations

import io
from dataclasses import dataclass, field

import pandas as pd
from PIL import Image

from bench.composite import REAL
from bench.report.classnames import name_of

TILE = 64          # target side of a thumbnail
BACKGROUND = (255, 255, 255)
MISSING = (220, 220, 220)


@dataclass
class Grid:
    dataset: str
    seed: object
    sample_ids: list[int]
    labels: list[str]                       # per sample id: its class name, or a note when cells disagree
    classes: list[int | None] = field(default_factory=list)   # per sample id: its class id (None: cells disagree)
    rows: list[tuple[pd.Series, list[bytes]]] = field(default_factory=list)   # (cell row, a PNG tile per id)
    tile: int = TILE
    note: str = ""


def _thumb(png: bytes | None, tile: int) -> Image.Image:
    if png is None:
        return Image.new("RGB", (tile, tile), MISSING)
    im = Image.open(io.BytesIO(png)).convert("RGB")
    side = max(im.size)
    if side <= tile:                        # integer nearest-neighbour upscale: no smoothing of tiny images
        k = max(1, tile // side)
        im = im.resize((im.width * k, im.height * k), Image.NEAREST)
    else:
        im.thumbnail((tile, tile), Image.LANCZOS)
    out = Image.new("RGB", (tile, tile), BACKGROUND)
    out.paste(im, ((tile - im.width) // 2, (tile - im.height) // 2))
    return out


def tiles(pngs: list[bytes | None], tile: int = TILE) -> list[bytes]:
    """One ``tile`` x ``tile`` PNG thumbnail per sample (a missing sample is a grey tile)."""
    out = []
    for p in pngs:
        buf = io.BytesIO()
        _thumb(p, tile).save(buf, format="PNG")
        out.append(buf.getvalue())
    return out


def _order(cells: pd.DataFrame) -> pd.DataFrame:
    real = (cells["family"] == REAL) if "family" in cells.columns else pd.Series(False, index=cells.index)
    return cells.assign(_real=~real).sort_values(["_real", "model", "steps", "cfg", "solver"],
                                                 na_position="first", kind="stable").drop(columns="_real")


def make_grids(df: pd.DataFrame, samples: pd.DataFrame, max_samples: int = 8, tile: int = TILE,
               class_names: dict[str, tuple[str, ...]] | None = None,
               dataset_order: list[str] | None = None,
               prompts: dict[str, dict[int, str]] | None = None) -> list[Grid]:
    """One Grid per (dataset, seed) over the ok cells of ``df`` that kept samples, datasets in
    ``dataset_order`` (others after, by name); ``class_names``: dataset id -> names (index = class id);
    ``prompts``: dataset id -> {sample id: caption} for caption sets, whose columns are headed by the caption (the
    same prompt across every model: sample i is made from caption i)."""
    if samples is None or samples.empty:
        return []
    grids = []
    ok = df[df["status"] == "ok"]
    by_key = {k: g for k, g in samples.groupby("key")}
    rank = {d: i for i, d in enumerate(dataset_order or [])}
    groups = sorted(ok.groupby(["dataset", "seed"], dropna=False, sort=True), key=lambda kv: rank.get(kv[0][0],
                                                                                                      len(rank)))
    for (dataset, seed), cells in groups:
        names = (class_names or {}).get(str(dataset))
        texts = (prompts or {}).get(str(dataset)) or {}
        cells = _order(cells[cells["key"].isin(by_key)])
        if cells.empty:
            continue
        kept = pd.concat([by_key[k] for k in cells["key"]])
        ids = sorted(kept["sample_id"].unique())[:max_samples]
        labels, classes, disagree = [], [], []
        for i in ids:
            ls = kept.loc[kept["sample_id"] == i, "label"].dropna().unique()
            if int(i) in texts:
                labels.append(texts[int(i)])
                classes.append(None)
            elif len(ls) == 1:
                labels.append(name_of(names, ls[0]))
                classes.append(int(ls[0]))
            else:
                labels.append("labels differ")
                classes.append(None)
                disagree.append(i)
        note = (f"sample ids {disagree} carry different labels across cells (different sample plans?)"
                if disagree else "")
        g = Grid(str(dataset), seed, [int(i) for i in ids], labels, classes, tile=tile, note=note)
        for _, row in cells.iterrows():
            s = by_key[row["key"]].set_index("sample_id")["png"]
            g.rows.append((row, tiles([s.get(i) for i in ids], tile)))
        grids.append(g)
    return grids
