"""A small, honest test generator built in code: a fixed random conv velocity field integrated by Euler.

It has everything a real flow adapter has (class conditioning, true CFG batched as 2B rows, step count,
per-sample noise) at a size that runs in milliseconds, so tests exercise the real runner path.

Options: ``resolution`` (image side, default 16), ``num_classes`` (default 10; label ``num_classes`` is the null
class of CFG) and ``init_seed`` (the seed of the random weights, default 0; it is the weights' identity).
"""

from __future__ import annotations

from typing import Annotated

import torch
from pydantic import Field
from torch import nn

from bench import noise
from bench.models.base import Generator, ModelSpec, SamplerSettings, StrictOptions, to_uint8_nhwc


class _ToyNet(nn.Module):
    def __init__(self, num_classes: int, channels: int = 3, hidden: int = 16):
        super().__init__()
        self.emb = nn.Embedding(num_classes + 1, hidden)
        self.inp = nn.Conv2d(channels, hidden, 3, padding=1)
        self.out = nn.Conv2d(hidden, channels, 3, padding=1)

    def forward(self, x: torch.Tensor, t: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        h = self.inp(x) + self.emb(y)[:, :, None, None] * (1 + t.view(-1, 1, 1, 1))
        return self.out(torch.tanh(h)) + 0.5 * x


class ToyFlow(Generator):
    """Euler steps of the random velocity field with true CFG (2B-row forwards when cfg != 1)."""
    family = "flow"
    version = "toy-1"
    solvers = ("euler",)
    guidance = "true CFG on the velocity with the null class (cfg 1 = none; 2 NFE per step otherwise)"

    class Options(StrictOptions):
        resolution: Annotated[int, Field(ge=1)] = 16
        num_classes: Annotated[int, Field(ge=1)] = 10
        init_seed: int = 0

    def load(self, spec: ModelSpec, device: torch.device) -> None:
        self.opts = self.parse_options(spec.options)
        self.resolution = self.opts.resolution
        self.num_classes = self.opts.num_classes
        self.device = device
        torch.manual_seed(self.opts.init_seed)
        self.net = _ToyNet(self.num_classes).to(device).eval()

    def weights_id(self, spec: ModelSpec) -> str:
        return f"toy-init:{self.parse_options(spec.options).init_seed}"

    def networks(self) -> list[nn.Module]:
        return [self.net]

    def nfe_per_image(self, s: SamplerSettings) -> int:
        return s.steps * (1 if s.cfg == 1 else 2)

    @torch.inference_mode()
    def generate(self, labels: torch.Tensor, sample_ids: torch.Tensor, s: SamplerSettings) -> torch.Tensor:
        if s.steps < 1:
            raise ValueError(f"steps must be >= 1, got {s.steps}")
        x = noise.gaussian(s.seed, sample_ids, (3, self.resolution, self.resolution), device=self.device)
        y = labels.to(self.device)
        ts = torch.linspace(1, 0, s.steps + 1)
        for i in range(s.steps):
            t = torch.full((len(x),), float(ts[i]), device=self.device)
            if s.cfg == 1:
                v = self.net(x, t, y)
            else:
                null = torch.full_like(y, self.num_classes)
                both = self.net(torch.cat([x, x]), torch.cat([t, t]), torch.cat([y, null]))
                cond, uncond = both.chunk(2)
                v = uncond + s.cfg * (cond - uncond)
            x = x + (ts[i + 1] - ts[i]) * v
        return to_uint8_nhwc(x.clamp(-1, 1))
