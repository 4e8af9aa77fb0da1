"""SiT (Scalable Interpolant Transformers, willisma/SiT) adapter: official checkpoints, Linear/velocity transport.

Conventions, as in the reference (transport/path.py ICPlan, transport.py, sample.py):

- Path: x_t = t * x_data + (1 - t) * noise, so t = 0 is NOISE and t = 1 is DATA; the network sees t in [0, 1]
  unscaled and predicts the velocity v = x_data - noise. Sampling integrates dx/dt = v from t = 0 to t = 1
  (sample_eps = 0 for the velocity model).
- Learned sigma: SiT-XL/2-256 has 8 output channels; only the first 4 are the velocity (the reference's
  forward drops the rest).
- Labels 0..999; the null class for CFG is 1000 (the label table's extra row).
- CFG (true, 2 NFE per evaluation: cond and null rows in one 2B-row forward): v = v_u + w (v_c - v_u).
  The reference's forward_with_cfg guides only the first 3 channels and keeps the conditional velocity in
  channel 4 (a DiT "reproducibility" quirk). Option ``cfg_channels``: ``3`` (default, as the paper's code) or
  ``"all"``. ``cfg == 1`` is the unguided path: one B-row forward per evaluation (1 NFE).
- Steps: N = number of intervals on linspace(0, 1, N + 1). The reference's ``--num-sampling-steps`` counts time
  POINTS (N + 1), so its "50 steps" are 49 intervals here.
- Solvers (bench.models.samplers): ``euler`` (default; N NFE), ``heun`` (2N), ``dopri5`` (adaptive, torchdiffeq,
  atol/rtol options with SiT's defaults 1e-6/1e-3, passed as one-element lists as the reference does, so the
  error ratio is float64; N is ignored and NFE is only counted, declared NaN; solved per sample by default, which
  differs from the reference's joint solve by design, see samplers.py), ``sde`` (Euler-Maruyama with SiT's
  defaults: diffusion "sigma" D(t) = norm * (1 - t), last step "Mean" of size 0.04; N NFE. The reference calls
  the network twice per SDE step, for the drift and again for the score; both are the same evaluation, computed
  once here).
- Noise: initial latent from bench.noise stream "sit/init"; SDE step k from "sit/sde/<k>", so sample i depends
  only on (seed, i).
- Latent: SD-VAE 32x32x4 for 256 px, decoded by bench.models.latent.LatentDecoder (option ``vae``: ft-mse
  (default), ft-ema, or a local path / hub id; ``vae_batch_size``).
- Network: bench/nets/dit.py (the DiT/SiT backbone with the official parameter names).

Weights: ``spec.weights`` (default ``$SIT_WEIGHTS``) through bench.hub.resolve_weights: a file, a folder holding
``SiT-XL-2-256.pt`` (option ``weights_file``), or a hub id. ``.safetensors`` or ``torch.load(weights_only=True)``
(a train.py checkpoint, ``{"model", "ema", "opt", "args"}``, loads: its ``argparse.Namespace`` args is the one
extra type allowed, `bench.models.checkpoint.TRAIN_PY_GLOBALS`); a train.py checkpoint's ``"ema"`` entry is used,
as the reference's find_model does (else ``"model"``). The
network size (depth, width, patch, classes, learned sigma) is read from the checkpoint's shapes; heads come from
the standard sizes (or option ``num_heads``).
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Annotated, Literal

import torch
from pydantic import Field
from torch import nn

from bench import noise
from bench.hub import resolve_weights
from bench.models import samplers
from bench.models.base import Generator, ModelSpec, SamplerSettings, frozen
from bench.models.checkpoint import check_settings, class_inputs, load_strict, read_checkpoint
from bench.models.latent import LatentDecoder, VAEOptions, vae_requirements
from bench.nets.dit import DiT, DiTConfig

INIT_STREAM = "sit/init"
DEFAULT_WEIGHTS = "$SIT_WEIGHTS"
WEIGHTS_FILE = "SiT-XL-2-256.pt"
WEIGHTS_GET = "the SiT-XL/2 256x256 checkpoint linked in the README of github.com/willisma/SiT"
HEADS_BY_WIDTH = {384: 6, 768: 12, 1024: 16, 1152: 16}
Positive = Annotated[float, Field(gt=0)]


class SiTOptions(VAEOptions):
    cfg_channels: Literal[3, "all"] = 3
    atol: Positive = 1e-6
    rtol: Positive = 1e-3
    dopri5_per_sample: bool = True
    sde_diffusion_norm: Positive = 1.0
    sde_last_step_size: Annotated[float, Field(gt=0, lt=1)] = 0.04
    num_heads: Annotated[int, Field(ge=1)] | None = None
    weights_file: str = WEIGHTS_FILE


def sde_stream(k: int) -> str:
    return f"sit/sde/{k}"


def config_from_state_dict(sd: dict[str, torch.Tensor], num_heads: int | None, what: str) -> DiTConfig:
    """The DiTConfig a SiT/DiT state dict was trained with, read from its tensor shapes."""
    try:
        proj = sd["x_embedder.proj.weight"]
        hidden, in_ch, patch = int(proj.shape[0]), int(proj.shape[1]), int(proj.shape[2])
        tokens = int(sd["pos_embed"].shape[1])
        table = int(sd["y_embedder.embedding_table.weight"].shape[0])
        out = int(sd["final_layer.linear.weight"].shape[0])
        fc1 = int(sd["blocks.0.mlp.fc1.weight"].shape[0])
    except KeyError as e:
        raise ValueError(f"{what}: not a SiT/DiT checkpoint (no tensor {e.args[0]!r})") from None
    depth = len({k.split(".")[1] for k in sd if k.startswith("blocks.")})
    grid = math.isqrt(tokens)
    heads = num_heads or HEADS_BY_WIDTH.get(hidden)
    if heads is None:
        raise ValueError(f"{what}: hidden size {hidden} is not a standard SiT size; set the option num_heads")
    if out not in (patch * patch * in_ch, 2 * patch * patch * in_ch):
        raise ValueError(f"{what}: final_layer.linear has {out} outputs, expected {patch * patch * in_ch} or "
                         f"{2 * patch * patch * in_ch}")
    # a table of 1001 rows = 1000 classes + the null row (the official checkpoints are trained with label dropout)
    return DiTConfig(input_size=grid * patch, patch_size=patch, in_channels=in_ch, hidden_size=hidden, depth=depth,
                     num_heads=heads, mlp_ratio=fc1 / hidden, num_classes=table - 1,
                     learn_sigma=out == 2 * patch * patch * in_ch, null_row=True)


class SiT(Generator):
    """SiT as a `Generator` (see the module doc for every convention)."""
    family = "flow"
    version = "sit-1"
    Options = SiTOptions
    solvers = samplers.SOLVERS
    guidance = ("cfg = guidance scale w: true CFG with null class 1000 on the first 3 latent channels as in the "
                "paper's code (option cfg_channels: all for every channel); cfg 1 = none; 2 NFE per evaluation "
                "otherwise")

    def __init__(self) -> None:
        self.net: DiT | None = None
        self.decoder: LatentDecoder | None = None
        self.device = torch.device("cpu")
        self.opts = self.parse_options({})

    # ------------------------------------------------------------------ loading
    @classmethod
    def from_network(cls, net: DiT, decoder: LatentDecoder | None, options: dict | None = None,
                     device: torch.device | str = "cpu") -> "SiT":
        """An adapter around a network already built (tests, notebooks); ``decoder`` None: latents only."""
        self = cls()
        self.opts = self.parse_options(options)
        self.device = torch.device(device)
        self.net = frozen(net, self.device)
        self.decoder = decoder
        return self

    def _weights_path(self, spec: ModelSpec) -> Path:
        opts = self.parse_options(spec.options)
        return resolve_weights(spec.weights or DEFAULT_WEIGHTS, what="SiT weights", filename=opts.weights_file)

    def weights_id(self, spec: ModelSpec) -> str:
        from bench.provenance import sha256_path
        return "sha256:" + sha256_path(self._weights_path(spec))

    def requirements(self, spec: ModelSpec) -> list:
        """The checkpoint (a file, a folder holding ``weights_file``, or a hub id) and the SD-VAE decoder."""
        from bench.preflight import weights
        opts = self.parse_options(spec.options)
        return [weights(spec.weights or DEFAULT_WEIGHTS, "SiT weights", filename=opts.weights_file, get=WEIGHTS_GET),
                *vae_requirements(opts.vae)]

    def load(self, spec: ModelSpec, device: torch.device) -> None:
        self.opts = self.parse_options(spec.options)
        path = self._weights_path(spec)
        sd = read_checkpoint(path, "SiT weights")
        net = DiT(config_from_state_dict(sd, self.opts.num_heads, str(path)))
        load_strict(net, sd, f"SiT weights {path}")
        self.device = torch.device(device)
        self.net = frozen(net, self.device)
        self.decoder = LatentDecoder.load(self.opts.vae, self.device, batch_size=self.opts.vae_batch_size)

    def networks(self) -> list[nn.Module]:
        return [self._require()]

    def _require(self) -> DiT:
        if self.net is None:
            raise RuntimeError("sit: call load() before generating")
        return self.net

    # ------------------------------------------------------------------ settings
    def _solver(self, s: SamplerSettings) -> str:
        return s.solver or "euler"

    def _check(self, s: SamplerSettings) -> None:
        check_settings("sit", s, self.solvers)
        if self._solver(s) == "sde" and s.steps < 2:
            raise ValueError(f"sit: the sde solver needs steps >= 2, got {s.steps}")

    def nfe_per_image(self, s: SamplerSettings) -> float:
        """N (euler, sde) or 2N (heun), doubled with CFG; NaN for dopri5 (adaptive: only the count is real)."""
        self._check(s)
        evals = samplers.declared_evals(self._solver(s), int(s.steps))
        if evals is None:
            return float("nan")
        return evals * (1 if float(s.cfg) == 1.0 else 2)

    # ------------------------------------------------------------------ sampling
    def velocity_fn(self, labels: torch.Tensor, w: float):
        """f(x, t) -> guided velocity (B, C, H, W) for labels (B,) at guidance w (the learned-sigma half dropped)."""
        net = self._require()
        c = net.in_channels
        if w == 1.0:
            return lambda x, t: net(x, t, labels)[:, :c]
        if net.null_label is None:
            raise ValueError("sit: this network has no null-class row (trained without label dropout); use cfg 1")
        null = torch.full_like(labels, net.null_label)
        y2 = torch.cat([labels, null])
        k = 3 if self.opts.cfg_channels == 3 else c

        def guided(x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
            out = net(torch.cat([x, x]), torch.cat([t, t]), y2)[:, :c]
            cond, uncond = out.chunk(2)
            # channels >= k keep the conditional velocity, as forward_with_cfg's untouched "rest" does
            return torch.cat([uncond[:, :k] + w * (cond[:, :k] - uncond[:, :k]), cond[:, k:]], dim=1)
        return guided

    def sample_latents(self, labels: torch.Tensor, sample_ids: torch.Tensor, s: SamplerSettings) -> torch.Tensor:
        """Final SD-VAE latents (B, C, H, W) (not yet divided by the VAE scale), row k from (s.seed, sample_ids[k])."""
        with torch.inference_mode():
            return self._sample(labels, sample_ids, s)

    def _sample(self, labels: torch.Tensor, sample_ids: torch.Tensor, s: SamplerSettings) -> torch.Tensor:
        self._check(s)
        net = self._require()
        cfg = net.config
        labels, ids = class_inputs("sit", labels, sample_ids, cfg.num_classes, self.device)
        shape = (cfg.in_channels, cfg.input_size, cfg.input_size)
        x = noise.gaussian(s.seed, ids, shape, stream=INIT_STREAM, device=self.device)
        f = self.velocity_fn(labels, float(s.cfg))
        solver, o = self._solver(s), self.opts
        if solver == "euler":
            return samplers.euler(f, x, samplers.time_grid(s.steps, 0.0, 1.0))
        if solver == "heun":
            return samplers.heun(f, x, samplers.time_grid(s.steps, 0.0, 1.0))
        if solver == "dopri5":
            return samplers.dopri5(lambda rows: self.velocity_fn(labels[rows], float(s.cfg)), x, 0.0, 1.0,
                                   atol=o.atol, rtol=o.rtol, per_sample=o.dopri5_per_sample)
        norm = o.sde_diffusion_norm

        def score_drift(x: torch.Tensor, t: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
            # D(t) * score for the Linear path with D(t) = norm * (1 - t): score = (t v - x) / (1 - t)
            return norm * (t.view(-1, 1, 1, 1) * v - x)

        return samplers.euler_maruyama(
            f, score_drift, lambda t: norm * (1 - t), x, int(s.steps), 0.0, 1.0, o.sde_last_step_size,
            lambda k: noise.gaussian(s.seed, ids, shape, stream=sde_stream(k), device=self.device))

    def generate(self, labels: torch.Tensor, sample_ids: torch.Tensor, s: SamplerSettings) -> torch.Tensor:
        if self.decoder is None:
            raise RuntimeError("sit: no latent decoder (built with from_network(decoder=None)); use sample_latents")
        with torch.inference_mode():
            return self.decoder.decode(self.sample_latents(labels, sample_ids, s))
