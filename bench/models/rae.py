"""RAE adapter: DiT^DH-XL denoising DINOv2-B (registers) latents, decoded by the RAE ViT-XL pixel decoder.

Weights: ``nyu-visionx/RAE-collections`` (a hub id or a local copy of it; ``spec.weights``), files as the official
configs name them (configs/stage2/sampling/ImageNet256/DiTDHXL-DINOv2-B*.yaml, paths relative to ``models/``):

    stage2     DiTs/Dinov2/wReg_base/ImageNet256/DiTDH-XL/stage2_model.pt      (its "ema" entry when present)
    decoder    decoders/dinov2/wReg_base/ViTXL_n08/model.pt
    stats      stats/dinov2/wReg_base/imagenet1k/stat.pt                       {"mean", "var"} of the latents
    guide      DiTs/Dinov2/wReg_base/ImageNet256/DiTDH-S_ep14/stage2_model.pt  (autoguidance only)

Each can be overridden in ``spec.options`` (a path relative to the weights root, an absolute path, or
``hf://org/name/file``); ``.pt`` files load with ``weights_only=True``, ``.safetensors`` with safetensors.
``stage2_arch`` / ``decoder_arch`` / ``guide_arch`` override the network shapes (for small test networks).

Sampling, as the reference does it (src/sample_ddp.py, stage2/transport):
- latent (768, 16, 16) normalised per position: z_norm = (z - mean) / sqrt(var + 1e-5), decoded as
  z = z_norm * sqrt(var + 1e-5) + mean;
- path x_t = (1 - t) x_data + t noise, t = 1 is noise; the network predicts the velocity (noise - data);
- time grid: tau = 1 - linspace(0, 1 - 1/1000, N + 1) (the reference's ``num_steps`` = N + 1 time points, so
  ``s.steps`` = N intervals ends at tau = 0.001, not 0), shifted as t = a tau / (1 + (a - 1) tau) with
  a = sqrt(768 * 16 * 16 / 4096) = sqrt(48);
- Euler: x <- x + (t_next - t) v(x, t) (torchdiffeq's fixed-grid euler on that grid);
- guidance (``s.cfg`` = w, applied when w != 1; the reference only guides for w > 1): ``guidance: cfg`` (default,
  true CFG) v = v_null + w (v_cond - v_null) with the null class 1000, cond and null rows in one forward of 2B rows;
  ``guidance: autoguidance`` (the released best config, scale 1.42) v = v_guide + w (v - v_guide) with the small
  DiT^DH-S guide model, both class-conditional. Guidance applies where ``guidance_interval`` [t_min, t_max]
  (default [0, 1], the released configs' value) contains t; outside it only the main network runs (the reference
  runs and discards the extra half there; the result is the same).
- decode: pixels = decoder(tokens) * imagenet_std + imagenet_mean, clamp(0, 1), * 255, truncated to uint8
  (the reference's ``samples.mul(255).to(uint8)``). Output 256 x 256.

NFE per image = sum over steps of (2 if guidance is active at that step's t else 1); one forward of the stage-2
network (or of the guide) over B rows counts B. The decoder is not counted.

Randomness: initial noise only, ``bench.noise.gaussian(seed, ids, (768, 16, 16), stream="rae/init")``.
Encoding images (DINOv2-with-registers via transformers) is `RAEEncoder`; generation does not need it.
"""

from __future__ import annotations

import hashlib
import math
from pathlib import Path
from typing import Annotated, Any, Literal

import torch
from pydantic import Field
from torch import nn

from bench import noise
from bench.hub import parse_hub, resolve_weights
from bench.models.base import Generator, ModelSpec, SamplerSettings, StrictOptions, frozen
from bench.models.checkpoint import (
    check_interval,
    check_settings,
    class_inputs,
    config_option,
    config_options,
    interval_option,
    load_strict,
    read_checkpoint,
)
from bench.nets.rae import DECODER_XL, DITDH_S, DITDH_XL, DecoderConfig, DiTDH, DiTDHConfig, RAEDecoder
from bench.provenance import sha256_path

