"""iMF's network (Lyy-iiis/imeanflow, branch ``torch``, ``models/imfDiT.py``, ``models/embedder.py``,
``models/torch_models.py``; commit 04687983e821b3ad01f54f03dc44194a33c20c54), with the official parameter names.

Not a DiT with adaLN: a transformer with in-context conditioning.

- Tokens: [8 class, 4 omega, 2 t_min, 2 t_max, 4 time, T patches]; each conditioning group is a learned token
  table plus the embedding of its scalar (``class_tokens + y_embedder(y)``, ``omega_tokens +
  omega_embedder(1 - 1/w)``, ``t_min_tokens + cfg_t_start_embedder(t_min)``, ``t_max_tokens +
  cfg_t_end_embedder(t_max)``, ``time_tokens + h_embedder(t - r)``). The network sees only h = t - r, not t.
- Blocks: RMSNorm (eps 1e-6) pre-norm, attention with q/k/v/out projections without bias, per-head RMSNorm on
  q and k, 1-D rotary embedding over the whole sequence (positions 0..L-1, adjacent channel pairs as complex
  numbers, theta 1e4), SwiGLU MLP (w2(silu(w1 x) * w3 x), hidden int(8/3 width)), residuals scaled by learned
  vectors ``attn_scale`` / ``mlp_scale``. ``depth - 8`` shared blocks then 8 ``u_heads`` blocks; the auxiliary
  v-head blocks are absent from the inference checkpoints (``eval_mode=True``) while ``v_final_layer`` is kept.
  Linear / embedding layers carry the reference's ``_flax_linear`` / ``_flax_embedding`` level in their names.
- Label table has 1001 rows; row 1000 is the null class (unused at inference: guidance is an input).

The sampler and the latent normalisation are in bench/models/imf.py.
"""

from __future__ import annotations

from dataclasses import dataclass, fields, replace
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from bench.nets import dit

# depth, hidden, heads (imfDiT_*_2 in the reference); all patch 2, 8 head blocks
IMF_SHAPES = {"B": (12, 768, 12), "M": (24, 768, 12), "L": (32, 1024, 16), "XL": (48, 1024, 16)}


@dataclass(frozen=True)
class IMFConfig:
    input_size: int = 32
    patch_size: int = 2
    in_channels: int = 4
    hidden_size: int = 1024
    depth: int = 48
    num_heads: int = 16
    mlp_ratio: float = 8 / 3
    num_classes: int = 1000
    aux_head_depth: int = 8
    num_class_tokens: int = 8
    num_time_tokens: int = 4
    num_cfg_tokens: int = 4
    num_interval_tokens: int = 2

    @classmethod
    def of(cls, size: str, **overrides) -> "IMFConfig":
        key = str(size).removeprefix("iMF-").removeprefix("imfDiT_").replace("-", "/").replace("_", "/")
        kind, _, patch = key.partition("/")
        if kind not in IMF_SHAPES or patch != "2":
            raise ValueError(f"iMF: unknown size {size!r}; expected one of {[f'{k}/2' for k in IMF_SHAPES]}")
        depth, hidden, heads = IMF_SHAPES[kind]
        return replace(cls(depth=depth, hidden_size=hidden, num_heads=heads), **overrides)


