"""Procedural, class-conditional shape images: the miniature world's data.

Every image is a pure function of (stream, index): ``render(stream, i)`` always returns the same
uint8 HxWx3 array, on any machine, so no data files exist and nothing is downloaded.

Streams mirror the paper's evaluation sets:

- ``train``      the training stream (same distribution as ``val``, disjoint seeds);
- ``val``        in-distribution evaluation set (like ImageNet val);
- ``v2``         same classes, a mild shift of the parameter distribution (like ImageNetV2);
- ``ood``        same classes, a different rendering style (outlines on textured backgrounds, like
                 reLAIONet's web images);
- ``world``      what the metric networks learn from: a mixture of all three styles (the way Inception and
                 CLIP were trained on far broader data than the generators they judge), disjoint seeds;
- ``<name>-holdout`` a disjoint draw from the same distribution as ``<name>``, for real-vs-real rows.
"""

from __future__ import annotations

import hashlib
import math

import numpy as np
from PIL import Image, ImageDraw, ImageFilter

CLASSES = (
    "circle", "square", "triangle", "star", "cross",
    "ring", "diamond", "hexagon", "arrow", "heart",
)
NUM_CLASSES = len(CLASSES)
RES = 16                 # evaluation resolution of the miniature world
_SS = 4                  # supersampling factor for anti-aliased drawing
PROMPT_TEMPLATE = "a photo of a {class_name}"

STYLES = ("train", "val", "v2", "ood", "world")
WORLD_MIX = (("train", 0.5), ("v2", 0.25), ("ood", 0.25))
DATA_VERSION = "mini-data-1"   # bump when rendering changes: it is part of every fingerprint


def _stream_seed(stream: str) -> int:
    return int.from_bytes(hashlib.sha256(f"{DATA_VERSION}/{stream}".encode()).digest()[:8], "little")


def style_of(stream: str) -> str:
    base = stream[: -len("-holdout")] if stream.endswith("-holdout") else stream
    if base not in STYLES:
        raise ValueError(f"unknown mini stream {stream!r}; expected one of {STYLES} (optionally '-holdout')")
    return base


def label_of(stream: str, index: int) -> int:
    """Class label of image ``index`` of ``stream`` (uniform over classes, deterministic)."""
    rng = np.random.default_rng([_stream_seed(stream), index, 0])
    return int(rng.integers(NUM_CLASSES))


def _unit_shape(name: str) -> list[tuple[float, float]] | None:
    """Polygon vertices in [-1, 1]^2 for polygonal classes; None for those drawn otherwise."""
    if name == "square":
        return [(-1, -1), (1, -1), (1, 1), (-1, 1)]
    if name == "triangle":
        return [(0, -1), (0.95, 0.8), (-0.95, 0.8)]
    if name == "diamond":
        return [(0, -1), (0.65, 0), (0, 1), (-0.65, 0)]
    if name == "hexagon":
        return [(math.cos(a), math.sin(a)) for a in np.linspace(0, 2 * math.pi, 7)[:-1]]
    if name == "star":
        pts = []
        for k in range(10):
            r = 1.0 if k % 2 == 0 else 0.42
            a = -math.pi / 2 + k * math.pi / 5
            pts.append((r * math.cos(a), r * math.sin(a)))
        return pts
    if name == "cross":
        w = 0.33
        return [(-w, -1), (w, -1), (w, -w), (1, -w), (1, w), (w, w), (w, 1), (-w, 1), (-w, w),
                (-1, w), (-1, -w), (-w, -w)]
    if name == "arrow":
        return [(-1, -0.3), (0.15, -0.3), (0.15, -0.8), (1, 0), (0.15, 0.8), (0.15, 0.3), (-1, 0.3)]
    if name == "heart":
        pts = []
        for t in np.linspace(0, 2 * math.pi, 40, endpoint=False):
            x = 16 * math.sin(t) ** 3
            y = 13 * math.cos(t) - 5 * math.cos(2 * t) - 2 * math.cos(3 * t) - math.cos(4 * t)
            pts.append((x / 17.0, -y / 17.0 + 0.1))
        return pts
    return None