WEIGHTS = "nyu-visionx/RAE-collections"
FILES = {
    "stage2": "DiTs/Dinov2/wReg_base/ImageNet256/DiTDH-XL/stage2_model.pt",
    "decoder": "decoders/dinov2/wReg_base/ViTXL_n08/model.pt",
    "stats": "stats/dinov2/wReg_base/imagenet1k/stat.pt",
    "guide": "DiTs/Dinov2/wReg_base/ImageNet256/DiTDH-S_ep14/stage2_model.pt",
}
ENCODER = "facebook/dinov2-with-registers-base"
IMAGENET_MEAN = (0.485, 0.456, 0.406)     # the DINOv2 image processor's mean/std
IMAGENET_STD = (0.229, 0.224, 0.225)
NUM_CLASSES = 1000
STAT_EPS = 1e-5
SHIFT_BASE = 4096
T_END = 1 - 1 / 1000
INIT_STREAM = "rae/init"
GUIDANCE = ("cfg", "autoguidance")
UNIT = (0.0, 1.0)

_PAIR = int | list[int]        # [encoder, head] widths / depths / heads (one int: the same for both)
DiTDHArch = config_option(config_options(DiTDHConfig, types={"hidden_size": _PAIR, "depth": _PAIR,
                                                             "num_heads": _PAIR}),
                          lambda d: DiTDHConfig.from_dict(d), names=False)
DecoderArch = config_option(config_options(DecoderConfig), lambda d: DecoderConfig.from_dict(d), names=False)
WeightsFile = Annotated[str, Field(min_length=1)]
GuidanceInterval = interval_option(within=UNIT)


class RAEOptions(StrictOptions):
    """Weight files (relative to the weights root, absolute, or hf://...), guidance, test-size shapes."""
    stage2: WeightsFile = FILES["stage2"]
    decoder: WeightsFile = FILES["decoder"]
    stats: WeightsFile = FILES["stats"]
    guide: WeightsFile = FILES["guide"]
    guidance: Literal["cfg", "autoguidance"] = "cfg"
    guidance_interval: GuidanceInterval = [0.0, 1.0]
    stage2_arch: DiTDHArch = None          # None: the released DiT^DH-XL
    decoder_arch: DecoderArch = None       # None: the released ViT-XL decoder
    guide_arch: DiTDHArch = None           # None: the released DiT^DH-S guide
    decode_batch: Annotated[int, Field(ge=1)] = 64


def time_grid(steps: int, shift: float) -> torch.Tensor:
    """The reference's shifted time points (steps + 1 of them), float32, from 1 down to shift(0.001)."""
    tau = 1 - torch.linspace(0, T_END, steps + 1)
    return shift * tau / (1 + (shift - 1) * tau)


