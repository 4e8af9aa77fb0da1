"""The miniature world's evaluation sets (procedural, no files): mini-val, mini-v2, mini-ood."""

from __future__ import annotations

import hashlib
from typing import Iterator

import numpy as np
import torch

from bench.data.base import DatasetError
from bench.mini import data as mini


class MiniDataset:
    """Images 0..size-1 of a procedural stream; ``holdout`` draws a disjoint set for real-vs-real rows."""

    def __init__(self, name: str, size: int = 1000):
        stream = name.removeprefix("mini-")
        if stream not in ("val", "v2", "ood"):
            raise DatasetError(f"unknown mini dataset {name!r}; expected mini-val, mini-v2 or mini-ood")
        if not isinstance(size, int) or size < 1:
            raise DatasetError(f"dataset {name!r}: options.size must be a positive integer, got {size!r}")
        self.name, self.stream, self.size = name, stream, size
        self.class_names = list(mini.CLASSES)
        self.prompt_template = mini.PROMPT_TEMPLATE
        self._labels = torch.tensor([mini.label_of(stream, i) for i in range(size)], dtype=torch.long)

    def __len__(self) -> int:
        return self.size

    def fingerprint(self) -> str:
        return hashlib.sha256(f"{mini.DATA_VERSION}/{self.stream}/{self.size}/{mini.RES}".encode()).hexdigest()

    def labels(self) -> torch.Tensor:
        return self._labels.clone()

    def reference_batches(self, batch_size: int) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        for start in range(0, self.size, batch_size):
            imgs, labels = mini.batch(self.stream, start, min(batch_size, self.size - start))
            yield torch.from_numpy(imgs), torch.from_numpy(labels)

    def holdout(self, labels: torch.Tensor, sample_ids: torch.Tensor) -> torch.Tensor:
        """Real images disjoint from the reference set, of the given labels (for real-vs-real rows)."""
        imgs = [mini.render_label(self.stream + "-holdout", int(i), int(y))
                for i, y in zip(sample_ids.tolist(), labels.tolist())]
        return torch.from_numpy(np.stack(imgs)) if imgs else torch.empty((0, mini.RES, mini.RES, 3), dtype=torch.uint8)
