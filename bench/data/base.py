"""The Dataset protocol (a labelled reference set) and sample plans over it."""

from __future__ import annotations

from typing import Iterator, Protocol, runtime_checkable

import torch

from bench import noise
from bench.cell import SamplePlan


@runtime_checkable
class Dataset(Protocol):
    name: str
    class_names: list[str]
    prompt_template: str

    def __len__(self) -> int: ...

    def fingerprint(self) -> str:
        """Content hash of the reference set and its preprocessing: part of every cell and cache key."""

    def labels(self) -> torch.Tensor:
        """Reference labels (int64) in dataset order."""

    def reference_batches(self, batch_size: int) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        """(uint8 NHWC images, int64 labels) of the whole reference set, in order, streamed."""


class DatasetError(ValueError):
    pass


def prompts_for(dataset: Dataset, labels: torch.Tensor) -> list[str]:
    return [dataset.prompt_template.format(class_name=dataset.class_names[int(y)]) for y in labels.tolist()]


def plan_labels(dataset: Dataset, plan: SamplePlan, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """(labels, sample_ids) for a cell: sample i is conditioned on labels[i] and seeded by (seed, i)."""
    k = len(dataset.class_names)
    if plan.kind == "per_reference":
        labels = dataset.labels()
        if plan.n is not None:
            if plan.n > len(labels):
                raise DatasetError(f"samples.n = {plan.n} exceeds the {len(labels)} reference images of "
                                   f"dataset {dataset.name!r}")
            labels = labels[: plan.n]
    elif plan.kind == "per_class":
        labels = torch.arange(k).repeat_interleave(plan.n)
    elif plan.kind == "uniform":
        labels = noise.labels_uniform(seed, torch.arange(plan.n), k)
    else:
        raise DatasetError(f"unknown sample plan {plan.kind!r}")
    return labels.long(), torch.arange(len(labels))