class RAEEncoder:
    """Images -> normalised RAE latents: DINOv2-with-registers (final LayerNorm without affine), patch tokens after
    the CLS and 4 register tokens, as (N, 768, 16, 16), normalised with the latent statistics."""

    def __init__(self, model: nn.Module, mean: torch.Tensor, var: torch.Tensor, input_size: int = 224):
        ln = model.layernorm
        ln.weight, ln.bias, ln.elementwise_affine = None, None, False
        self.model, self.mean, self.var, self.input_size = model.eval(), mean, var, input_size

    @classmethod
    def load(cls, mean: torch.Tensor, var: torch.Tensor, source: str = ENCODER,
             device: torch.device | str = "cpu") -> "RAEEncoder":
        from transformers import Dinov2WithRegistersModel
        path = resolve_weights(source, what=f"RAE encoder {source!r}")
        return cls(Dinov2WithRegistersModel.from_pretrained(path).to(device), mean, var)

    @torch.inference_mode()
    def encode(self, images: torch.Tensor) -> torch.Tensor:
        """images: float (N, 3, H, W) in [0, 1]."""
        x = images.float()
        if x.shape[-2:] != (self.input_size, self.input_size):
            x = nn.functional.interpolate(x, size=(self.input_size, self.input_size), mode="bicubic",
                                          align_corners=False)
        mean = torch.tensor(IMAGENET_MEAN, device=x.device).view(1, 3, 1, 1)
        std = torch.tensor(IMAGENET_STD, device=x.device).view(1, 3, 1, 1)
        skip = 1 + self.model.config.num_register_tokens        # CLS + registers
        tokens = self.model(pixel_values=(x - mean) / std).last_hidden_state[:, skip:]
        n, length, c = tokens.shape
        g = math.isqrt(length)
        z = tokens.transpose(1, 2).reshape(n, c, g, g)
        return (z - self.mean.to(z.device)) / torch.sqrt(self.var.to(z.device) + STAT_EPS)


