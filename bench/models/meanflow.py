"""MeanFlow (Geng et al. 2025) on SD-VAE latents: the ``meanflow`` adapter (network: bench/nets/meanflow.py).

Reference: Gsunshine/meanflow (official JAX/Flax, ``models/models_dit.py``, ``meanflow.py``; checked at commit
d70cb55d298ee03c53bf6da67bec281082e4e2d9). Conventions taken from it:

- Network ``net(x, t, h, y)`` with h = t - r: a DiT (adaLN-Zero, learn_sigma False, 4 output channels) whose
  conditioning vector is c = t_embedder(t) + h_embedder(t - r) + y_embedder(y). Times are fed as they are,
  t in [0, 1] (no x1000); t = 1 is noise: z_t = (1 - t) x + t e.
- Sampler: average-velocity jumps z_r = z_t - (t - r) u(z_t, t, h=t-r, y) on linspace(1, 0, N + 1)
  (``solver_step``), so ``steps`` = N intervals = N network evaluations.
- Guidance is baked into training (omega/kappa in its config); the label table has 1001 rows and row 1000 is the
  null class (``cond_drop`` uses ``num_classes``). ``cfg`` here is the paper's optional inference CFG on top:
  u = u(null) + w (u(y) - u(null)), one batched forward of 2B rows, so NFE = 2N when w != 1 and N when w == 1.
- Latents: SD-VAE ft-mse (the reference decodes with ``pcuenq/sd-vae-ft-mse-flax``), scale 0.18215
  (``latents / 0.18215`` before decoding), 32x32x4 for 256 px.

Weights: the official checkpoint is a Flax TrainState; `bench convert meanflow` (bench/convert.py) turns it into a
safetensors file with this module's names (the ``ema_params`` tree, Dense kernels transposed, the patch conv
kernel HWIO -> OIHW, ``pos_embed`` filled in) and records the architecture in the file's metadata.

Options: ``arch`` (a size name of `MF_SHAPES` such as "B/4", or a mapping of DiTConfig fields; default: the
architecture recorded in the file's metadata, else B/4), ``vae``, ``vae_batch_size`` (bench/models/latent.py).
Randomness: bench.noise stream ``latent/init`` (bench/models/latent.py), drawn in NCHW (4, 32, 32).
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from bench.models.base import SamplerSettings
from bench.models.checkpoint import config_option
from bench.models.latent import DiTArch, LatentClassGenerator, LatentOptions
from bench.nets.dit import config_from_option
from bench.nets.meanflow import MF_SHAPES, MeanFlowDiT


def _config(arch: Any):
    return config_from_option(arch, MF_SHAPES, "MeanFlow arch")


MeanFlowArch = config_option(DiTArch, _config)


class MeanFlowOptions(LatentOptions):
    arch: MeanFlowArch = None


class MeanFlow(LatentClassGenerator):
    """MeanFlow: average-velocity jumps, baked guidance, optional inference CFG on top (2 NFE per step)."""
    family = "meanflow"
    version = "meanflow-1"
    Options = MeanFlowOptions
    solvers = ("jump",)
    default_arch = "B/4"
    weights_source = ("the official JAX checkpoint from github.com/Gsunshine/meanflow, converted once with "
                      "`bench convert meanflow CHECKPOINT OUT.safetensors`")
    guidance = ("guidance baked into training; cfg = optional inference CFG on the average velocity with null class "
                "1000 (cfg 1 = none; 2 NFE per step otherwise)")

    def build(self, arch: str | dict[str, Any]) -> nn.Module:
        return MeanFlowDiT(_config(arch))

    def nfe_per_image(self, s: SamplerSettings) -> int:
        self._check(s)
        return int(s.steps) * (1 if float(s.cfg) == 1.0 else 2)

    def _u(self, z: torch.Tensor, t: float, r: float, labels: torch.Tensor, w: float) -> torch.Tensor:
        if w == 1.0:
            net = self._require()
            b = z.shape[0]
            return net(z, torch.full((b,), t, device=z.device), torch.full((b,), t - r, device=z.device), labels)
        return self._u_guided(z, t, r, labels, w)

    def _u_guided(self, z: torch.Tensor, t: float, r: float, labels: torch.Tensor, w: float) -> torch.Tensor:
        """Inference CFG: cond and null rows in one forward of 2B rows; u(null) + w (u(y) - u(null))."""
        net = self._require()
        b = z.shape[0]
        null = torch.full_like(labels, net.null_label)
        out = net(torch.cat([z, z]), torch.full((2 * b,), t, device=z.device),
                  torch.full((2 * b,), t - r, device=z.device), torch.cat([labels, null]))
        cond, uncond = out[:b], out[b:]
        return uncond + w * (cond - uncond)

    def sample_latents(self, labels: torch.Tensor, sample_ids: torch.Tensor, s: SamplerSettings) -> torch.Tensor:
        labels, z = self._inputs(labels, sample_ids, s)
        ts = self.times(s.steps)
        for k in range(int(s.steps)):
            t, r = ts[k], ts[k + 1]
            z = z - (t - r) * self._u(z, t, r, labels, float(s.cfg)).float()
        return z
