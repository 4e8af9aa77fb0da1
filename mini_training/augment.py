"""Shared pieces of the metric networks' training: the training stream, augmentation (blur, noise,
quantisation) and the learning-rate schedule.

Run through ``python -m mini_training`` (see ``make mini-weights``); not part of the installed package."""

from __future__ import annotations

import math

import numpy as np
import torch
import torch.nn.functional as F

TRAIN_STREAM = "world"    # mixture of the train / v2 / ood styles on its own seeds (see bench.mini.data)
EVAL_STREAMS = ("val", "v2", "ood")


def _log(msg: str) -> None:
    print(msg, flush=True)


# --------------------------------------------------------------------------------------------- augmentation

def _gaussian_blur(x: torch.Tensor, sigma: torch.Tensor) -> torch.Tensor:
    """Per-sample separable Gaussian blur of float NCHW ``x``; ``sigma`` (N,) in pixels (0 = identity)."""
    n, c, h, w = x.shape
    r = 3
    t = torch.arange(-r, r + 1, dtype=x.dtype)
    s = sigma.clamp_min(1e-3).view(n, 1)
    k = torch.exp(-0.5 * (t.view(1, -1) / s) ** 2)
    k = k / k.sum(1, keepdim=True)                                   # (n, 2r+1)
    k = k.repeat_interleave(c, 0)                                    # (n*c, 2r+1)
    y = F.pad(x.reshape(1, n * c, h, w), (r, r, r, r), mode="replicate")
    y = F.conv2d(y, k.view(n * c, 1, 1, -1), groups=n * c)
    y = F.conv2d(y, k.view(n * c, 1, -1, 1), groups=n * c)
    return y.view(n, c, h, w)


def augment(x: torch.Tensor, g: torch.Generator, strength: float = 1.0) -> torch.Tensor:
    """Blur / noise / blockiness / colour jitter on float NCHW in [0, 1], each applied to a random subset.

    Makes the metric nets' features stable on imperfect generated samples (see MINI-NOTES.md)."""
    n = x.shape[0]

    def pick(p: float) -> torch.Tensor:
        return (torch.rand(n, generator=g) < p * strength).view(n, 1, 1, 1)

    # colour: brightness, contrast, saturation (mild)
    m = pick(0.5)
    gray = x.mean(1, keepdim=True)
    sat = 1 + (torch.rand(n, 1, 1, 1, generator=g) - 0.5) * 0.8       # 0.6 .. 1.4
    bri = 1 + (torch.rand(n, 1, 1, 1, generator=g) - 0.5) * 0.3       # 0.85 .. 1.15
    jittered = ((gray + (x - gray) * sat) * bri).clamp(0, 1)
    x = torch.where(m, jittered, x)
    # blur
    m = pick(0.3)
    sigma = 0.3 + torch.rand(n, generator=g) * 1.2                     # 0.3 .. 1.5 px
    x = torch.where(m, _gaussian_blur(x, sigma), x)
    # blockiness (down-up sampling to 8x8 or 4x4)
    m = pick(0.1)
    h = x.shape[-1]
    small = F.avg_pool2d(x, 2)
    block = F.interpolate(small, size=(h, h), mode="nearest")
    tiny = F.interpolate(F.avg_pool2d(x, 4), size=(h, h), mode="nearest")
    which = (torch.rand(n, 1, 1, 1, generator=g) < 0.5)
    x = torch.where(m, torch.where(which, block, tiny), x)
    # additive Gaussian noise
    m = pick(0.4)
    std = torch.rand(n, 1, 1, 1, generator=g) * 0.25                   # up to ~64/255
    x = torch.where(m, x + torch.randn(x.shape, generator=g) * std, x)
    return x.clamp(0, 1)


def _quantize(x: torch.Tensor) -> torch.Tensor:
    """float [0,1] -> uint8-representable float (what a metric sees from saved samples)."""
    return torch.round(x * 255) / 255


def _to_nchw01(imgs: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(imgs).permute(0, 3, 1, 2).float() / 255.0


def _cosine_lr(step: int, total: int, base: float, warmup: int) -> float:
    if step < warmup:
        return base * (step + 1) / warmup
    p = (step - warmup) / max(1, total - warmup)
    return base * 0.5 * (1 + math.cos(math.pi * p))


# ----------------------------------------------------------------------------------------------- classifier

