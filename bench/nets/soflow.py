"""SoFlow's network (zlab-princeton/SoFlow ``dit.py``, ``models.py``): a DiT with ``s_embedder``, wrapped as the
reference's ``Soflow`` module so every parameter sits under ``network.`` as in the released checkpoints.

c = t_embedder(t) + s_embedder(t - s) + y_embedder(y); times in [0, 1] as given; learn_sigma off (4 outputs).
"""

from __future__ import annotations

import torch
from torch import nn

from bench.nets import dit

# model_type in the reference's models.py: depth, hidden, heads (patch from the name)
SOFLOW_SHAPES = {"B": (12, 768, 12), "M": (16, 1024, 16), "L": (24, 1024, 16), "XL": (28, 1152, 16)}


class SoFlowDiT(dit.DiT):
    """The reference's DiT with ``s_embedder``: forward(x, t, s, y), s embedded as t - s."""

    def __init__(self, config: dit.DiTConfig):
        super().__init__(config)
        self.s_embedder = dit.TimestepEmbedder(config.hidden_size)

    def forward(self, x: torch.Tensor, t: torch.Tensor, s: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        c = self.t_embedder(t) + self.s_embedder(t - s) + self.y_embedder(y)
        return self.trunk(x, c)


class SoFlowNet(nn.Module):
    """The reference's ``Soflow`` module as far as its parameters go (all under ``network.``)."""

    def __init__(self, config: dit.DiTConfig):
        super().__init__()
        self.network = SoFlowDiT(config)

    @property
    def config(self) -> dit.DiTConfig:
        return self.network.config

    def forward(self, x: torch.Tensor, t: torch.Tensor, s: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        return self.network(x, t, s, y)
