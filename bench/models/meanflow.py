"""MeanFlow (Geng et al. 2025) on SD-VAE latents, and the adapter base shared by MeanFlow, iMF and SoFlow.

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

Our names are DiT's (bench/models/dit.py) plus ``h_embedder.mlp.{0,2}`` for the second time embedding.
Randomness: bench.noise stream ``latent/init`` (shared by MeanFlow, iMF and SoFlow, so the same sample id starts
from the same latent noise in all three), drawn in NCHW (4, 32, 32).
"""

from __future__ import annotations

import math
import numbers
import re
from dataclasses import fields, replace
from pathlib import Path
from typing import Any

import torch
from torch import nn

from bench import noise
from bench.hub import resolve_weights
from bench.models import dit
from bench.models.base import ModelSpec, SamplerSettings
from bench.models.latent import SCALE, LatentDecoder

INIT_STREAM = "latent/init"
NUM_CLASSES = 1000

# depth, hidden, heads of the reference's DiT_* configs (models_dit.py); "M" is MeanFlow's/SoFlow's extra size
MF_SHAPES = {"B": (12, 768, 12), "M": (16, 1024, 16), "L": (24, 1024, 16), "XL": (28, 1152, 16)}


def dit_size(name: str, shapes: dict[str, tuple[int, int, int]], what: str, **overrides) -> dit.DiTConfig:
    """A DiTConfig for a size name like "B/4", "XL/2", "MF-B/4" or "XL-2-cond"."""
    key = re.sub(r"^(MF|iMF|DiT|SoFlow)-", "", str(name)).removesuffix("-cond").replace("-", "/")
    kind, _, patch = key.partition("/")
    if kind not in shapes or patch not in ("2", "4", "8"):
        raise ValueError(f"{what}: unknown size {name!r}; expected one of "
                         f"{[f'{k}/{p}' for k in shapes for p in (2, 4)]}")
    depth, hidden, heads = shapes[kind]
    return replace(dit.DiTConfig(depth=depth, hidden_size=hidden, num_heads=heads, patch_size=int(patch),
                                 learn_sigma=False), **overrides)


def config_from_option(arch: Any, shapes: dict, what: str) -> dit.DiTConfig:
    """``arch`` option: a size name, or a mapping of DiTConfig fields (tests, custom sizes)."""
    if isinstance(arch, dict):
        known = {f.name for f in fields(dit.DiTConfig)}
        bad = sorted(set(arch) - known)
        if bad:
            raise ValueError(f"{what}: unknown arch field(s) {bad}; known: {sorted(known)}")
        return dit.DiTConfig(**{"learn_sigma": False, **arch})
    return dit_size(str(arch), shapes, what)


# ---------------------------------------------------------------------------------------------- checkpoints
def read_checkpoint(path: Path, what: str) -> dict[str, torch.Tensor]:
    """A model state dict from safetensors or ``torch.load(weights_only=True)``, unwrapping the training-state
    entries the references use ("ema_model" for SoFlow, "ema" / "model" / "state_dict" elsewhere; EMA first)."""
    path = Path(path)
    if path.is_dir():
        raise ValueError(f"{what}: {str(path)!r} is a folder; give the checkpoint file inside it")
    if path.suffix == ".safetensors":
        from safetensors.torch import load_file
        return load_file(str(path))
    try:
        obj = torch.load(str(path), map_location="cpu", weights_only=True)
    except Exception as e:   # noqa: BLE001 - pickled objects, truncated files: one message
        raise ValueError(f"{what}: cannot read {str(path)!r} as a safetensors file or a weights-only torch "
                         f"checkpoint ({type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''})") from e
    if isinstance(obj, dict) and isinstance(obj.get("ema_model"), dict):
        obj = obj["ema_model"]
    sd = dit.unwrap_state_dict(obj, what)
    bad = [k for k, v in sd.items() if not torch.is_tensor(v)]
    if bad:
        raise ValueError(f"{what}: {str(path)!r} entry {bad[0]!r} is not a tensor; not a model state dict")
    return sd


def safetensors_metadata(path: Path) -> dict[str, str]:
    if Path(path).suffix != ".safetensors":
        return {}
    from safetensors import safe_open
    with safe_open(str(path), framework="pt") as f:
        return dict(f.metadata() or {})


