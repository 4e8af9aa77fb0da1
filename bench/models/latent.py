"""SD-VAE latent decoding, and the adapter base of the class-conditional SD-VAE latent models (MeanFlow, iMF,
SoFlow; SiT uses the decoder only).

Decoding: diffusers' `AutoencoderKL` (default `stabilityai/sd-vae-ft-mse`; `stabilityai/sd-vae-ft-ema`
selectable), latents divided by the scale 0.18215, decoded in batches, quantised as DiT/SiT do: clamp(127.5 x +
128) to uint8 (that is `to_uint8_nhwc`, which rounds the same way).

`LatentClassGenerator`: options ``arch`` (a size name or a mapping of config fields, checked against the
subclass's sizes at validation; None: the ``arch`` recorded in a safetensors file's metadata, else the
subclass's ``default_arch``), ``vae`` (ft-mse, ft-ema, a hub id or a local folder), ``vae_batch_size``. The
initial latent of sample id i is drawn from bench.noise stream ``latent/init`` (shared by MeanFlow, iMF and
SoFlow, so the same sample id starts from the same latent noise in all three), in NCHW.
"""

from __future__ import annotations

import json
from abc import abstractmethod
from pathlib import Path
from typing import Annotated, Any, ClassVar

import torch
from pydantic import Field
from torch import nn

from bench import noise
from bench.hub import resolve_weights
from bench.models.base import Generator, ModelSpec, SamplerSettings, StrictOptions, frozen, to_uint8_nhwc
from bench.models.checkpoint import (
    check_settings,
    class_inputs,
    config_options,
    load_strict,
    read_checkpoint,
    safetensors_metadata,
)
from bench.nets.dit import DiTConfig

SD_VAE = {"ft-mse": "stabilityai/sd-vae-ft-mse", "ft-ema": "stabilityai/sd-vae-ft-ema"}
SCALE = 0.18215
INIT_STREAM = "latent/init"

# the fields of an ``arch`` mapping for the DiT-based latent models (MeanFlow, SoFlow): learn_sigma off
DiTArch = config_options(DiTConfig, learn_sigma=False)


class LatentDecoder:
    """Decode SD-VAE latents (N, 4, h, w) to uint8 NHWC images."""

    def __init__(self, vae: torch.nn.Module, scale: float = SCALE, batch_size: int = 64):
        self.vae, self.scale, self.batch_size = vae.eval(), scale, batch_size

    @classmethod
    def load(cls, source: str | None, device: torch.device, dtype: torch.dtype = torch.float32,
             scale: float = SCALE, batch_size: int = 64) -> "LatentDecoder":
        from diffusers import AutoencoderKL
        ref = SD_VAE.get(source or "ft-mse", source)
        path = resolve_weights(ref, what=f"SD-VAE {ref!r}")
        vae = AutoencoderKL.from_pretrained(path, torch_dtype=dtype)
        return cls(vae.to(device), scale, batch_size)

    @torch.inference_mode()
    def decode(self, z: torch.Tensor) -> torch.Tensor:
        p = next(self.vae.parameters())
        out = []
        for i in range(0, len(z), self.batch_size):
            x = self.vae.decode(z[i:i + self.batch_size].to(p.device, p.dtype) / self.scale).sample
            out.append(to_uint8_nhwc(x))
        return torch.cat(out)


def vae_requirements(source: str | None) -> list:
    """What decoding with the SD-VAE ``source`` needs (for `Generator.requirements`): its weights and diffusers."""
    from bench.preflight import package, weights
    ref = SD_VAE.get(source or "ft-mse", source)
    return [weights(ref, "SD-VAE decoder"), package("diffusers", "diffusers (the SD-VAE decoder)", "hf")]


class VAEOptions(StrictOptions):
    """The SD-VAE decoder's options: ``vae`` (ft-mse, ft-ema, a hub id or a local folder), its batch size."""
    vae: str = "ft-mse"
    vae_batch_size: Annotated[int, Field(ge=1)] = 64


class LatentOptions(VAEOptions):
    """Options of every `LatentClassGenerator`; a subclass narrows ``arch`` to its own sizes."""
    arch: str | dict[str, Any] | None = None


