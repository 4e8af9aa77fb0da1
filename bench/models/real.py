"""Real images as a 'generator': a disjoint draw from the evaluation distribution, for real-vs-real rows
that show each metric's floor. Needs a dataset that can provide a holdout set."""

from __future__ import annotations

import torch
from torch import nn

from bench.models.base import ModelSpec, SamplerSettings


class RealImages:
    family = "real"
    version = "real-1"
    sweeps = False

    def load(self, spec: ModelSpec, device: torch.device) -> None:
        self.dataset = None

    def weights_id(self, spec: ModelSpec) -> str:
        return "real"

    def bind_dataset(self, dataset) -> None:
        if not hasattr(dataset, "holdout"):
            raise ValueError(f"dataset {dataset.name!r} has no holdout set for real-vs-real rows")
        self.dataset = dataset

    def networks(self) -> list[nn.Module]:
        return []

    def nfe_per_image(self, s: SamplerSettings) -> int:
        return 0

    def generate(self, labels: torch.Tensor, sample_ids: torch.Tensor, s: SamplerSettings) -> torch.Tensor:
        return self.dataset.holdout(labels, sample_ids)
