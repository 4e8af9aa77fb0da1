"""Robust image decoding and the named real-image transforms recorded in every dataset fingerprint.

Decoding: EXIF orientation applied; every mode converted to RGB (L, I;16, CMYK, YCbCr, P, 1, ...). Images with
transparency (RGBA, LA, PA, P with a transparent colour) are alpha-composited onto WHITE, not stripped, so the
colour under transparent pixels (often garbage) never shows. PNG text chunks up to 64 MiB are accepted (PIL's
default limit rejects some web PNGs). A file PIL cannot decode raises ``DecodeError``; sources count and list it.

Files: only regular files (or symlinks to one) are ever opened. ``file_kind`` names anything else; special files
(FIFOs, devices, sockets) are never read (a FIFO blocks a reader forever, /dev/zero never ends): `select_images`
leaves them out of every listing and reports them, and `decode` refuses such a path. A symlink loop or a
dangling link named like an image IS listed, and fails to decode like a corrupt file (so it is counted).

Transforms (``options.transform``):
- ``paper`` (default): PIL bicubic resize straight to size x size, no crop (the paper's protocol).
- ``adm``: ADM's centre crop: halve with BOX while the short side >= 2 * size, bicubic so the short side ==
  size, then centre-crop size x size.
"""

from __future__ import annotations

import errno
import io
import os
import stat
from pathlib import Path
from typing import Iterable

import numpy as np
from PIL import Image, ImageOps, PngImagePlugin, UnidentifiedImageError

from bench.data.base import DatasetError

PngImagePlugin.MAX_TEXT_CHUNK = max(PngImagePlugin.MAX_TEXT_CHUNK, 64 * 1024 * 1024)
PngImagePlugin.MAX_TEXT_MEMORY = max(PngImagePlugin.MAX_TEXT_MEMORY, 256 * 1024 * 1024)

DECODE_VERSION = "decode/1:exif,white-alpha"
TRANSFORMS = ("paper", "adm")
EXTS = {".png", ".jpg", ".jpeg", ".webp", ".bmp", ".gif", ".tif", ".tiff"}


SPECIAL = ((stat.S_ISFIFO, "a FIFO"), (stat.S_ISCHR, "a character device"), (stat.S_ISBLK, "a block device"),
           (stat.S_ISSOCK, "a socket"))
SPECIAL_KINDS = frozenset(what for _, what in SPECIAL)


class DecodeError(Exception):
    pass


def file_kind(path: str | Path) -> str | None:
    """None for a regular file (or a symlink to one); else what the entry is, for messages: one of
    `SPECIAL_KINDS`, "a folder", "a symlink loop", "a broken symlink" or "unreadable (<reason>)"."""
    try:
        mode = os.stat(path).st_mode             # follows symlinks: a link to /dev/zero is a character device
    except OSError as e:
        if e.errno == errno.ELOOP:
            return "a symlink loop"
        if os.path.islink(path):
            return "a broken symlink"
        return f"unreadable ({e.strerror or type(e).__name__})"
    if stat.S_ISREG(mode):
        return None
    if stat.S_ISDIR(mode):
        return "a folder"
    return next((what for test, what in SPECIAL if test(mode)), "not a regular file")


def select_images(paths: Iterable[Path]) -> tuple[list[Path], list[tuple[Path, str]]]:
    """(image entries, special files skipped with what each is) among ``paths``, by extension (`EXTS`).
    Listed: regular files, and broken entries (symlink loops, dangling links) that then fail to decode and are
    counted; skipped: special files (never opened); ignored: folders (listings recurse into them)."""
    listed, skipped = [], []
    for p in paths:
        if p.suffix.lower() not in EXTS:
            continue
        kind = file_kind(p)
        if kind in SPECIAL_KINDS or kind == "not a regular file":
            skipped.append((p, kind))
        elif kind != "a folder":
            listed.append(p)
    return listed, skipped


def to_rgb(im: Image.Image) -> Image.Image:
    im = ImageOps.exif_transpose(im)
    if im.mode == "RGB":
        return im
    if im.mode == "P":
        im = im.convert("RGBA" if "transparency" in im.info else "RGB")
    elif im.mode in ("I;16", "I;16L", "I;16B", "I;16N", "I"):
        arr = np.asarray(im).astype(np.float64)
        scale = 257.0 if im.mode.startswith("I;16") or arr.max() > 255 else 1.0
        im = Image.fromarray(np.clip(np.round(arr / scale), 0, 255).astype(np.uint8), "L")
    elif im.mode == "F":
        arr = np.asarray(im)
        im = Image.fromarray(np.clip(np.round(arr * (255.0 if arr.max() <= 1.0 else 1.0)), 0, 255).astype(np.uint8))
    if im.mode in ("RGBA", "LA", "PA", "RGBa", "La"):
        rgba = im.convert("RGBA")
        bg = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        return Image.alpha_composite(bg, rgba).convert("RGB")
    return im.convert("RGB")


def decode(data: bytes | str | Path, check_only: bool = False) -> Image.Image:
    """Bytes or a path -> fully loaded RGB PIL image; any failure -> DecodeError with PIL's message.
    ``check_only`` (the failure scan) lets JPEGs decode at 1/8 scale: every byte is still entropy-decoded, so
    truncated or corrupt files fail the same way, several times faster; never used for pixels that are kept."""
    if not isinstance(data, (bytes, bytearray, memoryview)):
        kind = file_kind(data)
        if kind is not None:                     # checked first: a FIFO would block read_bytes forever
            raise DecodeError(f"{kind}, not a regular file: never read")
    try:
        if not isinstance(data, (bytes, bytearray, memoryview)):
            data = Path(data).read_bytes()
        with Image.open(io.BytesIO(data)) as im:
            if check_only and im.format == "JPEG":
                im.draft(im.mode, (max(1, im.width // 8), max(1, im.height // 8)))
            im.load()
            return to_rgb(im)
    except UnidentifiedImageError as e:
        raise DecodeError("UnidentifiedImageError: not an image, or a format PIL cannot read") from e
    except Exception as e:   # PIL raises many types (OSError, SyntaxError, ValueError, DecompressionBombError)
        raise DecodeError(f"{type(e).__name__}: {e}") from e


def check_transform(name: str) -> str:
    if name not in TRANSFORMS:
        raise DatasetError(f"options.transform must be one of {', '.join(TRANSFORMS)}, got {name!r}")
    return name


def apply(im: Image.Image, transform: str, size: int | None) -> np.ndarray:
    """RGB PIL image -> uint8 HWC (size x size unless size is None: native size, no resize)."""
    if size is None:
        return np.asarray(im, dtype=np.uint8)
    if transform == "paper":
        if im.size != (size, size):
            im = im.resize((size, size), Image.BICUBIC)
        return np.asarray(im, dtype=np.uint8)
    if transform == "adm":
        while min(im.size) >= 2 * size:
            im = im.resize(tuple(x // 2 for x in im.size), resample=Image.BOX)
        scale = size / min(im.size)
        im = im.resize(tuple(round(x * scale) for x in im.size), resample=Image.BICUBIC)
        arr = np.asarray(im, dtype=np.uint8)
        top, left = (arr.shape[0] - size) // 2, (arr.shape[1] - size) // 2
        return np.ascontiguousarray(arr[top:top + size, left:left + size])
    raise DatasetError(f"unknown transform {transform!r}")


def load_rgb(path: str | Path, size: int | None, transform: str = "paper") -> np.ndarray:
    return apply(decode(path), transform, size)