class _Linear(nn.Module):
    """The reference's TorchLinear: an nn.Linear one level down, named ``_flax_linear``."""

    def __init__(self, in_features: int, out_features: int, bias: bool):
        super().__init__()
        self._flax_linear = nn.Linear(in_features, out_features, bias=bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self._flax_linear(x)


class _Embedding(nn.Module):
    def __init__(self, num: int, dim: int):
        super().__init__()
        self._flax_embedding = nn.Embedding(num, dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self._flax_embedding(x)


class ScalarEmbedder(nn.Module):
    """Scalar (N,) -> (N, D): DiT's sinusoidal(256) features, Linear, SiLU, Linear."""

    def __init__(self, hidden_size: int, frequency_embedding_size: int = 256):
        super().__init__()
        self.frequency_embedding_size = frequency_embedding_size
        self.mlp = nn.Sequential(_Linear(frequency_embedding_size, hidden_size, True), nn.SiLU(),
                                 _Linear(hidden_size, hidden_size, True))

    def forward(self, t: torch.Tensor) -> torch.Tensor:
        return self.mlp(dit.TimestepEmbedder.sinusoidal(t, self.frequency_embedding_size))


class LabelEmbedder(nn.Module):
    def __init__(self, num_classes: int, hidden_size: int):
        super().__init__()
        self.embedding_table = _Embedding(num_classes + 1, hidden_size)

    def forward(self, y: torch.Tensor) -> torch.Tensor:
        return self.embedding_table(y)


def rope_tables(head_dim: int, seq_len: int, theta: float = 10000.0) -> tuple[torch.Tensor, torch.Tensor]:
    """cos and sin (seq_len, head_dim / 2) of position * theta ** (-2i / head_dim), float32."""
    freqs = 1.0 / theta ** (torch.arange(0, head_dim, 2, dtype=torch.float32) / head_dim)
    angles = torch.outer(torch.arange(seq_len, dtype=torch.float32), freqs)
    return torch.cos(angles), torch.sin(angles)


def apply_rope(x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
    """Rotate adjacent channel pairs (2i, 2i+1) of x (N, L, H, d) by the position angles, in float32."""
    xf = x.float().reshape(*x.shape[:-1], -1, 2)
    a, b = xf[..., 0], xf[..., 1]
    c, s = cos[None, :, None, :], sin[None, :, None, :]
    return torch.stack([a * c - b * s, a * s + b * c], dim=-1).reshape(x.shape).to(x.dtype)


class RoPEAttention(nn.Module):
    def __init__(self, hidden_size: int, num_heads: int):
        super().__init__()
        if hidden_size % num_heads:
            raise ValueError(f"iMF: hidden size {hidden_size} is not divisible by num_heads {num_heads}")
        self.num_heads, self.head_dim = num_heads, hidden_size // num_heads
        self.q_proj = _Linear(hidden_size, hidden_size, False)
        self.k_proj = _Linear(hidden_size, hidden_size, False)
        self.v_proj = _Linear(hidden_size, hidden_size, False)
        self.out_proj = _Linear(hidden_size, hidden_size, False)
        self.q_norm = nn.RMSNorm(self.head_dim, eps=1e-6)
        self.k_norm = nn.RMSNorm(self.head_dim, eps=1e-6)

    def forward(self, x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
        n, length, d = x.shape
        shape = (n, length, self.num_heads, self.head_dim)
        q = apply_rope(self.q_norm(self.q_proj(x).reshape(shape)), cos, sin)
        k = apply_rope(self.k_norm(self.k_proj(x).reshape(shape)), cos, sin)
        v = self.v_proj(x).reshape(shape)
        out = F.scaled_dot_product_attention(q.transpose(1, 2), k.transpose(1, 2), v.transpose(1, 2))
        return self.out_proj(out.transpose(1, 2).reshape(n, length, d))


class SwiGLU(nn.Module):
    def __init__(self, dim: int, hidden: int):
        super().__init__()
        self.w1 = _Linear(dim, hidden, False)
        self.w3 = _Linear(dim, hidden, False)
        self.w2 = _Linear(hidden, dim, False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.w2(F.silu(self.w1(x)) * self.w3(x))


class Block(nn.Module):
    def __init__(self, hidden_size: int, num_heads: int, mlp_ratio: float):
        super().__init__()
        self.norm1 = nn.RMSNorm(hidden_size, eps=1e-6)
        self.attn = RoPEAttention(hidden_size, num_heads)
        self.norm2 = nn.RMSNorm(hidden_size, eps=1e-6)
        self.mlp = SwiGLU(hidden_size, int(hidden_size * mlp_ratio))
        self.attn_scale = nn.Parameter(torch.zeros(hidden_size))
        self.mlp_scale = nn.Parameter(torch.zeros(hidden_size))

    def forward(self, x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
        x = x + self.attn(self.norm1(x), cos, sin) * self.attn_scale
        return x + self.mlp(self.norm2(x)) * self.mlp_scale


class FinalLayer(nn.Module):
    def __init__(self, hidden_size: int, patch_size: int, out_channels: int):
        super().__init__()
        self.norm = nn.RMSNorm(hidden_size, eps=1e-6)
        self.linear = _Linear(hidden_size, patch_size * patch_size * out_channels, True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.linear(self.norm(x))


class IMFDiT(nn.Module):
    """``imfDiT`` in eval mode; ``forward`` returns the average velocity u only (the v head is not evaluated)."""

    def __init__(self, config: IMFConfig):
        super().__init__()
        c = config
        self.config = c
        d = c.hidden_size
        self.x_embedder = dit.PatchEmbed(c.input_size, c.patch_size, c.in_channels, d)
        self.h_embedder = ScalarEmbedder(d)
        self.omega_embedder = ScalarEmbedder(d)
        self.cfg_t_start_embedder = ScalarEmbedder(d)
        self.cfg_t_end_embedder = ScalarEmbedder(d)
        self.y_embedder = LabelEmbedder(c.num_classes, d)
        self.time_tokens = nn.Parameter(torch.zeros(c.num_time_tokens, d))
        self.class_tokens = nn.Parameter(torch.zeros(c.num_class_tokens, d))
        self.omega_tokens = nn.Parameter(torch.zeros(c.num_cfg_tokens, d))
        self.t_min_tokens = nn.Parameter(torch.zeros(c.num_interval_tokens, d))
        self.t_max_tokens = nn.Parameter(torch.zeros(c.num_interval_tokens, d))
        self.prefix_tokens = c.num_class_tokens + c.num_cfg_tokens + 2 * c.num_interval_tokens + c.num_time_tokens
        cos, sin = rope_tables(d // c.num_heads, self.prefix_tokens + self.x_embedder.num_patches)
        self.register_buffer("rope_cos", cos, persistent=False)
        self.register_buffer("rope_sin", sin, persistent=False)
        if c.aux_head_depth > c.depth:
            raise ValueError(f"iMF: aux_head_depth {c.aux_head_depth} exceeds depth {c.depth}")
        n_shared = c.depth - c.aux_head_depth
        self.shared_blocks = nn.ModuleList(Block(d, c.num_heads, c.mlp_ratio) for _ in range(n_shared))
        self.u_heads = nn.ModuleList(Block(d, c.num_heads, c.mlp_ratio) for _ in range(c.aux_head_depth))
        self.v_heads = nn.ModuleList()             # eval mode: the auxiliary v-head blocks are not in the checkpoint
        self.u_final_layer = FinalLayer(d, c.patch_size, c.in_channels)
        self.v_final_layer = FinalLayer(d, c.patch_size, c.in_channels)

    def unpatchify(self, x: torch.Tensor) -> torch.Tensor:
        n, t, _ = x.shape
        p, ch, h = self.config.patch_size, self.config.in_channels, self.x_embedder.grid_size
        return torch.einsum("nhwpqc->nchpwq", x.reshape(n, h, h, p, p, ch)).reshape(n, ch, h * p, h * p)

    def forward(self, x: torch.Tensor, h: torch.Tensor, w: torch.Tensor, t_min: torch.Tensor, t_max: torch.Tensor,
                y: torch.Tensor) -> torch.Tensor:
        def group(tokens: torch.Tensor, emb: torch.Tensor) -> torch.Tensor:
            return tokens[None] + emb[:, None]

        seq = torch.cat([group(self.class_tokens, self.y_embedder(y)),
                         group(self.omega_tokens, self.omega_embedder(1 - 1 / w)),
                         group(self.t_min_tokens, self.cfg_t_start_embedder(t_min)),
                         group(self.t_max_tokens, self.cfg_t_end_embedder(t_max)),
                         group(self.time_tokens, self.h_embedder(h)),
                         self.x_embedder(x)], dim=1)
        for block in (*self.shared_blocks, *self.u_heads):
            seq = block(seq, self.rope_cos, self.rope_sin)
        return self.unpatchify(self.u_final_layer(seq[:, self.prefix_tokens:]))


class IMFNet(nn.Module):
    """The reference's ``iMeanFlow`` wrapper (parameters under ``net.``), forward(x, h, w, t_min, t_max, y) -> u."""

    def __init__(self, config: IMFConfig):
        super().__init__()
        self.net = IMFDiT(config)

    @property
    def config(self) -> IMFConfig:
        return self.net.config

    def forward(self, x, h, w, t_min, t_max, y):
        return self.net(x, h, w, t_min, t_max, y)


def imf_config(arch: Any) -> IMFConfig:
    if isinstance(arch, dict):
        known = {f.name for f in fields(IMFConfig)}
        bad = sorted(set(arch) - known)
        if bad:
            raise ValueError(f"iMF arch: unknown field(s) {bad}; known: {sorted(known)}")
        return IMFConfig(**arch)
    return IMFConfig.of(str(arch))
