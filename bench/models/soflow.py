"""SoFlow (Luo, Yuan, Liu 2025): solution-operator model on SD-VAE latents, official weights unchanged: the
``soflow`` adapter (network: bench/nets/soflow.py).

Reference: zlab-princeton/SoFlow (``dit.py``, ``models.py``, ``inference.py``, ``imagenet.yaml``; checked at
commit 3b60d60f007b753966c0962cf2179f503e699129). Weights: Hugging Face ``zlab-princeton/SoFlow``
(``XL-2-cond/ckpts/<step>.pt``, a training checkpoint whose ``ema_model`` entry is the ``Soflow`` module's state
dict, so every parameter sits under ``network.``; read with ``torch.load(weights_only=True)``).

- Network ``network(x_t, t, s, y)``: DiT (learn_sigma False, 4 output channels) with a second time embedding,
  c = t_embedder(t) + s_embedder(t - s) + y_embedder(y); times in [0, 1] as given (no x1000); t = 1 is noise,
  x_t = (1 - t) x_0 + t e (``noising_type: Linear``).
- Solution operator (``coefficient_type: Euler``): f(x_t, t, s) = x_t + (s - t) network(x_t, t, s, y).
- Sampler (``inference.py``): times linspace(1, 0, N + 1); for each step jump to 0, x_0 = f(x_t, t_k, 0), then
  re-noise to the next time with fresh noise, x = (1 - t_{k+1}) x_0 + t_{k+1} e; the last step's jump is the
  sample. 1 network evaluation per step.
- Guidance: distilled at training (the loss targets a CFG-guided velocity); sampling has no guidance input and
  no unconditional branch, so the suite's ``cfg`` axis has NO effect (``cfg_ignored``; `bench validate` says
  so and every cfg value of a sweep gives the same images). The label table has 1001 rows (``cfg_drop_rate``
  0.1 > 0); row 1000 is the null class, used only in training.
- Latents: SD-VAE ft-mse, ``latents / 0.18215`` before decoding, 32x32x4.
- Options: ``arch`` (a size name of `SOFLOW_SHAPES` such as "XL-2-cond", or a mapping of DiTConfig fields;
  default: the file's recorded arch, else XL/2), ``vae``, ``vae_batch_size``.

Randomness: bench.noise streams ``latent/init`` (shared with MeanFlow and iMF) and ``latent/renoise/<k>`` for the
k-th re-noising, so a sample depends only on (seed, sample id).
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from bench import noise
from bench.models.base import SamplerSettings
from bench.models.checkpoint import config_option
from bench.models.latent import DiTArch, LatentClassGenerator, LatentOptions
from bench.nets.dit import config_from_option
from bench.nets.soflow import SOFLOW_SHAPES, SoFlowNet


def renoise_stream(k: int) -> str:
    return f"latent/renoise/{k}"


def _config(arch: Any):
    return config_from_option(arch, SOFLOW_SHAPES, "SoFlow arch")


SoFlowArch = config_option(DiTArch, _config)


class SoFlowOptions(LatentOptions):
    arch: SoFlowArch = None


class SoFlow(LatentClassGenerator):
    """SoFlow: jump to 0 with the solution operator, re-noise for multi-step; guidance distilled (cfg ignored)."""
    family = "solution-operator"
    version = "soflow-1"
    Options = SoFlowOptions
    solvers = ("jump-renoise",)
    default_arch = "XL/2"
    cfg_ignored = True
    weights_source = "XL-2-cond/ckpts/<step>.pt from huggingface.co/zlab-princeton/SoFlow"
    guidance = ("guidance distilled into the weights at training; no guidance input at sampling, so the cfg axis "
                "has no effect (1 NFE per step)")

    def build(self, arch: str | dict[str, Any]) -> nn.Module:
        return SoFlowNet(_config(arch))

    def nfe_per_image(self, s: SamplerSettings) -> int:
        self._check(s)
        return int(s.steps)

    def solution(self, x: torch.Tensor, t: float, s: float, labels: torch.Tensor) -> torch.Tensor:
        """f(x_t, t, s) = x_t + (s - t) network(x_t, t, s, y) (Euler coefficients)."""
        b = x.shape[0]
        tt = torch.full((b,), t, device=x.device)
        ss = torch.full((b,), s, device=x.device)
        return x + (s - t) * self._require()(x, tt, ss, labels).float()

    def sample_latents(self, labels: torch.Tensor, sample_ids: torch.Tensor, s: SamplerSettings) -> torch.Tensor:
        labels, x = self._inputs(labels, sample_ids, s)
        ids = torch.as_tensor(sample_ids).reshape(-1).cpu()
        ts = self.times(s.steps)
        x0 = self.solution(x, ts[0], 0.0, labels)
        for k in range(1, int(s.steps)):
            t = ts[k]
            e = noise.gaussian(s.seed, ids, self.latent_shape(), stream=renoise_stream(k), device=self.device)
            x0 = self.solution((1 - t) * x0 + t * e, t, 0.0, labels)
        return x0
