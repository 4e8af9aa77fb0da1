"""iMF (improved MeanFlow, Geng et al. 2025) on SD-VAE latents: the ``imf`` adapter (network: bench/nets/imf.py).

Reference: Lyy-iiis/imeanflow, branch ``torch`` (the official PyTorch re-implementation whose ``.pth`` files are
published as ``Lyy0725/iMF`` on Hugging Face: iMF-B-2.pth ... iMF-XL-2.pth), ``imf.py``, ``utils/vae_util.py``;
checked at commit 04687983e821b3ad01f54f03dc44194a33c20c54 (the JAX ``main`` branch, bf60cd7c, has the same network).

- Sampler (``iMeanFlow.generate``): linspace(1, 0, N + 1); z_r = z_t - (t - r) u(z_t, h=t-r, w, t_min, t_max, y);
  1 network evaluation per step whatever w. ``cfg`` is w (the paper's omega; trained on w in [1, 8]; w = 1 means no
  guidance, omega embedded as 1 - 1/w, so w must be > 0). The guidance interval [t_min, t_max] is the ``interval``
  model option, default [0.40, 0.65] (the paper's; the repo recommends [0.42, 0.62] at w = 8 for XL/2), with
  0 <= t_min <= t_max <= 1.
- Latents are normalised per channel: the VAE gets z * std + mean (mean 0.86488, -0.27787343, 0.21616915,
  0.3738409; std 4.85503674, 5.31922414, 3.93725398, 3.9870003) with NO 0.18215 factor; SD-VAE ft-mse.
- Options: ``arch`` (a size name of `IMF_SHAPES`, all patch 2, or a mapping of IMFConfig fields; default: the
  file's recorded arch, else XL/2), ``interval``, ``vae``, ``vae_batch_size``.

Randomness: bench.noise stream ``latent/init`` (bench/models/latent.py), not the reference's per-index torch
generators.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from bench.models.base import SamplerSettings
from bench.models.checkpoint import config_option, config_options, interval_option
from bench.models.latent import LatentClassGenerator, LatentOptions
from bench.nets.imf import IMFConfig, IMFNet, imf_config

LATENT_MEAN = (0.86488, -0.27787343, 0.21616915, 0.3738409)
LATENT_STD = (4.85503674, 5.31922414, 3.93725398, 3.9870003)
DEFAULT_INTERVAL = [0.40, 0.65]

IMFArch = config_option(config_options(IMFConfig), imf_config)
GuidanceInterval = interval_option(within=(0.0, 1.0), point_ok=True)


class IMFOptions(LatentOptions):
    arch: IMFArch = None
    interval: GuidanceInterval = DEFAULT_INTERVAL


class IMF(LatentClassGenerator):
    """iMF: average-velocity jumps with guidance scale and interval as network inputs (1 NFE per step)."""
    family = "meanflow"
    version = "imf-1"
    Options = IMFOptions
    solvers = ("jump",)
    default_arch = "XL/2"
    vae_scale = 1.0
    weights_source = "iMF-<size>.pth (e.g. iMF-XL-2.pth) from huggingface.co/Lyy0725/iMF"
    guidance = ("cfg = guidance scale w fed to the network with the guidance interval (option `interval`, default "
                "[0.40, 0.65]); 1 NFE per step for every w")

    def build(self, arch: str | dict[str, Any]) -> nn.Module:
        return IMFNet(imf_config(arch))

    def interval(self) -> tuple[float, float]:
        """The guidance interval [t_min, t_max] fed to the network (option ``interval``, checked at validation)."""
        t_min, t_max = self.opts.interval
        return t_min, t_max

    def _check(self, s: SamplerSettings) -> None:
        super()._check(s)
        if float(s.cfg) <= 0:
            raise ValueError(f"{self.name}: cfg (guidance scale w, embedded as 1 - 1/w) must be > 0, got {s.cfg!r}")

    def nfe_per_image(self, s: SamplerSettings) -> int:
        self._check(s)
        return int(s.steps)

    def latents_for_vae(self, z: torch.Tensor) -> torch.Tensor:
        mean = torch.tensor(LATENT_MEAN, device=z.device).view(1, -1, 1, 1)
        std = torch.tensor(LATENT_STD, device=z.device).view(1, -1, 1, 1)
        return z * std + mean

    def sample_latents(self, labels: torch.Tensor, sample_ids: torch.Tensor, s: SamplerSettings) -> torch.Tensor:
        net = self._require()
        labels, z = self._inputs(labels, sample_ids, s)
        b, dev = z.shape[0], z.device
        t_min, t_max = self.interval()
        full = lambda v: torch.full((b,), v, device=dev)     # noqa: E731
        w, lo, hi = full(float(s.cfg)), full(t_min), full(t_max)
        ts = self.times(s.steps)
        for k in range(int(s.steps)):
            t, r = ts[k], ts[k + 1]
            z = z - (t - r) * net(z, full(t - r), w, lo, hi, labels).float()
        return z

