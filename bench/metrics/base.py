"""The Metric / Accumulator protocols and the per-sample accumulator every metric here streams into.

Accumulators are mergeable: shards of a cell combine exactly. Each keeps per-sample rows (features or scores)
tagged with their sample ids; ``result()`` orders rows by sample id before any statistic, so the numbers do
not depend on batch size, arrival order or shard split.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Callable, Protocol

import torch


class Accumulator(Protocol):
    def update(self, images: torch.Tensor, labels: torch.Tensor, prompts: list[str],
               sample_ids: torch.Tensor) -> None: ...

    def merge(self, other: "Accumulator") -> "Accumulator": ...

    def result(self) -> dict[str, float]: ...


class Metric(Protocol):
    name: str
    version: str
    outputs: dict[str, bool]         # output value name -> higher is better

    def __init__(self, options: dict[str, Any], device: torch.device, cache_dir: Path): ...

    def describe(self) -> dict[str, Any]:
        """Implementation and options, stored with every row (extractor, weights hash, clamp, splits, ...)."""

    def version_key(self) -> str:
        """Everything about this metric that changes its numbers, for cell keys (code version + weights hash)."""

    def accumulator(self, dataset) -> Accumulator: ...


class MetricError(ValueError):
    pass


class PerSampleAccumulator:
    """Collects named per-sample tensors (rows) on the CPU; ``finalize(rows_sorted, labels_sorted)`` makes the
    result. ``embed(images, labels, prompts)`` maps a batch to a dict of (B, ...) tensors."""

    def __init__(self, embed: Callable[..., dict[str, torch.Tensor]],
                 finalize: Callable[[dict[str, torch.Tensor], torch.Tensor], dict[str, float]]):
        self._embed, self._finalize = embed, finalize
        self.rows: dict[str, list[torch.Tensor]] = {}
        self.ids: list[torch.Tensor] = []
        self.labels: list[torch.Tensor] = []

    def update(self, images, labels, prompts, sample_ids) -> None:
        out = self._embed(images, labels, prompts)
        for k, v in out.items():
            if len(v) != len(sample_ids):
                raise MetricError(f"metric produced {len(v)} rows of {k!r} for {len(sample_ids)} images")
            self.rows.setdefault(k, []).append(v.detach().cpu())
        self.ids.append(sample_ids.detach().cpu().long())
        self.labels.append(labels.detach().cpu().long())

    def merge(self, other: "PerSampleAccumulator") -> "PerSampleAccumulator":
        out = PerSampleAccumulator(self._embed, self._finalize)
        for acc in (self, other):
            for k, v in acc.rows.items():
                out.rows.setdefault(k, []).extend(v)
            out.ids.extend(acc.ids)
            out.labels.extend(acc.labels)
        return out

    def count(self) -> int:
        return int(sum(len(i) for i in self.ids))

    def result(self) -> dict[str, float]:
        if not self.ids:
            raise MetricError("no samples were accumulated")
        ids = torch.cat(self.ids)
        order = torch.argsort(ids, stable=True)
        if len(torch.unique(ids)) != len(ids):
            raise MetricError("duplicate sample ids: the same sample was accumulated twice (overlapping shards?)")
        rows = {k: torch.cat(v)[order] for k, v in self.rows.items()}
        return self._finalize(rows, torch.cat(self.labels)[order])