def load_strict(net: nn.Module, sd: dict[str, torch.Tensor], what: str) -> None:
    """load_state_dict(strict=True) with one readable line on a mismatch (first missing / unexpected / shape)."""
    check_fits(net.state_dict(), sd, what)
    net.load_state_dict({k: v.float() if v.is_floating_point() else v for k, v in sd.items()}, strict=True)


def check_fits(own: dict[str, torch.Tensor], sd: dict[str, torch.Tensor], what: str) -> None:
    """Raise one readable line unless ``sd`` has exactly the names and shapes of ``own`` (a state dict, meta ok)."""
    missing = [k for k in own if k not in sd]
    extra = [k for k in sd if k not in own]
    shape = [k for k in own if k in sd and tuple(sd[k].shape) != tuple(own[k].shape)]
    if missing or extra or shape:
        parts = []
        if missing:
            parts.append(f"{len(missing)} missing (first {missing[0]!r})")
        if extra:
            parts.append(f"{len(extra)} unexpected (first {extra[0]!r})")
        if shape:
            k = shape[0]
            parts.append(f"{len(shape)} with other shapes (first {k!r}: file {tuple(sd[k].shape)}, "
                         f"model {tuple(own[k].shape)})")
        raise ValueError(f"{what}: checkpoint does not fit the network: " + "; ".join(parts)
                         + " (wrong arch option, or an unconverted checkpoint?)")


