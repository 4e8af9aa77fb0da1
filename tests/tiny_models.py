"""Tiny random networks the metric tests load from disk like real weights (no download)."""

from __future__ import annotations

from pathlib import Path

import torch


def save_tiny_dinov2(d: Path) -> Path:
    """A 2-layer, 24-wide random ``Dinov2Model`` (patch 14, 224 px input) saved with ``save_pretrained`` in ``d``."""
    from transformers import Dinov2Config, Dinov2Model
    torch.manual_seed(0)
    model = Dinov2Model(Dinov2Config(hidden_size=24, num_hidden_layers=2, num_attention_heads=2, mlp_ratio=2,
                                     patch_size=14, image_size=224))
    model.save_pretrained(d)
    return d
