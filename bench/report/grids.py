"""Sample grids: the same sample ids (same seed, so the same noise and labels) across models, steps and CFG.

Built from the store's ``samples`` table (PNG bytes per (key, sample_id)). One grid per dataset and seed: a
row per cell (real-vs-real first, then model, steps, CFG, solver), a column per sample id. Each row is one
PNG strip; tiny images (the 16x16 miniature world) are upscaled with nearest-neighbour so pixels stay pixels.
"""

from __future__ import annotations

import io
from dataclasses import dataclass, field

import pandas as pd
from PIL import Image

TILE = 64          # target side of a thumbnail
GAP = 2
BACKGROUND = (255, 255, 255)
MISSING = (220, 220, 220)


@dataclass
class Grid:
    dataset: str
    seed: object
    sample_ids: list[int]
    labels: list[str]                       # per sample id: its label, or a note when cells disagree
    rows: list[tuple[pd.Series, bytes]] = field(default_factory=list)   # (cell row, PNG strip)
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


def strip(pngs: list[bytes | None], tile: int = TILE, gap: int = GAP) -> bytes:
    """Thumbnails side by side as one PNG (a missing sample is a grey tile)."""
    canvas = Image.new("RGB", (len(pngs) * (tile + gap) - gap, tile), BACKGROUND)
    for i, p in enumerate(pngs):
        canvas.paste(_thumb(p, tile), (i * (tile + gap), 0))
    buf = io.BytesIO()
    canvas.save(buf, format="PNG")
    return buf.getvalue()


def _order(cells: pd.DataFrame) -> pd.DataFrame:
    real = (cells["family"] == "real") if "family" in cells.columns else pd.Series(False, index=cells.index)
    return cells.assign(_real=~real).sort_values(["_real", "model", "steps", "cfg", "solver"],
                                                 na_position="first", kind="stable").drop(columns="_real")


def make_grids(df: pd.DataFrame, samples: pd.DataFrame, max_samples: int = 8, tile: int = TILE) -> list[Grid]:
    """One Grid per (dataset, seed) over the ok cells of ``df`` that kept samples."""
    if samples is None or samples.empty:
        return []
    grids = []
    ok = df[df["status"] == "ok"]
    by_key = {k: g for k, g in samples.groupby("key")}
    for (dataset, seed), cells in ok.groupby(["dataset", "seed"], dropna=False, sort=True):
        cells = _order(cells[cells["key"].isin(by_key)])
        if cells.empty:
            continue
        kept = pd.concat([by_key[k] for k in cells["key"]])
        ids = sorted(kept["sample_id"].unique())[:max_samples]
        labels, disagree = [], []
        for i in ids:
            ls = kept.loc[kept["sample_id"] == i, "label"].dropna().unique()
            if len(ls) == 1:
                labels.append(f"label {int(ls[0])}")
            else:
                labels.append("labels differ")
                disagree.append(i)
        note = (f"sample ids {disagree} carry different labels across cells (different sample plans?)"
                if disagree else "")
        g = Grid(str(dataset), seed, [int(i) for i in ids], labels, tile=tile, note=note)
        for _, row in cells.iterrows():
            s = by_key[row["key"]].set_index("sample_id")["png"]
            g.rows.append((row, strip([s.get(i) for i in ids], tile)))
        grids.append(g)
    return grids
