"""The miniature world's denoiser: a small class-conditional U-Net for 16x16x3 images in [-1, 1].

One network class serves all three mini generators; a plain-dict config (stored in the weights manifest)
says which extra inputs it takes:

- ``t``     always: the time in [0, 1] (t = 1 is pure noise, t = 0 data; see mini_training/generators.py);
- ``r``     when ``config["second_time"] == "r"``: MeanFlow's start time r <= t (embedded as t - r);
- ``w``     when ``config["second_time"] == "w"``: the guidance scale, a network input of the distilled
            student (embedded as w - 1);
- ``label`` int64 class ids 0..num_classes-1, plus ``num_classes`` (= 10) as the null class used by
            classifier-free guidance.

Layout: pixel-unshuffle 16x16x3 -> 8x8x12, residual blocks at 8x8 (C) and 4x4 (2C) with FiLM conditioning
(scale/shift from the summed time/label embedding), pixel-shuffle back to 16x16x3. A thin full-resolution
conv path on input and output keeps edges sharp. Time embeddings are sinusoidal with a capped top frequency
(``max_freq``): MINI-NOTES.md measured t x 1000 embeddings diverging for MeanFlow.
"""

from __future__ import annotations

import math
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

MIN_ROWS = 16              # eval-mode forwards run on at least this many rows (batch-invariant results)

DEFAULT_CONFIG: dict[str, Any] = {
    "arch": "mini-unet-1",
    "channels": 48,          # width at 8x8; 4x4 uses 2x
    "blocks": 2,             # residual blocks per level (down and up)
    "full_res": 16,          # channels of the thin 16x16 path
    "emb": 256,              # conditioning embedding width
    "freq_dim": 64,          # sinusoidal features per time input
    "max_freq": 50.0,        # top angular frequency of the time embedding (t in [0, 1])
    "num_classes": 10,       # labels 0..9; id 10 is the null (unconditional) class
    "second_time": None,     # None | "r" (MeanFlow) | "w" (guidance as input)
    "groups": 8,
}


def make_config(**overrides: Any) -> dict[str, Any]:
    cfg = dict(DEFAULT_CONFIG)
    unknown = set(overrides) - set(cfg)
    if unknown:
        raise ValueError(f"unknown mini-net config keys: {sorted(unknown)}")
    cfg.update(overrides)
    if cfg["second_time"] not in (None, "r", "w"):
        raise ValueError(f"second_time must be None, 'r' or 'w', got {cfg['second_time']!r}")
    return cfg


def sinusoidal(x: torch.Tensor, dim: int, max_freq: float) -> torch.Tensor:
    """(B,) -> (B, dim) features sin/cos(f_k x) with f_k geometric from 1 to ``max_freq``."""
    half = dim // 2
    freqs = torch.exp(torch.linspace(0.0, math.log(max_freq), half, device=x.device, dtype=torch.float32))
    ang = x.float()[:, None] * freqs[None, :]
    return torch.cat([torch.sin(ang), torch.cos(ang)], dim=1)


class ResBlock(nn.Module):
    def __init__(self, cin: int, cout: int, emb: int, groups: int):
        super().__init__()
        self.n1 = nn.GroupNorm(groups, cin)
        self.c1 = nn.Conv2d(cin, cout, 3, padding=1)
        self.film = nn.Linear(emb, 2 * cout)
        self.n2 = nn.GroupNorm(groups, cout)
        self.c2 = nn.Conv2d(cout, cout, 3, padding=1)
        self.skip = nn.Conv2d(cin, cout, 1) if cin != cout else nn.Identity()
        nn.init.zeros_(self.c2.weight)
        nn.init.zeros_(self.c2.bias)

    def forward(self, x: torch.Tensor, e: torch.Tensor) -> torch.Tensor:
        h = self.c1(F.silu(self.n1(x)))
        scale, shift = self.film(e)[:, :, None, None].chunk(2, dim=1)
        h = self.n2(h) * (1 + scale) + shift
        h = self.c2(F.silu(h))
        return self.skip(x) + h


