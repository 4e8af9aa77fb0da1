"""The Generator protocol every model adapter implements, and the settings it receives."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Protocol, runtime_checkable

import torch
from torch import nn


@dataclass(frozen=True)
class ModelSpec:
    """What a suite says about one model: its id, adapter name, weights location and adapter options."""
    id: str
    adapter: str
    weights: str | None = None
    options: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class SamplerSettings:
    """How one cell samples: step count (the paper's N intervals), guidance scale, solver, seed, extras."""
    steps: int
    cfg: float
    solver: str | None = None
    seed: int = 0
    options: dict[str, Any] = field(default_factory=dict)


@runtime_checkable
class Generator(Protocol):
    family: str            # "flow", "meanflow", "diffusers", "samples", ...
    version: str           # adapter code version: part of every cell key

    def load(self, spec: ModelSpec, device: torch.device) -> None:
        """Load weights (safetensors or weights_only=True; never pickle) onto ``device``."""

    def nfe_per_image(self, s: SamplerSettings) -> int:
        """Declared network evaluations per image; timing.py counts the real number."""

    def networks(self) -> list[nn.Module]:
        """Modules whose one forward call over a batch of B rows is B network evaluations (hooked for NFE)."""

    def generate(self, labels: torch.Tensor, sample_ids: torch.Tensor, s: SamplerSettings) -> torch.Tensor:
        """uint8 NHWC images, one per label. All randomness for row k comes from
        ``bench.noise`` seeded with (s.seed, sample_ids[k])."""


class NonFiniteImages(ValueError):
    """A generator produced NaN or Inf pixels: quantising them would silently give black images."""


def to_uint8_nhwc(x: torch.Tensor) -> torch.Tensor:
    """Map a float NCHW batch in [-1, 1] to uint8 NHWC (round half up, clamped). NaN/Inf raise
    `NonFiniteImages` (the cell fails with that reason) instead of turning into black pixels."""
    bad = ~torch.isfinite(x)
    if bool(bad.any()):
        rows = bad.flatten(1).any(1).nonzero().flatten().tolist()
        raise NonFiniteImages(f"{len(rows)} of {len(x)} images in the batch contain NaN/Inf values "
                              f"(batch rows {rows[:8]})")
    x = ((x.float().clamp(-1, 1) + 1) * 127.5 + 0.5).floor().clamp(0, 255)
    return x.to(torch.uint8).permute(0, 2, 3, 1).contiguous().cpu()


def frozen(net: nn.Module, device: torch.device, dtype: torch.dtype | None = None) -> nn.Module:
    """An inference-only network: moved to ``device`` (and ``dtype``), eval mode, no gradients."""
    net = net.to(device=device, dtype=dtype).eval()
    for p in net.parameters():
        p.requires_grad_(False)
    return net
