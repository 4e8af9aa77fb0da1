"""Real images as a 'generator': a disjoint draw from the evaluation distribution, for real-vs-real rows
that show each metric's floor. Needs a dataset that declares a holdout set (``Dataset.has_holdout``); takes no
options."""

from __future__ import annotations

import torch
from torch import nn

from bench.data.base import Dataset
from bench.models.base import Generator, ModelSpec, SamplerSettings
from bench.options import NoOptions


class RealImages(Generator):
    family = "real"
    version = "real-1"
    sweeps = False
    Options = NoOptions
    conditions = frozenset({"class", "caption"})        # it draws real images; nothing conditions them

    def __init__(self) -> None:
        self.dataset: Dataset | None = None

    def load(self, spec: ModelSpec, device: torch.device) -> None:
        self.parse_options(spec.options)
        self.dataset = None

    def weights_id(self, spec: ModelSpec) -> str:
        return "real"

    def bind_dataset(self, dataset: Dataset) -> None:
        if not dataset.has_holdout:
            raise ValueError(f"dataset {dataset.name!r} has no holdout set for real-vs-real rows")
        self.dataset = dataset

    def networks(self) -> list[nn.Module]:
        return []

    def nfe_per_image(self, s: SamplerSettings) -> int:
        return 0

    def generate(self, labels: torch.Tensor, sample_ids: torch.Tensor, s: SamplerSettings) -> torch.Tensor:
        if self.dataset is None:
            raise RuntimeError("RealImages: no dataset bound (the runner binds the cell's dataset before generating)")
        return self.dataset.holdout(labels, sample_ids)