class RAE(Generator):
    """RAE (DiT^DH-XL on DINOv2-B) class-conditional ImageNet 256 generator; see the module doc."""
    family = "flow"
    version = "rae-1"
    Options = RAEOptions
    solvers = ("euler",)
    guidance = ("cfg = guidance scale w: true CFG with the null class (option guidance: cfg, the default) or "
                "autoguidance by the DiT^DH-S guide (guidance: autoguidance), where guidance_interval holds t; "
                "cfg 1 = none; 2 NFE per guided step")

    def __init__(self) -> None:
        self.stage2: DiTDH | None = None
        self.guide: DiTDH | None = None
        self.decoder: RAEDecoder | None = None
        self.mean = self.var = None
        self.device = torch.device("cpu")
        self.method = "cfg"
        self.interval = UNIT
        self.decode_batch = 64
        self.files: dict[str, Path] = {}

    # ------------------------------------------------------------------ building
    def build(self, stage2: DiTDH, decoder: RAEDecoder, mean: torch.Tensor, var: torch.Tensor,
              device: torch.device | str = "cpu", guide: DiTDH | None = None, guidance: str = "cfg",
              guidance_interval=UNIT, decode_batch: int = 64) -> "RAE":
        """Use networks already in memory (tests, notebooks)."""
        if guidance not in GUIDANCE:
            raise ValueError(f"RAE: unknown guidance {guidance!r}; expected one of {list(GUIDANCE)}")
        if guidance == "autoguidance" and guide is None:
            raise ValueError("RAE: guidance 'autoguidance' needs a guide network (option 'guide')")
        lo, hi = check_interval(guidance_interval, "RAE: guidance_interval", within=UNIT)
        latent = (stage2.cfg.in_channels, stage2.cfg.input_size, stage2.cfg.input_size)
        if (decoder.cfg.latent_dim, decoder.cfg.grid, decoder.cfg.grid) != latent:
            raise ValueError(f"RAE: decoder takes {decoder.cfg.latent_dim} x {decoder.cfg.grid}^2 tokens, "
                             f"the stage-2 network makes latents {latent}")
        try:
            mean = torch.as_tensor(mean, dtype=torch.float32).broadcast_to((1, *latent))[0]
            var = torch.as_tensor(var, dtype=torch.float32).broadcast_to((1, *latent))[0]
        except RuntimeError as err:
            raise ValueError(f"RAE: latent statistics of shape {tuple(torch.as_tensor(mean).shape)} do not "
                             f"broadcast to the latent shape {latent}") from err
        self.device = torch.device(device)
        self.stage2 = frozen(stage2, self.device)
        self.guide = frozen(guide, self.device) if guide is not None else None
        self.decoder = frozen(decoder, self.device)
        self.mean, self.var = mean.to(self.device), var.to(self.device)
        self.method, self.interval, self.decode_batch = guidance, (lo, hi), int(decode_batch)
        return self

    def _file(self, root: str | None, key: str, ref: str) -> Path:
        root = root or WEIGHTS
        what = f"RAE {key} weights"
        if Path(ref).is_absolute() or ref.startswith(("hf://", "$")):
            return resolve_weights(ref, what=what)
        local = Path(root).expanduser()
        if local.is_dir():
            return resolve_weights(str(local), what=what, filename=ref)
        if parse_hub(root) is None:
            return resolve_weights(root, what=what)     # gives the one clear "not found" error
        return resolve_weights(f"hf://{root}/{ref}", what=what)

    def _resolve(self, spec: ModelSpec) -> tuple[RAEOptions, dict[str, Path]]:
        """(typed options, weight files) for a spec: stage2, decoder, stats, and guide with autoguidance."""
        o = self.parse_options(spec.options)
        keys = ["stage2", "decoder", "stats"] + (["guide"] if o.guidance == "autoguidance" else [])
        return o, {k: self._file(spec.weights, k, getattr(o, k)) for k in keys}

    def _net(self, cls, cfg, key: str, allow_extra: bool = False) -> nn.Module:
        net = cls(cfg)
        path = self.files[key]
        load_strict(net, read_checkpoint(path, f"RAE {key}"), f"RAE {key} {path}", allow_extra=allow_extra)
        return net

    def load(self, spec: ModelSpec, device: torch.device) -> None:
        o, self.files = self._resolve(spec)
        stage2 = self._net(DiTDH, DiTDHConfig.from_dict(o.stage2_arch) if o.stage2_arch else DITDH_XL, "stage2")
        # the reference loads the decoder non-strictly: extra entries in the file are ignored, missing ones are not
        decoder = self._net(RAEDecoder, DecoderConfig.from_dict(o.decoder_arch) if o.decoder_arch else DECODER_XL,
                            "decoder", allow_extra=True)
        stats = read_checkpoint(self.files["stats"], "RAE stats")
        if "mean" not in stats or "var" not in stats:
            raise ValueError(f"RAE stats: {self.files['stats']} needs 'mean' and 'var', has {sorted(stats)}")
        guide = None
        if o.guidance == "autoguidance":
            guide = self._net(DiTDH, DiTDHConfig.from_dict(o.guide_arch) if o.guide_arch else DITDH_S, "guide")
        self.build(stage2, decoder, stats["mean"], stats["var"], device, guide=guide, guidance=o.guidance,
                   guidance_interval=o.guidance_interval, decode_batch=o.decode_batch)

    def requirements(self, spec: ModelSpec) -> list:
        """The weight files this spec uses, found as `_file` finds them: files relative to the weights root (a
        folder or hub repo, checked together) and absolute or hub files on their own."""
        from bench.preflight import weights
        o = self.parse_options(spec.options)
        root = spec.weights or WEIGHTS
        keys = ["stage2", "decoder", "stats"] + (["guide"] if o.guidance == "autoguidance" else [])
        own = [k for k in keys if Path(getattr(o, k)).is_absolute() or getattr(o, k).startswith(("hf://", "$"))]
        rel = tuple(getattr(o, k) for k in keys if k not in own)
        out = [weights(getattr(o, k), f"RAE {k}") for k in own]
        if rel:
            out.insert(0, weights(root, "RAE " + ", ".join(k for k in keys if k not in own), filename=rel,
                                  get=f"the files of huggingface.co/{WEIGHTS}"))
        return out

    def weights_id(self, spec: ModelSpec) -> str:
        """sha256 over the weight files this spec uses (stage2, decoder, stats[, guide]), in a fixed order."""
        _, files = self._resolve(spec)
        h = hashlib.sha256(b"rae/1")
        for k in sorted(files):
            h.update(f"{k}={sha256_path(files[k])};".encode())
        return "sha256:" + h.hexdigest()

    def networks(self) -> list[nn.Module]:
        if self.stage2 is None:
            raise RuntimeError("RAE: call load() before generating")
        return [self.stage2] + ([self.guide] if self.method == "autoguidance" else [])

    # ------------------------------------------------------------------ sampling
    @property
    def shift(self) -> float:
        c = self.stage2.cfg
        return math.sqrt(c.in_channels * c.input_size ** 2 / SHIFT_BASE)

    def _check(self, s: SamplerSettings) -> None:
        check_settings("RAE", s, self.solvers)

    def _guided_steps(self, s: SamplerSettings) -> list[bool]:
        ts = time_grid(int(s.steps), self.shift)[:-1].tolist()
        if float(s.cfg) == 1.0:
            return [False] * len(ts)
        lo, hi = self.interval
        return [lo <= t <= hi for t in ts]

    def nfe_per_image(self, s: SamplerSettings) -> int:
        self._check(s)
        return sum(2 if g else 1 for g in self._guided_steps(s))

    def velocity(self, x: torch.Tensor, t: float, y: torch.Tensor, w: float, guided: bool) -> torch.Tensor:
        b = x.shape[0]
        tt = torch.full((b,), t, device=x.device, dtype=torch.float32)
        if not guided:
            return self.stage2(x, tt, y)
        if self.method == "autoguidance":
            v, vg = self.stage2(x, tt, y), self.guide(x, tt, y)
            return vg + w * (v - vg)
        null_y = torch.full_like(y, self.stage2.cfg.num_classes)        # the null class row of the label table
        out = self.stage2(torch.cat([x, x]), torch.cat([tt, tt]), torch.cat([y, null_y]))
        cond, null = out[:b], out[b:]
        return null + w * (cond - null)

    def sample_latents(self, labels: torch.Tensor, sample_ids: torch.Tensor, s: SamplerSettings) -> torch.Tensor:
        self._check(s)
        if self.stage2 is None:
            raise RuntimeError("RAE: call load() before generating")
        c = self.stage2.cfg
        y, ids = class_inputs("RAE", labels, sample_ids, c.num_classes, self.device)
        x = noise.gaussian(s.seed, ids, (c.in_channels, c.input_size, c.input_size), stream=INIT_STREAM,
                           device=self.device)
        ts = time_grid(int(s.steps), self.shift).tolist()
        w = float(s.cfg)
        for k, guided in enumerate(self._guided_steps(s)):
            v = self.velocity(x, ts[k], y, w, guided)
            x = x + (ts[k + 1] - ts[k]) * v.float()
        return x

    @torch.inference_mode()
    def decode(self, z: torch.Tensor) -> torch.Tensor:
        """Normalised latents (N, 768, 16, 16) -> uint8 NHWC, as the reference quantises (truncation)."""
        out = []
        mean = torch.tensor(IMAGENET_MEAN, device=self.device).view(1, 3, 1, 1)
        std = torch.tensor(IMAGENET_STD, device=self.device).view(1, 3, 1, 1)
        for i in range(0, len(z), self.decode_batch):
            zi = z[i:i + self.decode_batch].float() * torch.sqrt(self.var + STAT_EPS) + self.mean
            img = self.decoder(zi.flatten(2).transpose(1, 2)).float() * std + mean
            out.append((img.clamp(0, 1) * 255).to(torch.uint8).permute(0, 2, 3, 1).contiguous().cpu())
        return torch.cat(out) if out else torch.empty((0, 0, 0, 3), dtype=torch.uint8)

    def generate(self, labels: torch.Tensor, sample_ids: torch.Tensor, s: SamplerSettings) -> torch.Tensor:
        with torch.inference_mode():
            return self.decode(self.sample_latents(labels, sample_ids, s))

    def describe(self) -> dict[str, Any]:
        return {"guidance": self.method, "guidance_interval": list(self.interval), "time_shift": self.shift}
