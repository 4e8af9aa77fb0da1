"""MeanFlow's network (Gsunshine/meanflow ``models/models_dit.py``): a DiT with a second time embedding.

Names are DiT's (bench/nets/dit.py) plus ``h_embedder.mlp.{0,2}``; c = t_embedder(t) + h_embedder(h) +
y_embedder(y) with h = t - r, times in [0, 1] as given. The official Flax checkpoint is mapped onto these names by
bench/convert.py.
"""

from __future__ import annotations

import torch

from bench.nets import dit

# depth, hidden, heads of the reference's DiT_* configs (models_dit.py); "M" is MeanFlow's/SoFlow's extra size
MF_SHAPES = {"B": (12, 768, 12), "M": (16, 1024, 16), "L": (24, 1024, 16), "XL": (28, 1152, 16)}


class MeanFlowDiT(dit.DiT):
    """The reference's ``DiT`` with a second time embedding: forward(x, t, h, y), h = t - r."""

    def __init__(self, config: dit.DiTConfig):
        super().__init__(config)
        self.h_embedder = dit.TimestepEmbedder(config.hidden_size)

    def forward(self, x: torch.Tensor, t: torch.Tensor, h: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        c = self.t_embedder(t) + self.h_embedder(h) + self.y_embedder(y)
        return self.trunk(x, c)