class MiniUNet(nn.Module):
    def __init__(self, config: dict[str, Any] | None = None):
        super().__init__()
        cfg = make_config(**(config or {}))
        self.config = cfg
        c, e, g, fr = cfg["channels"], cfg["emb"], cfg["groups"], cfg["full_res"]
        fd = cfg["freq_dim"]
        n_time = 1 if cfg["second_time"] is None else 2
        self.time_mlp = nn.Sequential(nn.Linear(n_time * fd, e), nn.SiLU(), nn.Linear(e, e))
        self.label_emb = nn.Embedding(cfg["num_classes"] + 1, e)
        self.emb_out = nn.Sequential(nn.SiLU(), nn.Linear(e, e))
        self.stem16 = nn.Conv2d(3, fr, 3, padding=1)
        self.stem8 = nn.Conv2d(4 * fr, c, 3, padding=1)
        nb = cfg["blocks"]
        self.down8 = nn.ModuleList([ResBlock(c, c, e, g) for _ in range(nb)])
        self.to4 = nn.Conv2d(c, 2 * c, 3, stride=2, padding=1)
        self.down4 = nn.ModuleList([ResBlock(2 * c, 2 * c, e, g) for _ in range(nb)])
        self.mid = ResBlock(2 * c, 2 * c, e, g)
        self.up4 = nn.ModuleList([ResBlock(4 * c if i == 0 else 2 * c, 2 * c, e, g) for i in range(nb)])
        self.to8 = nn.Conv2d(2 * c, c, 3, padding=1)
        self.up8 = nn.ModuleList([ResBlock(2 * c if i == 0 else c, c, e, g) for i in range(nb)])
        self.out_norm = nn.GroupNorm(g, c)
        self.out8 = nn.Conv2d(c, 4 * fr, 3, padding=1)
        self.out16 = nn.Conv2d(2 * fr, 3, 3, padding=1)
        nn.init.zeros_(self.out16.weight)
        nn.init.zeros_(self.out16.bias)

    def embed(self, t: torch.Tensor, label: torch.Tensor, second: torch.Tensor | None) -> torch.Tensor:
        cfg = self.config
        feats = [sinusoidal(t, cfg["freq_dim"], cfg["max_freq"])]
        if cfg["second_time"] is not None:
            if second is None:
                raise ValueError(f"this network needs its second input ({cfg['second_time']!r})")
            if cfg["second_time"] == "r":
                feats.append(sinusoidal(t - second, cfg["freq_dim"], cfg["max_freq"]))
            else:
                feats.append(sinusoidal(second - 1.0, cfg["freq_dim"], cfg["max_freq"] / 8))
        return self.emb_out(self.time_mlp(torch.cat(feats, dim=1)) + self.label_emb(label))

    def forward(self, x: torch.Tensor, t: torch.Tensor, label: torch.Tensor,
                second: torch.Tensor | None = None) -> torch.Tensor:
        n = x.shape[0]
        if not self.training and 0 < n < MIN_ROWS:
            # CPU kernels take other code paths for tiny batches (3x3 conv at 1 row, gemm at <= 3 rows, the
            # 1x1 skip conv below ~16 rows) whose float results differ in the last bits; padding to MIN_ROWS
            # rows (repeats of row 0, discarded) keeps every row's output independent of the batch it is in
            # (measured on this CPU for batches 1..600; tests/test_mini_generators.py checks it).
            pad = MIN_ROWS - n

            def rep(v: torch.Tensor | None) -> torch.Tensor | None:
                return None if v is None else torch.cat([v, v[:1].expand(pad, *v.shape[1:])])

            return self._forward(rep(x), rep(t), rep(label), rep(second))[:n]
        return self._forward(x, t, label, second)

    def _forward(self, x: torch.Tensor, t: torch.Tensor, label: torch.Tensor,
                 second: torch.Tensor | None) -> torch.Tensor:
        e = self.embed(t, label, second)
        if not self.training:
            x = x.contiguous(memory_format=torch.channels_last)
        h16 = F.silu(self.stem16(x))
        h = self.stem8(F.pixel_unshuffle(h16, 2))
        for blk in self.down8:
            h = blk(h, e)
        s8 = h
        h = self.to4(h)
        for blk in self.down4:
            h = blk(h, e)
        h = self.mid(h, e)
        s4 = h
        for i, blk in enumerate(self.up4):
            h = blk(torch.cat([h, s4], 1) if i == 0 else h, e)
        h = F.interpolate(h, scale_factor=2, mode="nearest")
        h = self.to8(h)
        for i, blk in enumerate(self.up8):
            h = blk(torch.cat([h, s8], 1) if i == 0 else h, e)
        h = self.out8(F.silu(self.out_norm(h)))
        h = F.silu(F.pixel_shuffle(h, 2))
        return self.out16(torch.cat([h, h16], 1))


def build(config: dict[str, Any], state_dict: dict[str, torch.Tensor] | None = None) -> MiniUNet:
    net = MiniUNet(config)
    if state_dict is not None:
        net.load_state_dict(state_dict)
    return net.eval()


def num_params(net: nn.Module) -> int:
    return sum(p.numel() for p in net.parameters())