def _params(style: str, rng: np.random.Generator) -> dict:
    """Rendering parameters per style: the distribution shift between streams lives here."""
    if style in ("train", "val"):
        size = rng.uniform(0.55, 0.9)
        rot = rng.uniform(-math.pi, math.pi)
        fg_val = rng.uniform(0.55, 1.0)
        bg_val = rng.uniform(0.0, 0.35)
        noise = 0.0
    elif style == "v2":      # mild shift: smaller shapes, lower contrast
        size = rng.uniform(0.45, 0.8)
        rot = rng.uniform(-math.pi, math.pi)
        fg_val = rng.uniform(0.45, 0.9)
        bg_val = rng.uniform(0.05, 0.45)
        noise = 0.0
    else:                    # ood: outlines, gradient background, sensor noise
        size = rng.uniform(0.6, 0.95)
        rot = rng.uniform(-math.pi, math.pi)
        fg_val = rng.uniform(0.6, 1.0)
        bg_val = rng.uniform(0.2, 0.6)
        noise = rng.uniform(0.02, 0.06)
    cx, cy = rng.uniform(-0.18, 0.18, size=2)
    fg_hue, bg_hue = rng.uniform(0, 1, size=2)
    return dict(size=size, rot=rot, cx=cx, cy=cy, fg=_hsv(fg_hue, rng.uniform(0.5, 1.0), fg_val),
                bg=_hsv(bg_hue, rng.uniform(0.0, 0.6), bg_val), noise=noise,
                bg2=_hsv((bg_hue + 0.3) % 1.0, rng.uniform(0.2, 0.7), bg_val))


def _hsv(h: float, s: float, v: float) -> tuple[int, int, int]:
    import colorsys
    r, g, b = colorsys.hsv_to_rgb(h, s, v)
    return int(r * 255), int(g * 255), int(b * 255)


def render_label(stream: str, index: int, label: int) -> np.ndarray:
    """Render image ``index`` of ``stream`` with a given class label (uint8 RES x RES x 3)."""
    style = style_of(stream)
    rng = np.random.default_rng([_stream_seed(stream), index, 1])
    if style == "world":
        names, probs = zip(*WORLD_MIX)
        style = names[int(rng.choice(len(names), p=probs))]
    p = _params(style, rng)
    big = RES * _SS
    if style == "ood":       # vertical two-colour gradient background
        t = np.linspace(0, 1, big)[:, None, None]
        bg = (np.array(p["bg"]) * (1 - t) + np.array(p["bg2"]) * t).astype(np.uint8)
        img = Image.fromarray(np.broadcast_to(bg, (big, big, 3)).copy())
    else:
        img = Image.new("RGB", (big, big), p["bg"])
    draw = ImageDraw.Draw(img)
    name = CLASSES[label]
    half = big / 2
    scale = p["size"] * half * 0.95
    ox, oy = half + p["cx"] * half, half + p["cy"] * half
    outline = style == "ood"
    stroke = max(2, int(big * 0.09))
    if name in ("circle", "ring"):
        r = scale
        box = [ox - r, oy - r, ox + r, oy + r]
        if name == "circle":
            if outline:
                draw.ellipse(box, outline=p["fg"], width=stroke)
            else:
                draw.ellipse(box, fill=p["fg"])
        else:
            draw.ellipse(box, outline=p["fg"], width=max(stroke, int(r * 0.38)))
    else:
        pts = _unit_shape(name)
        c, s = math.cos(p["rot"]), math.sin(p["rot"])
        poly = [(ox + scale * (x * c - y * s), oy + scale * (x * s + y * c)) for x, y in pts]
        if outline:
            draw.line(poly + [poly[0]], fill=p["fg"], width=stroke, joint="curve")
        else:
            draw.polygon(poly, fill=p["fg"])
    img = img.resize((RES, RES), Image.BOX)
    arr = np.asarray(img, dtype=np.float32) / 255.0
    if p["noise"] > 0:
        arr = arr + rng.normal(0, p["noise"], size=arr.shape)
    return (np.clip(arr, 0, 1) * 255 + 0.5).astype(np.uint8)


def render(stream: str, index: int) -> tuple[np.ndarray, int]:
    """Image ``index`` of ``stream`` and its label."""
    label = label_of(stream, index)
    return render_label(stream, index, label), label


def batch(stream: str, start: int, count: int) -> tuple[np.ndarray, np.ndarray]:
    """Images ``start .. start+count-1`` of ``stream`` as (uint8 N x RES x RES x 3, int64 labels)."""
    imgs, labels = zip(*(render(stream, i) for i in range(start, start + count)))
    return np.stack(imgs), np.asarray(labels, dtype=np.int64)


def prompt(label: int) -> str:
    return PROMPT_TEMPLATE.format(class_name=CLASSES[label])


def degrade(img: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """A visibly worse version of a render (blur, noise or blockiness): for preference pairs."""
    kind = int(rng.integers(3))
    pil = Image.fromarray(img)
    if kind == 0:
        pil = pil.resize((RES * 4, RES * 4), Image.BILINEAR).filter(
            ImageFilter.GaussianBlur(radius=float(rng.uniform(3, 6)))).resize((RES, RES), Image.BOX)
        return np.asarray(pil)
    if kind == 1:
        arr = img.astype(np.float32) + rng.normal(0, rng.uniform(30, 70), size=img.shape)
        return np.clip(arr, 0, 255).astype(np.uint8)
    small = pil.resize((RES // 4, RES // 4), Image.BOX)
    return np.asarray(small.resize((RES, RES), Image.NEAREST))
