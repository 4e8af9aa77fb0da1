"""The reference-statistics cache: features of each real set, computed once, keyed by content, written atomically.

An entry's key is the sha256 of its *material*: the dataset fingerprint (image list and contents, resize and
preprocessing of the real images), the extractor, its layer, its input preprocessing, its weights' hash, and the
versions of the libraries that compute it. The material is also stored inside the file and compared on every
read, so an entry written by other code, truncated, or otherwise not matching exactly is never used: it is
recomputed and replaced. Files live under ``<cache_dir>/refstats/`` (``results/cache/refstats`` for the default
store) and are listed and removed by ``bench cache ls`` / ``bench cache clear``.
"""

from __future__ import annotations

import hashlib
import json
import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from safetensors import safe_open
from safetensors.torch import save_file

from bench.cell import canonical_json
from bench.provenance import package_version
from bench.tempfiles import temp_name

FORMAT = "refstats-1"
SUBDIR = "refstats"


def library_versions(*names: str) -> dict[str, str | None]:
    """Installed versions of torch and ``names`` (`bench.provenance.package_version`: read once per process)."""
    return {n: package_version(n) for n in ("torch", *names)}


def with_numerics(material: dict[str, Any]) -> dict[str, Any]:
    """``material`` as cached: with the numerics mode added when a suite opted out of strict float32 (features
    computed under TF32 differ from the strict ones); a strict entry's material (and file) is unchanged."""
    from bench.metrics.base import current_mode
    mode = current_mode()
    return material if mode == "strict" else {**material, "numerics": mode}


def material_key(material: dict[str, Any]) -> str:
    return hashlib.sha256(canonical_json({"format": FORMAT, **material}).encode()).hexdigest()


@dataclass
class Entry:
    path: Path
    key: str
    material: dict[str, Any] | None     # None when the file's header is unreadable
    created: float
    bytes: int
    rows: int | None


class RefCache:
    def __init__(self, cache_dir: str | Path):
        self.root = Path(cache_dir) / SUBDIR
        self.computed = 0     # reference feature passes done by this process through this object (for tests/logs)

    def path(self, material: dict[str, Any]) -> Path:
        return self.root / f"{material_key(with_numerics(material))}.safetensors"

    def load(self, material: dict[str, Any]) -> dict[str, torch.Tensor] | None:
        """The stored tensors for exactly this material, or None (missing, unreadable or not matching)."""
        material = with_numerics(material)
        path = self.path(material)
        if not path.exists():
            return None
        try:
            with safe_open(str(path), framework="pt") as f:
                meta = f.metadata() or {}
                stored = json.loads(meta.get("material", "null"))
                if meta.get("format") != FORMAT or canonical_json(stored) != canonical_json(material):
                    return None
                return {k: f.get_tensor(k) for k in f.keys()}
        except Exception:   # noqa: BLE001 - a damaged entry is recomputed, never used
            return None

    def save(self, material: dict[str, Any], tensors: dict[str, torch.Tensor]) -> Path:
        material = with_numerics(material)
        path = self.path(material)
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = temp_name(path)
        meta = {"format": FORMAT, "material": canonical_json(material), "created": f"{time.time():.3f}"}
        try:
            save_file({k: v.contiguous() for k, v in tensors.items()}, str(tmp), metadata=meta)
            os.replace(tmp, path)
        finally:
            tmp.unlink(missing_ok=True)
        return path

    def get_or_compute(self, material: dict[str, Any], compute) -> dict[str, torch.Tensor]:
        hit = self.load(material)
        if hit is not None:
            return hit
        tensors = compute()
        self.computed += 1
        self.save(material, tensors)
        return tensors

    # -- housekeeping (bench cache ls / clear) -------------------------------------------------------------------
    def entries(self) -> list[Entry]:
        out = []
        for p in sorted(self.root.glob("*.safetensors")) if self.root.is_dir() else []:
            st = p.stat()
            material, created, rows = None, st.st_mtime, None
            try:
                with safe_open(str(p), framework="pt") as f:
                    meta = f.metadata() or {}
                    material = json.loads(meta.get("material", "null"))
                    created = float(meta.get("created", created))
                    keys = list(f.keys())
                    rows = f.get_slice(keys[0]).get_shape()[0] if keys else 0
            except Exception:   # noqa: BLE001 - listed as unreadable
                pass
            out.append(Entry(p, p.stem, material, created, st.st_size, rows))
        return out

    def clear(self, older_than_s: float | None = None) -> list[Path]:
        """Remove every entry (``older_than_s`` None) or those created more than that many seconds ago; leftover
        temporary files of interrupted writes go too."""
        removed = []
        now = time.time()
        for e in self.entries():
            if older_than_s is None or now - e.created > older_than_s:
                e.path.unlink(missing_ok=True)
                removed.append(e.path)
        for tmp in self.root.glob(".*.tmp") if self.root.is_dir() else []:
            if older_than_s is None or now - tmp.stat().st_mtime > max(older_than_s, 3600):
                tmp.unlink(missing_ok=True)
                removed.append(tmp)
        return removed


def parse_age(text: str) -> float:
    """'90s', '30m', '12h', '7d' or a bare number of days -> seconds; a clear error otherwise."""
    units = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 7 * 86400}
    t = str(text).strip().lower()
    try:
        if t and t[-1] in units:
            v = float(t[:-1]) * units[t[-1]]
        else:
            v = float(t) * 86400
    except ValueError:
        raise ValueError(f"--older-than {text!r}: expected a number with a unit s, m, h, d or w (e.g. 7d)") from None
    if v < 0:
        raise ValueError(f"--older-than {text!r}: must not be negative")
    return v
