"""Any labelled image folder: ``root/<class name>/*.png|jpg|...``, classes in sorted order unless given."""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Iterator

import numpy as np
import torch
from PIL import Image

from bench.data.base import DatasetError

EXTS = {".png", ".jpg", ".jpeg", ".webp", ".bmp"}


def load_rgb(path: Path, size: int | None) -> np.ndarray:
    """Decode to RGB uint8 HWC; PIL bicubic resize straight to size x size (no crop) when size is given."""
    with Image.open(path) as im:
        im = im.convert("RGB")
        if size is not None and im.size != (size, size):
            im = im.resize((size, size), Image.BICUBIC)
        return np.asarray(im, dtype=np.uint8)


class ImageFolder:
    def __init__(self, name: str, root: str, resolution: int | None = 256, classes: list[str] | None = None,
                 prompt_template: str = "a photo of a {class_name}"):
        self.name, self.root, self.resolution = name, Path(root), resolution
        if not self.root.is_dir():
            raise DatasetError(f"dataset {name!r}: options.root {str(self.root)!r} is not a folder")
        found = sorted(p.name for p in self.root.iterdir() if p.is_dir())
        self.class_names = list(classes) if classes else found
        missing = [c for c in found if c not in self.class_names]
        if missing:
            raise DatasetError(f"dataset {name!r}: folders {missing[:5]} are not in options.classes")
        self.prompt_template = prompt_template
        self.items: list[tuple[Path, int]] = []
        for idx, cname in enumerate(self.class_names):
            d = self.root / cname
            if d.is_dir():
                self.items += [(p, idx) for p in sorted(d.iterdir()) if p.suffix.lower() in EXTS]
        if not self.items:
            raise DatasetError(f"dataset {name!r}: no images under {str(self.root)!r}")

    def __len__(self) -> int:
        return len(self.items)

    def fingerprint(self) -> str:
        h = hashlib.sha256(f"imagefolder/1/{self.resolution}/bicubic/{self.class_names}".encode())
        for path, label in self.items:
            h.update(f"{path.relative_to(self.root)}:{label}:".encode())
            h.update(hashlib.sha256(path.read_bytes()).digest())
        return h.hexdigest()

    def labels(self) -> torch.Tensor:
        return torch.tensor([y for _, y in self.items], dtype=torch.long)

    def reference_batches(self, batch_size: int) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        for start in range(0, len(self.items), batch_size):
            chunk = self.items[start:start + batch_size]
            imgs = np.stack([load_rgb(p, self.resolution) for p, _ in chunk])
            yield torch.from_numpy(imgs), torch.tensor([y for _, y in chunk], dtype=torch.long)
