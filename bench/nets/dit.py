"""DiT / SiT transformer backbone, written here, with the parameter names and shapes of the official checkpoints.

The module tree reproduces facebookresearch/DiT and willisma/SiT ``models.py`` name for name, so their
``.pt`` state dicts load with ``load_state_dict(strict=True)`` and no renaming:

    x_embedder.proj.{weight,bias}                 PatchEmbed: Conv2d(in_channels, hidden, p, stride=p)
    pos_embed                                     (1, T, hidden) fixed 2-D sin-cos table. The references keep it
                                                  as an ``nn.Parameter(requires_grad=False)``, so it IS in their
                                                  checkpoints; here it is a persistent buffer (same name, shape,
                                                  values), rebuilt at construction and overwritten on load.
    t_embedder.mlp.{0,2}.{weight,bias}            sinusoidal(256) -> Linear -> SiLU -> Linear
    y_embedder.embedding_table.weight             (num_classes + 1, hidden): the extra last row (id num_classes,
                                                  1000 for ImageNet) is the null class used for CFG
    blocks.N.attn.{qkv,proj}.{weight,bias}        multi-head self-attention (qkv with bias)
    blocks.N.mlp.{fc1,fc2}.{weight,bias}          MLP, GELU(tanh), ratio 4
    blocks.N.adaLN_modulation.1.{weight,bias}     SiLU -> Linear(hidden, 6 hidden): shift/scale/gate for attn, mlp
    final_layer.linear.{weight,bias}              Linear(hidden, p * p * out_channels)
    final_layer.adaLN_modulation.1.{weight,bias}  SiLU -> Linear(hidden, 2 hidden): shift/scale

LayerNorms have no affine parameters (eps 1e-6), exactly as in the references. ``out_channels`` is
``2 * in_channels`` when ``learn_sigma`` (DiT's learned variance; SiT-XL/2-256 keeps it: 8 output channels of
which only the first 4 are the velocity), else ``in_channels``. `DiT.forward` returns ALL output channels; the
caller picks what it needs (`DiT.split_sigma`).

Building blocks for other networks (MeanFlow, iMF, SoFlow: bench/nets/meanflow.py, imf.py, soflow.py):
`PatchEmbed`, `TimestepEmbedder`, `LabelEmbedder`, `Attention`, `Mlp`, `DiTBlock`, `FinalLayer`,
`sincos_pos_embed_2d`, `modulate`, and the configurable backbone `DiT` built from a `DiTConfig`. A model with
other conditioning inputs subclasses `DiT`, adds its embedders and overrides `DiT.condition` (returns the (N,
hidden) vector c fed to every adaLN); the patchify -> blocks -> final layer -> unpatchify trunk is `DiT.trunk`.

Sizes (`SIZES`, names as in the references): S, B, L, XL with patch 2, 4 or 8, e.g. ``DiTConfig.of("XL/2")``.
`dit_size` / `config_from_option` read the size names and field mappings of other families' size tables
(learn_sigma off), as their ``arch`` options give them.

Network definitions only: no file I/O (checkpoints are read by bench/models/checkpoint.py).
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass, fields, replace
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

# depth, hidden size, heads (patch size comes from the name's "/p"); as in DiT/SiT models.py
_SHAPES = {"S": (12, 384, 6), "B": (12, 768, 12), "L": (24, 1024, 16), "XL": (28, 1152, 16)}
SIZES = tuple(f"{s}/{p}" for s in _SHAPES for p in (2, 4, 8))


def modulate(x: torch.Tensor, shift: torch.Tensor, scale: torch.Tensor) -> torch.Tensor:
    """adaLN modulation of tokens (N, T, D) by per-sample (N, D) shift and scale: x * (1 + scale) + shift."""
    return x * (1 + scale.unsqueeze(1)) + shift.unsqueeze(1)


def sincos_pos_embed_2d(dim: int, grid_size: int) -> torch.Tensor:
    """Fixed 2-D sin-cos position table (grid_size**2, dim), float32, MAE/DiT layout.

    Token k sits at row k // grid_size, column k % grid_size. The first dim/2 channels encode the column
    (DiT's meshgrid puts w first), the second dim/2 the row; each half is [sin(pos * omega), cos(pos * omega)]
    with omega_i = 10000 ** (-i / (dim / 4)), computed in float64 then cast to float32.
    """
    if dim % 4:
        raise ValueError(f"sincos_pos_embed_2d: dim must be divisible by 4, got {dim}")
    omega = 1.0 / 10000 ** (torch.arange(dim // 4, dtype=torch.float64) / (dim / 4))
    pos = torch.arange(grid_size, dtype=torch.float64)
    col = pos.repeat(grid_size)                   # w index of token k
    row = pos.repeat_interleave(grid_size)        # h index of token k

    def one_d(p: torch.Tensor) -> torch.Tensor:
        out = p[:, None] * omega[None]
        return torch.cat([torch.sin(out), torch.cos(out)], dim=1)

    return torch.cat([one_d(col), one_d(row)], dim=1).float()


class PatchEmbed(nn.Module):
    """(N, C, H, W) -> (N, T, D) tokens by a p x p stride-p convolution (``proj``), T = (H / p) * (W / p)."""

    def __init__(self, input_size: int, patch_size: int, in_channels: int, hidden_size: int):
        super().__init__()
        if input_size % patch_size:
            raise ValueError(f"PatchEmbed: input_size {input_size} is not a multiple of patch_size {patch_size}")
        self.patch_size = patch_size
        self.grid_size = input_size // patch_size
        self.num_patches = self.grid_size ** 2
        self.proj = nn.Conv2d(in_channels, hidden_size, kernel_size=patch_size, stride=patch_size, bias=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.proj(x).flatten(2).transpose(1, 2)


class TimestepEmbedder(nn.Module):
    """Scalar times (N,) -> (N, D): a sinusoidal feature of ``frequency_embedding_size`` then ``mlp``.

    The time is used as given (no rescaling): SiT feeds t in [0, 1], DiT feeds integer steps 0..999.
    """

    def __init__(self, hidden_size: int, frequency_embedding_size: int = 256):
        super().__init__()
        self.frequency_embedding_size = frequency_embedding_size
        self.mlp = nn.Sequential(nn.Linear(frequency_embedding_size, hidden_size, bias=True), nn.SiLU(),
                                 nn.Linear(hidden_size, hidden_size, bias=True))

    @staticmethod
    def sinusoidal(t: torch.Tensor, dim: int, max_period: float = 10000.0) -> torch.Tensor:
        """[cos(t * f_i), sin(t * f_i)] with f_i = max_period ** (-i / (dim // 2)), in float32 (GLIDE layout)."""
        half = dim // 2
        freqs = torch.exp(-math.log(max_period) * torch.arange(half, dtype=torch.float32, device=t.device) / half)
        args = t.reshape(-1, 1).float() * freqs[None]
        emb = torch.cat([torch.cos(args), torch.sin(args)], dim=-1)
        if dim % 2:
            emb = torch.cat([emb, torch.zeros_like(emb[:, :1])], dim=-1)
        return emb

    def forward(self, t: torch.Tensor) -> torch.Tensor:
        emb = self.sinusoidal(t, self.frequency_embedding_size)
        return self.mlp(emb.to(self.mlp[0].weight.dtype))


class LabelEmbedder(nn.Module):
    """Class ids (N,) -> (N, D) by ``embedding_table``; id ``num_classes`` (the extra last row) is the null class.

    Inference only: no random label dropout; pass `null_label` yourself for the unconditional branch.
    ``null_row=False`` builds a table without the extra row (a model trained without label dropout).
    """

    def __init__(self, num_classes: int, hidden_size: int, null_row: bool = True):
        super().__init__()
        self.num_classes = num_classes
        self.null_label = num_classes if null_row else None
        self.embedding_table = nn.Embedding(num_classes + int(null_row), hidden_size)

    def forward(self, labels: torch.Tensor) -> torch.Tensor:
        return self.embedding_table(labels)


class Attention(nn.Module):
    """Multi-head self-attention with a fused ``qkv`` projection (bias) and ``proj`` (timm's Attention layout)."""

    def __init__(self, dim: int, num_heads: int):
        super().__init__()
        if dim % num_heads:
            raise ValueError(f"Attention: hidden size {dim} is not divisible by num_heads {num_heads}")
        self.num_heads = num_heads
        self.qkv = nn.Linear(dim, dim * 3, bias=True)
        self.proj = nn.Linear(dim, dim, bias=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        n, t, d = x.shape
        qkv = self.qkv(x).reshape(n, t, 3, self.num_heads, d // self.num_heads).permute(2, 0, 3, 1, 4)
        out = F.scaled_dot_product_attention(qkv[0], qkv[1], qkv[2])     # softmax(q k^T / sqrt(d_head)) v
        return self.proj(out.transpose(1, 2).reshape(n, t, d))


class Mlp(nn.Module):
    """fc1 -> GELU(tanh approximation) -> fc2 (timm's Mlp as DiT builds it)."""

    def __init__(self, dim: int, hidden: int):
        super().__init__()
        self.fc1 = nn.Linear(dim, hidden, bias=True)
        self.act = nn.GELU(approximate="tanh")
        self.fc2 = nn.Linear(hidden, dim, bias=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc2(self.act(self.fc1(x)))


class DiTBlock(nn.Module):
    """Transformer block with adaLN-Zero conditioning on c (N, D): gated, modulated attention then MLP."""

    def __init__(self, hidden_size: int, num_heads: int, mlp_ratio: float = 4.0):
        super().__init__()
        self.norm1 = nn.LayerNorm(hidden_size, elementwise_affine=False, eps=1e-6)
        self.attn = Attention(hidden_size, num_heads)
        self.norm2 = nn.LayerNorm(hidden_size, elementwise_affine=False, eps=1e-6)
        self.mlp = Mlp(hidden_size, int(hidden_size * mlp_ratio))
        self.adaLN_modulation = nn.Sequential(nn.SiLU(), nn.Linear(hidden_size, 6 * hidden_size, bias=True))

    def forward(self, x: torch.Tensor, c: torch.Tensor) -> torch.Tensor:
        shift_a, scale_a, gate_a, shift_m, scale_m, gate_m = self.adaLN_modulation(c).chunk(6, dim=1)
        x = x + gate_a.unsqueeze(1) * self.attn(modulate(self.norm1(x), shift_a, scale_a))
        return x + gate_m.unsqueeze(1) * self.mlp(modulate(self.norm2(x), shift_m, scale_m))


class FinalLayer(nn.Module):
    """adaLN-modulated LayerNorm then ``linear`` to p * p * out_channels values per token."""

    def __init__(self, hidden_size: int, patch_size: int, out_channels: int):
        super().__init__()
        self.norm_final = nn.LayerNorm(hidden_size, elementwise_affine=False, eps=1e-6)
        self.linear = nn.Linear(hidden_size, patch_size * patch_size * out_channels, bias=True)
        self.adaLN_modulation = nn.Sequential(nn.SiLU(), nn.Linear(hidden_size, 2 * hidden_size, bias=True))

    def forward(self, x: torch.Tensor, c: torch.Tensor) -> torch.Tensor:
        shift, scale = self.adaLN_modulation(c).chunk(2, dim=1)
        return self.linear(modulate(self.norm_final(x), shift, scale))


@dataclass(frozen=True)
class DiTConfig:
    """Backbone hyper-parameters; defaults are SiT-XL/2 at 256 px (32x32x4 SD-VAE latents, 1000 classes)."""
    input_size: int = 32
    patch_size: int = 2
    in_channels: int = 4
    hidden_size: int = 1152
    depth: int = 28
    num_heads: int = 16
    mlp_ratio: float = 4.0
    num_classes: int = 1000
    learn_sigma: bool = True
    null_row: bool = True          # the label table has the extra null-class row (trained with label dropout)

    @property
    def out_channels(self) -> int:
        return self.in_channels * 2 if self.learn_sigma else self.in_channels

    @classmethod
    def of(cls, size: str, **overrides) -> "DiTConfig":
        """A named size ("XL/2", "L/2", "B/2", "S/4", ...; a "SiT-" or "DiT-" prefix is allowed) plus overrides."""
        name = size.split("-", 1)[1] if size[:4] in ("SiT-", "DiT-") else size
        if name not in SIZES:
            raise ValueError(f"unknown DiT/SiT size {size!r}; expected one of {list(SIZES)}")
        kind, patch = name.split("/")
        depth, hidden, heads = _SHAPES[kind]
        return replace(cls(depth=depth, hidden_size=hidden, num_heads=heads, patch_size=int(patch)), **overrides)


class DiT(nn.Module):
    """The DiT/SiT backbone: ``forward(x, t, y)`` -> (N, out_channels, H, W), all output channels.

    x: (N, in_channels, H, W) with H = W = input_size; t: (N,) times as the model was trained on them;
    y: (N,) class ids in 0..num_classes (num_classes = the null class).
    """

    def __init__(self, config: DiTConfig):
        super().__init__()
        self.config = config
        self.in_channels = config.in_channels
        self.out_channels = config.out_channels
        self.patch_size = config.patch_size
        self.x_embedder = PatchEmbed(config.input_size, config.patch_size, config.in_channels, config.hidden_size)
        self.t_embedder = TimestepEmbedder(config.hidden_size)
        self.y_embedder = LabelEmbedder(config.num_classes, config.hidden_size, null_row=config.null_row)
        self.register_buffer("pos_embed", sincos_pos_embed_2d(config.hidden_size, self.x_embedder.grid_size)[None],
                             persistent=True)
        self.blocks = nn.ModuleList(DiTBlock(config.hidden_size, config.num_heads, config.mlp_ratio)
                                    for _ in range(config.depth))
        self.final_layer = FinalLayer(config.hidden_size, config.patch_size, self.out_channels)

    @property
    def null_label(self) -> int | None:
        return self.y_embedder.null_label

    def condition(self, t: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        """The adaLN conditioning vector c = t_embedder(t) + y_embedder(y), (N, hidden). Override to add inputs."""
        return self.t_embedder(t) + self.y_embedder(y)

    def unpatchify(self, x: torch.Tensor) -> torch.Tensor:
        """(N, T, p * p * C) tokens -> (N, C, H, W) (the references' 'nhwpqc -> nchpwq' layout)."""
        n, t, _ = x.shape
        p, c, h = self.patch_size, self.out_channels, self.x_embedder.grid_size
        if h * h != t:
            raise ValueError(f"DiT.unpatchify: {t} tokens do not form a {h}x{h} grid")
        x = x.reshape(n, h, h, p, p, c)
        return torch.einsum("nhwpqc->nchpwq", x).reshape(n, c, h * p, h * p)

    def trunk(self, x: torch.Tensor, c: torch.Tensor) -> torch.Tensor:
        """Patchify + position table, the blocks conditioned on c, final layer, unpatchify."""
        h = self.x_embedder(x) + self.pos_embed.to(x.dtype)
        for block in self.blocks:
            h = block(h, c)
        return self.unpatchify(self.final_layer(h, c))

    def forward(self, x: torch.Tensor, t: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        return self.trunk(x, self.condition(t, y))

    def split_sigma(self, out: torch.Tensor) -> torch.Tensor:
        """The model prediction (first in_channels channels) of a forward output, dropping learned-sigma channels."""
        return out[:, :self.in_channels]


def dit_size(name: str, shapes: dict[str, tuple[int, int, int]], what: str, **overrides) -> DiTConfig:
    """A DiTConfig (learn_sigma off) for a size name like "B/4", "XL/2", "MF-B/4" or "XL-2-cond" of ``shapes``
    (kind -> depth, hidden, heads)."""
    key = re.sub(r"^(MF|iMF|DiT|SoFlow)-", "", str(name)).removesuffix("-cond").replace("-", "/")
    kind, _, patch = key.partition("/")
    if kind not in shapes or patch not in ("2", "4", "8"):
        raise ValueError(f"{what}: unknown size {name!r}; expected one of "
                         f"{[f'{k}/{p}' for k in shapes for p in (2, 4)]}")
    depth, hidden, heads = shapes[kind]
    return replace(DiTConfig(depth=depth, hidden_size=hidden, num_heads=heads, patch_size=int(patch),
                             learn_sigma=False), **overrides)


def config_from_option(arch: Any, shapes: dict, what: str) -> DiTConfig:
    """An ``arch`` value: a size name of ``shapes``, or a mapping of DiTConfig fields (learn_sigma off unless
    given)."""
    if isinstance(arch, dict):
        known = {f.name for f in fields(DiTConfig)}
        bad = sorted(set(arch) - known)
        if bad:
            raise ValueError(f"{what}: unknown arch field(s) {bad}; known: {sorted(known)}")
        return DiTConfig(**{"learn_sigma": False, **arch})
    return dit_size(str(arch), shapes, what)