class LatentClassGenerator(Generator):
    """Shared adapter plumbing for class-conditional SD-VAE latent models (MeanFlow, iMF, SoFlow).

    Subclasses give ``build(arch)`` (the network for an arch value), ``sample_latents`` (the sampler),
    ``nfe_per_image``, their ``Options`` and the declarations of `Generator`.
    """
    Options = LatentOptions
    solvers: ClassVar[tuple[str, ...]] = ()
    default_arch: ClassVar[str] = ""
    vae_scale: ClassVar[float] = SCALE
    weights_source: ClassVar[str] = ""          # where the official weights are published (pre-flight messages)

    def __init__(self) -> None:
        self.net: nn.Module | None = None
        self.decoder: LatentDecoder | None = None
        self.device = torch.device("cpu")
        self.opts = self.parse_options({})

    @property
    def name(self) -> str:
        return self.__class__.__name__

    # ------------------------------------------------------------------ subclass hooks
    @abstractmethod
    def build(self, arch: str | dict[str, Any]) -> nn.Module:
        """The network (random weights) for an ``arch`` value: a size name or a mapping of config fields."""

    @abstractmethod
    def sample_latents(self, labels: torch.Tensor, sample_ids: torch.Tensor, s: SamplerSettings) -> torch.Tensor:
        """Final latents (B, C, H, W), row k from (s.seed, sample_ids[k])."""

    def latents_for_vae(self, z: torch.Tensor) -> torch.Tensor:
        """Sampler latents -> the VAE's latent space times ``vae_scale`` (LatentDecoder divides by it)."""
        return z

    # ------------------------------------------------------------------ loading
    def weights_path(self, spec: ModelSpec) -> Path:
        if not spec.weights:
            raise ValueError(f"{self.name}: model {spec.id!r} needs weights: a local file, $ENV/path or hf://org/name/file")
        return resolve_weights(spec.weights, what=f"{self.name} weights for {spec.id!r}")

    def weights_id(self, spec: ModelSpec) -> str:
        from bench.provenance import sha256_path
        return "sha256:" + sha256_path(self.weights_path(spec))

    def requirements(self, spec: ModelSpec) -> list:
        """The weights file (``weights`` is required here) and the SD-VAE decoder with diffusers."""
        from bench.preflight import unmet, weights
        what, get = f"{self.name} weights", self.weights_source
        need = weights(spec.weights, what, get=get) if spec.weights else \
            unmet(what, "no weights given: set the model's `weights:` to a local file, $ENV/path or hf://org/name/file",
                  get)
        return [need, *vae_requirements(self.parse_options(spec.options).vae)]

    def load(self, spec: ModelSpec, device: torch.device) -> None:
        self.opts = self.parse_options(spec.options)
        path = self.weights_path(spec)
        arch = self.opts.arch
        if arch is None:
            arch = safetensors_metadata(path).get("arch") or self.default_arch
            if arch.lstrip().startswith("{"):          # bench convert records the DiTConfig as JSON
                arch = json.loads(arch)
        net = self.build(arch)
        load_strict(net, read_checkpoint(path, f"{self.name} weights"), f"{self.name} weights {path}")
        self.set_network(net, device)
        self.decoder = LatentDecoder.load(self.opts.vae, self.device, scale=self.vae_scale,
                                          batch_size=self.opts.vae_batch_size)

    def set_network(self, net: nn.Module, device: torch.device | str = "cpu") -> None:
        self.device = torch.device(device)
        self.net = frozen(net, self.device)

    def networks(self) -> list[nn.Module]:
        return [self._require()]

    def _require(self) -> nn.Module:
        if self.net is None:
            raise RuntimeError(f"{self.name}: call load() before generating")
        return self.net

    # ------------------------------------------------------------------ settings and inputs
    def _check(self, s: SamplerSettings) -> None:
        check_settings(self.name, s, self.solvers)

    def latent_shape(self) -> tuple[int, int, int]:
        cfg = self._config()
        return (cfg.in_channels, cfg.input_size, cfg.input_size)

    def _config(self):
        return self._require().config

    def _inputs(self, labels, sample_ids, s: SamplerSettings) -> tuple[torch.Tensor, torch.Tensor]:
        self._check(s)
        labels, ids = class_inputs(self.name, labels, sample_ids, self._config().num_classes, self.device)
        z = noise.gaussian(s.seed, ids, self.latent_shape(), stream=INIT_STREAM, device=self.device)
        return labels, z

    @staticmethod
    def times(steps: int) -> list[float]:
        """The paper's N intervals: N + 1 time points linspace(1, 0, N + 1), t = 1 is noise."""
        return torch.linspace(1, 0, int(steps) + 1).tolist()

    def generate(self, labels: torch.Tensor, sample_ids: torch.Tensor, s: SamplerSettings) -> torch.Tensor:
        if self.decoder is None:
            raise RuntimeError(f"{self.name}: no VAE decoder; call load() first")
        with torch.inference_mode():
            z = self.sample_latents(labels, sample_ids, s)
            return self.decoder.decode(self.latents_for_vae(z.float()))
