"""The miniature world's caption vocabulary: what its CLIP was trained to read (mini_training/clip.py trains on
these templates and colour words), and `colour_names`, the foreground / background colour words of a render.

Invariant: the mini CLIP's training captions and the mini caption set (`bench.data.mini_captions`) use these same
templates and words, so every caption the caption set writes is one the CLIP saw in training.
"""

from __future__ import annotations

import numpy as np

HUES = ("red", "orange", "yellow", "green", "cyan", "blue", "purple", "pink")
_HUE_EDGES = (0.04, 0.11, 0.19, 0.45, 0.54, 0.72, 0.83, 0.93)     # upper edges; >= 0.93 wraps to red
FG_COLOURS = HUES + ("white", "grey")
BG_COLOURS = ("black", "grey", "white") + tuple(f"dark {h}" for h in HUES) + HUES
# (template, uses_class, uses_fg, uses_bg), sampling weight: the metrics' own prompt is the most common
CAPTION_TEMPLATES = (
    ("a photo of a {c}", 1, 0, 0, 0.30),
    ("a picture of a {c}", 1, 0, 0, 0.05),
    ("a {f} {c}", 1, 1, 0, 0.20),
    ("a {c} on a {b} background", 1, 0, 1, 0.15),
    ("a photo of a {f} {c} on a {b} background", 1, 1, 1, 0.15),
    ("a {f} shape", 0, 1, 0, 0.05),
    ("a {f} shape on a {b} background", 0, 1, 1, 0.05),
    ("something on a {b} background", 0, 0, 1, 0.05),
)


def _hsv_np(rgb01: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    mx, mn = rgb01.max(-1), rgb01.min(-1)
    d = mx - mn
    s = np.where(mx > 0, d / np.maximum(mx, 1e-6), 0.0)
    r, g, b = rgb01[..., 0], rgb01[..., 1], rgb01[..., 2]
    dd = np.maximum(d, 1e-6)
    h = np.where(mx == r, ((g - b) / dd) % 6, np.where(mx == g, (b - r) / dd + 2, (r - g) / dd + 4)) / 6.0
    return np.where(d > 0, h, 0.0), s, mx


def _hue_name(h: np.ndarray) -> np.ndarray:
    idx = np.searchsorted(np.asarray(_HUE_EDGES), h, side="right")
    return np.asarray(HUES + ("red",))[idx]


def colour_names(imgs: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(foreground, background) colour words per uint8 NHWC render: background = median of the border pixels,
    foreground = mean of the pixels farthest from it."""
    x = imgs.astype(np.float32) / 255.0
    n = x.shape[0]
    border = np.concatenate([x[:, 0], x[:, -1], x[:, 1:-1, 0], x[:, 1:-1, -1]], axis=1)   # (n, P, 3)
    bg = np.median(border, axis=1)
    dist = np.linalg.norm(x - bg[:, None, None], axis=-1).reshape(n, -1)
    thr = 0.6 * dist.max(1, keepdims=True)
    w = (dist >= thr).astype(np.float32)
    fg = (x.reshape(n, -1, 3) * w[..., None]).sum(1) / np.maximum(w.sum(1, keepdims=True), 1)
    fh, fs, fv = _hsv_np(fg)
    fg_name = np.where(fs < 0.25, np.where(fv > 0.7, "white", "grey"), _hue_name(fh))
    bh, bs, bv = _hsv_np(bg)
    hue = _hue_name(bh)
    bg_name = np.where(bv < 0.12, "black",
                       np.where(bs < 0.25, np.where(bv > 0.7, "white", "grey"),
                                np.where(bv < 0.4, np.char.add("dark ", hue), hue)))
    return fg_name, bg_name