# ---------------------------------------------------------------------------------------------- adapter base
class LatentClassGenerator:
    """Shared adapter plumbing for class-conditional SD-VAE latent models (MeanFlow, iMF, SoFlow).

    Subclasses give ``build(options, metadata)`` (the network), ``sample_latents`` (the sampler) and the
    declarations below. Options common to all: ``arch`` (size name or DiTConfig fields), ``vae`` (ft-mse,
    ft-ema, a hub id or a local folder), ``vae_batch_size``.
    """
    family = ""
    version = ""
    solvers: tuple[str, ...] = ()
    sweeps = True
    guidance = ""                   # how the suite's cfg axis maps onto this model (shown by `bench validate`)
    cfg_ignored = False             # True: the cfg axis has no effect on the images
    default_arch = ""
    vae_scale = SCALE
    extra_options: tuple[str, ...] = ()
    common_options = ("arch", "vae", "vae_batch_size")

    def __init__(self) -> None:
        self.net: nn.Module | None = None
        self.decoder: LatentDecoder | None = None
        self.device = torch.device("cpu")
        self.options: dict[str, Any] = {}

    @property
    def name(self) -> str:
        return self.__class__.__name__

    # ------------------------------------------------------------------ subclass hooks
    def build(self, options: dict[str, Any], metadata: dict[str, str]) -> nn.Module:
        raise NotImplementedError

    def sample_latents(self, labels: torch.Tensor, sample_ids: torch.Tensor, s: SamplerSettings) -> torch.Tensor:
        raise NotImplementedError

    def latents_for_vae(self, z: torch.Tensor) -> torch.Tensor:
        """Sampler latents -> the VAE's latent space times ``vae_scale`` (LatentDecoder divides by it)."""
        return z

    # ------------------------------------------------------------------ loading
    def check_options(self, options: dict[str, Any]) -> dict[str, Any]:
        known = self.common_options + self.extra_options
        for k in options:
            if k not in known:
                from bench.registry import hint
                raise ValueError(f"{self.name}: unknown model option {k!r} ({hint(k, known)})")
        return dict(options)

    def weights_path(self, spec: ModelSpec) -> Path:
        if not spec.weights:
            raise ValueError(f"{self.name}: model {spec.id!r} needs weights: a local file, $ENV/path or hf://org/name/file")
        return resolve_weights(spec.weights, what=f"{self.name} weights for {spec.id!r}")

    def weights_id(self, spec: ModelSpec) -> str:
        from bench.provenance import sha256_path
        return "sha256:" + sha256_path(self.weights_path(spec))

    def load(self, spec: ModelSpec, device: torch.device) -> None:
        self.options = self.check_options(spec.options)
        path = self.weights_path(spec)
        net = self.build(self.options, safetensors_metadata(path))
        load_strict(net, read_checkpoint(path, f"{self.name} weights {str(path)!r}"),
                    f"{self.name} weights {str(path)!r}")
        self.set_network(net, device)
        self.decoder = LatentDecoder.load(self.options.get("vae"), self.device, scale=self.vae_scale,
                                          batch_size=int(self.options.get("vae_batch_size", 64)))

    def set_network(self, net: nn.Module, device: torch.device | str = "cpu") -> None:
        self.device = torch.device(device)
        self.net = net.to(self.device).eval()
        for p in self.net.parameters():
            p.requires_grad_(False)

    def networks(self) -> list[nn.Module]:
        return [self._require()]

    def _require(self) -> nn.Module:
        if self.net is None:
            raise RuntimeError(f"{self.name}: call load() before generating")
        return self.net

    # ------------------------------------------------------------------ settings and inputs
    def _check(self, s: SamplerSettings) -> None:
        if isinstance(s.steps, bool) or not isinstance(s.steps, numbers.Integral) or s.steps < 1:
            raise ValueError(f"{self.name}: steps must be an integer >= 1, got {s.steps!r}")
        if isinstance(s.cfg, bool) or not isinstance(s.cfg, numbers.Real) or not math.isfinite(s.cfg) or s.cfg < 0:
            raise ValueError(f"{self.name}: cfg must be a finite number >= 0, got {s.cfg!r}")
        if s.solver is not None and s.solver not in self.solvers:
            raise ValueError(f"{self.name}: unknown solver {s.solver!r}; expected one of {list(self.solvers)} "
                             f"(or none for the default {self.solvers[0]!r})")

    def latent_shape(self) -> tuple[int, int, int]:
        cfg = self._config()
        return (cfg.in_channels, cfg.input_size, cfg.input_size)

    def _config(self):
        return self._require().config

    def _inputs(self, labels, sample_ids, s: SamplerSettings) -> tuple[torch.Tensor, torch.Tensor]:
        self._check(s)
        labels = torch.as_tensor(labels).to(device=self.device, dtype=torch.long).reshape(-1)
        sample_ids = torch.as_tensor(sample_ids).reshape(-1)
        if labels.shape[0] != sample_ids.shape[0]:
            raise ValueError(f"{self.name}: {len(labels)} labels but {len(sample_ids)} sample ids")
        n_cls = self._config().num_classes
        if labels.numel() and (int(labels.min()) < 0 or int(labels.max()) >= n_cls):
            raise ValueError(f"{self.name}: labels must be in 0..{n_cls - 1}, got {int(labels.min())}.."
                             f"{int(labels.max())}")
        z = noise.gaussian(s.seed, sample_ids.cpu(), self.latent_shape(), stream=INIT_STREAM, device=self.device)
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


# ---------------------------------------------------------------------------------------------- network
class MeanFlowDiT(dit.DiT):
    """The reference's ``DiT`` with a second time embedding: forward(x, t, h, y), h = t - r."""

    def __init__(self, config: dit.DiTConfig):
        super().__init__(config)
        self.h_embedder = dit.TimestepEmbedder(config.hidden_size)

    def forward(self, x: torch.Tensor, t: torch.Tensor, h: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        c = self.t_embedder(t) + self.h_embedder(h) + self.y_embedder(y)
        return self.trunk(x, c)


class MeanFlow(LatentClassGenerator):
    """MeanFlow: average-velocity jumps, baked guidance, optional inference CFG on top (2 NFE per step)."""
    family = "meanflow"
    version = "meanflow-1"
    solvers = ("jump",)
    default_arch = "B/4"
    guidance = ("guidance baked into training; cfg = optional inference CFG on the average velocity with null "
                "class 1000 (cfg 1 = none; 2 NFE per step otherwise)")

    def build(self, options: dict[str, Any], metadata: dict[str, str]) -> nn.Module:
        arch = options.get("arch", metadata.get("arch", self.default_arch))
        if isinstance(arch, str) and arch.startswith("{"):
            import json
            arch = json.loads(arch)
        return MeanFlowDiT(config_from_option(arch, MF_SHAPES, f"{self.name} arch"))

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
