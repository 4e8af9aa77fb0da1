"""RAE's networks, written here with the parameter names and shapes of the official checkpoints.

Reference: bytetriper/RAE (``src/stage2/models/DDT.py``, ``model_utils.py``, ``src/stage1/decoders/decoder.py``).
Their state dicts load with ``load_state_dict(strict=True)`` and no renaming.

`DiTDH` -- the stage-2 denoiser DiT^DH ("DiTwDDTHead"): a LightningDiT encoder of ``depth[0]`` blocks at width
``hidden[0]`` followed by a wide DDT head of ``depth[1]`` blocks at width ``hidden[1]``::

    s_embedder.proj, x_embedder.proj      PatchEmbed (Conv2d, patch 1) of the latent into encoder / head width
    pos_embed                             (1, T, hidden[0]) fixed 2-D sin-cos table (added to the encoder input)
    t_embedder.W, t_embedder.mlp.{0,2}    Gaussian-Fourier time embedding (256 random frequencies, 2 pi t W)
    y_embedder.embedding_table            (num_classes + 1, hidden[0]); row num_classes is the null class
    enc_feat_rope / dec_feat_rope         2-D rotary tables (buffers freqs_cos, freqs_sin)
    blocks.N.{norm1,norm2}.weight         RMSNorm (eps 1e-6)
    blocks.N.attn.{qkv,proj}              attention; q_norm / k_norm only with use_qknorm (off in the release)
    blocks.N.mlp.{w12,w3}                 SwiGLU with hidden int(2/3 * mlp_ratio * width)
    blocks.N.adaLN_modulation.1           SiLU -> Linear(width, 6 width): shift/scale/gate for attn and mlp
    s_projector                           Linear(hidden[0], hidden[1]) (identity when the widths agree)
    final_layer.{norm_final,linear,adaLN_modulation.1}

Forward: c = silu(t_emb + y_emb) conditions the encoder blocks; s = silu(t_emb + encoder(s_embed(x) + pos));
the head blocks run on x_embed(x) with the per-token condition s_projector(s) and RoPE; output = velocity with
the latent's shape.

`RAEDecoder` -- the ViT-MAE-style pixel decoder ("GeneralDecoder", ViT-XL: 28 layers, width 1152, 16 heads,
MLP 4096, GELU, LayerNorm eps 1e-12) from (N, 256, 768) DINOv2 tokens to (N, 3, 256, 256) pixels in the encoder's
normalised space (the caller de-normalises with the ImageNet mean/std)::

    decoder_embed, decoder_pos_embed (1, 1 + T, width), trainable_cls_token (1, 1, width)
    decoder_layers.N.attention.attention.{query,key,value}, .attention.output.dense,
    decoder_layers.N.{intermediate,output}.dense, decoder_layers.N.{layernorm_before,layernorm_after}
    decoder_norm, decoder_pred (width -> patch^2 * 3)

Fixed tables (``pos_embed``, ``decoder_pos_embed``, the RoPE tables) are persistent buffers here (the reference
keeps the position tables as frozen Parameters): same names, shapes and values, so they are in the state dict.
Network definitions only: the adapter that reads the checkpoints and samples is bench/models/rae.py.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn


# ----------------------------------------------------------------------------------------------- shared pieces
def sincos_2d(dim: int, grid: int, cls_token: bool = False) -> torch.Tensor:
    """(grid*grid [+1], dim) 2-D sin-cos table: first half of the channels encodes the column (x), second the row."""
    if dim % 4:
        raise ValueError(f"sin-cos table width must be divisible by 4, got {dim}")
    omega = 1.0 / 10000 ** (np.arange(dim // 4, dtype=np.float64) / (dim / 4))
    ys, xs = np.meshgrid(np.arange(grid, dtype=np.float32), np.arange(grid, dtype=np.float32), indexing="ij")

    def one(pos: np.ndarray) -> np.ndarray:
        out = np.einsum("m,d->md", pos.reshape(-1).astype(np.float64), omega)
        return np.concatenate([np.sin(out), np.cos(out)], axis=1)

    table = np.concatenate([one(xs), one(ys)], axis=1)
    if cls_token:
        table = np.concatenate([np.zeros((1, dim)), table], axis=0)
    return torch.from_numpy(table).float()


class RMSNorm(nn.Module):
    def __init__(self, dim: int, eps: float = 1e-6):
        super().__init__()
        self.eps = eps
        self.weight = nn.Parameter(torch.ones(dim))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        xf = x.float()
        return (xf * torch.rsqrt(xf.pow(2).mean(-1, keepdim=True) + self.eps)).type_as(x) * self.weight


def _rotate_pairs(x: torch.Tensor) -> torch.Tensor:
    """(x0, x1, x2, x3, ...) -> (-x1, x0, -x3, x2, ...): rotation of interleaved channel pairs."""
    pairs = x.unflatten(-1, (-1, 2))
    return torch.stack((-pairs[..., 1], pairs[..., 0]), dim=-1).flatten(-2)


class Rope2D(nn.Module):
    """2-D rotary embedding on a grid x grid token layout: the first half of each head's channels rotates with the
    token's row, the second half with its column; frequencies theta^(-2i/dim), channel pairs interleaved."""

    def __init__(self, half_dim: int, grid: int, theta: float = 10000.0):
        super().__init__()
        freqs = 1.0 / (theta ** (torch.arange(0, half_dim, 2)[: half_dim // 2].float() / half_dim))
        pos = torch.arange(grid) / grid * grid
        f = torch.einsum("i,f->if", pos, freqs).repeat_interleave(2, dim=-1)        # (grid, half_dim)
        rows = f[:, None, :].expand(grid, grid, half_dim)
        cols = f[None, :, :].expand(grid, grid, half_dim)
        table = torch.cat([rows, cols], dim=-1).reshape(grid * grid, 2 * half_dim)
        self.register_buffer("freqs_cos", table.cos())
        self.register_buffer("freqs_sin", table.sin())

    def forward(self, t: torch.Tensor) -> torch.Tensor:       # (B, heads, L, head_dim)
        return t * self.freqs_cos + _rotate_pairs(t) * self.freqs_sin


class Attention(nn.Module):
    def __init__(self, dim: int, heads: int, qk_norm: bool = False):
        super().__init__()
        if dim % heads:
            raise ValueError(f"width {dim} is not divisible by {heads} heads")
        self.heads, self.head_dim = heads, dim // heads
        self.qkv = nn.Linear(dim, 3 * dim)
        self.q_norm = RMSNorm(self.head_dim) if qk_norm else nn.Identity()
        self.k_norm = RMSNorm(self.head_dim) if qk_norm else nn.Identity()
        self.proj = nn.Linear(dim, dim)

    def forward(self, x: torch.Tensor, rope: Rope2D | None = None) -> torch.Tensor:
        b, n, c = x.shape
        q, k, v = self.qkv(x).reshape(b, n, 3, self.heads, self.head_dim).permute(2, 0, 3, 1, 4).unbind(0)
        q, k = self.q_norm(q), self.k_norm(k)
        if rope is not None:
            q, k = rope(q).to(v.dtype), rope(k).to(v.dtype)
        out = F.scaled_dot_product_attention(q, k, v)
        return self.proj(out.transpose(1, 2).reshape(b, n, c))


class SwiGLU(nn.Module):
    def __init__(self, dim: int, hidden: int):
        super().__init__()
        self.w12 = nn.Linear(dim, 2 * hidden)
        self.w3 = nn.Linear(hidden, dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        a, b = self.w12(x).chunk(2, dim=-1)
        return self.w3(F.silu(a) * b)


class PatchEmbed(nn.Module):
    """timm-style patch embedding: Conv2d(in, width, p, stride p), tokens in raster order."""

    def __init__(self, in_channels: int, width: int, patch: int):
        super().__init__()
        self.proj = nn.Conv2d(in_channels, width, patch, stride=patch)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.proj(x).flatten(2).transpose(1, 2)


class FourierTimeEmbed(nn.Module):
    """Gaussian-Fourier features of t with fixed random frequencies W (a checkpoint tensor), then an MLP."""

    def __init__(self, width: int, features: int = 256, persistent_w: bool = True):
        super().__init__()
        w = torch.randn(features)
        if persistent_w:
            self.W = nn.Parameter(w, requires_grad=False)
        else:     # Scale-RAE: W is not in the checkpoint but drawn from a fixed seed (set by the owner)
            self.register_buffer("W", w, persistent=False)
        self.mlp = nn.Sequential(nn.Linear(2 * features, width), nn.SiLU(), nn.Linear(width, width))

    def forward(self, t: torch.Tensor) -> torch.Tensor:
        a = t[:, None] * self.W[None, :] * 2 * torch.pi
        return self.mlp(torch.cat([torch.sin(a), torch.cos(a)], dim=-1))


class LabelEmbed(nn.Module):
    def __init__(self, num_classes: int, width: int):
        super().__init__()
        self.embedding_table = nn.Embedding(num_classes + 1, width)

    def forward(self, y: torch.Tensor) -> torch.Tensor:
        return self.embedding_table(y)


def _modulate(x: torch.Tensor, shift: torch.Tensor, scale: torch.Tensor) -> torch.Tensor:
    return x * (1 + scale) + shift       # shift/scale (B, 1, D) per sample or (B, L, D) per token


class DDTBlock(nn.Module):
    """LightningDiT / DDT block: RMSNorm, RoPE attention, SwiGLU, adaLN shift/scale/gate."""

    def __init__(self, width: int, heads: int, mlp_ratio: float = 4.0, qk_norm: bool = False,
                 cond_dim: int | None = None):
        super().__init__()
        self.norm1 = RMSNorm(width)
        self.attn = Attention(width, heads, qk_norm)
        self.norm2 = RMSNorm(width)
        self.mlp = SwiGLU(width, int(2 / 3 * int(width * mlp_ratio)))
        self.adaLN_modulation = nn.Sequential(nn.SiLU(), nn.Linear(cond_dim or width, 6 * width))

    def forward(self, x: torch.Tensor, c: torch.Tensor, rope: Rope2D | None) -> torch.Tensor:
        if c.dim() < x.dim():
            c = c.unsqueeze(1)
        sh1, sc1, g1, sh2, sc2, g2 = self.adaLN_modulation(c).chunk(6, dim=-1)
        x = x + g1 * self.attn(_modulate(self.norm1(x), sh1, sc1), rope)
        return x + g2 * self.mlp(_modulate(self.norm2(x), sh2, sc2))


class DDTFinalLayer(nn.Module):
    def __init__(self, width: int, out: int, cond_dim: int | None = None):
        super().__init__()
        self.norm_final = RMSNorm(width)
        self.linear = nn.Linear(width, out)
        self.adaLN_modulation = nn.Sequential(nn.SiLU(), nn.Linear(cond_dim or width, 2 * width))

    def forward(self, x: torch.Tensor, c: torch.Tensor) -> torch.Tensor:
        if c.dim() < x.dim():
            c = c.unsqueeze(1)
        shift, scale = self.adaLN_modulation(c).chunk(2, dim=-1)
        return self.linear(_modulate(self.norm_final(x), shift, scale))


def _known_fields(cls, d: dict, what: str) -> dict:
    """A copy of ``d`` after checking that it names only fields of the dataclass ``cls``."""
    known = set(cls.__dataclass_fields__)
    unknown = sorted(set(d) - known)
    if unknown:
        raise ValueError(f"{what}: unknown key(s) {unknown}; expected some of {sorted(known)}")
    return dict(d)


# ------------------------------------------------------------------------------------------------ stage 2: DiT^DH
@dataclass(frozen=True)
class DiTDHConfig:
    """DiTwDDTHead arguments of the released configs (patch 1, SwiGLU, RoPE, RMSNorm, shift, pos-embed)."""
    input_size: int = 16
    in_channels: int = 768
    hidden_size: tuple[int, int] = (1152, 2048)
    depth: tuple[int, int] = (28, 2)
    num_heads: tuple[int, int] = (16, 16)
    mlp_ratio: float = 4.0
    num_classes: int = 1000
    use_qknorm: bool = False

    @classmethod
    def from_dict(cls, d: dict, what: str = "DiT^DH config") -> "DiTDHConfig":
        d = _known_fields(cls, d, what)
        for k in ("hidden_size", "depth", "num_heads"):
            if k in d:
                v = d[k]
                d[k] = (int(v), int(v)) if isinstance(v, int) else tuple(int(i) for i in v)
                if len(d[k]) != 2:
                    raise ValueError(f"{what}: {k} needs two values [encoder, head], got {v!r}")
        return cls(**d)


# The released networks (configs/stage2/sampling/ImageNet256/*.yaml).
DITDH_XL = DiTDHConfig()
DITDH_S = DiTDHConfig(hidden_size=(384, 2048), depth=(12, 2), num_heads=(6, 16))


class DiTDH(nn.Module):
    def __init__(self, cfg: DiTDHConfig = DITDH_XL):
        super().__init__()
        self.cfg = cfg
        enc_w, dec_w = cfg.hidden_size
        self.num_encoder_blocks, num_head_blocks = cfg.depth
        c, g = cfg.in_channels, cfg.input_size
        self.x_embedder = PatchEmbed(c, dec_w, 1)
        self.s_embedder = PatchEmbed(c, enc_w, 1)
        self.s_projector = nn.Linear(enc_w, dec_w) if enc_w != dec_w else nn.Identity()
        self.t_embedder = FourierTimeEmbed(enc_w)
        self.y_embedder = LabelEmbed(cfg.num_classes, enc_w)
        self.final_layer = DDTFinalLayer(dec_w, c)
        self.register_buffer("pos_embed", sincos_2d(enc_w, g).unsqueeze(0))
        self.enc_feat_rope = Rope2D(enc_w // cfg.num_heads[0] // 2, g)
        self.dec_feat_rope = Rope2D(dec_w // cfg.num_heads[1] // 2, g)
        self.blocks = nn.ModuleList(
            [DDTBlock(enc_w, cfg.num_heads[0], cfg.mlp_ratio, cfg.use_qknorm) for _ in range(cfg.depth[0])]
            + [DDTBlock(dec_w, cfg.num_heads[1], cfg.mlp_ratio, cfg.use_qknorm) for _ in range(num_head_blocks)])

    def forward(self, x: torch.Tensor, t: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        """Velocity at (x, t, y): x (N, C, H, W) normalised latent, t (N,) with 1 = noise, y (N,) labels."""
        n, c, h, w = x.shape
        temb = self.t_embedder(t)
        cond = F.silu(temb + self.y_embedder(y))
        s = self.s_embedder(x) + self.pos_embed
        for blk in self.blocks[: self.num_encoder_blocks]:
            s = blk(s, cond, self.enc_feat_rope)
        s = self.s_projector(F.silu(temb.unsqueeze(1) + s))
        z = self.x_embedder(x)
        for blk in self.blocks[self.num_encoder_blocks:]:
            z = blk(z, s, self.dec_feat_rope)
        z = self.final_layer(z, s)                                  # (N, H*W, C)
        return z.transpose(1, 2).reshape(n, c, h, w)


# ------------------------------------------------------------------------------------------- stage 1: ViT decoder
@dataclass(frozen=True)
class DecoderConfig:
    """GeneralDecoder at configs/decoder/ViTXL with the DINOv2-B encoder (latent 768, 16x16 tokens, patch 16)."""
    latent_dim: int = 768
    hidden_size: int = 1152
    num_layers: int = 28
    num_heads: int = 16
    intermediate_size: int = 4096
    patch_size: int = 16
    grid: int = 16
    num_channels: int = 3
    layer_norm_eps: float = 1e-12

    @classmethod
    def from_dict(cls, d: dict, what: str = "decoder config") -> "DecoderConfig":
        return cls(**_known_fields(cls, d, what))

    @property
    def image_size(self) -> int:
        return self.patch_size * self.grid


DECODER_XL = DecoderConfig()


class _SelfAttention(nn.Module):
    def __init__(self, width: int, heads: int):
        super().__init__()
        self.heads = heads
        self.query, self.key, self.value = nn.Linear(width, width), nn.Linear(width, width), nn.Linear(width, width)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, n, c = x.shape

        def split(t):
            return t.reshape(b, n, self.heads, c // self.heads).transpose(1, 2)

        out = F.scaled_dot_product_attention(split(self.query(x)), split(self.key(x)), split(self.value(x)))
        return out.transpose(1, 2).reshape(b, n, c)


class _Dense(nn.Module):
    def __init__(self, d_in: int, d_out: int):
        super().__init__()
        self.dense = nn.Linear(d_in, d_out)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.dense(x)


class _AttentionBlock(nn.Module):
    def __init__(self, width: int, heads: int):
        super().__init__()
        self.attention = _SelfAttention(width, heads)
        self.output = _Dense(width, width)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.output(self.attention(x))


class ViTLayer(nn.Module):
    """Pre-norm ViT layer with Hugging Face ViT parameter names."""

    def __init__(self, cfg: DecoderConfig):
        super().__init__()
        w = cfg.hidden_size
        self.attention = _AttentionBlock(w, cfg.num_heads)
        self.intermediate = _Dense(w, cfg.intermediate_size)
        self.output = _Dense(cfg.intermediate_size, w)
        self.layernorm_before = nn.LayerNorm(w, eps=cfg.layer_norm_eps)
        self.layernorm_after = nn.LayerNorm(w, eps=cfg.layer_norm_eps)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x + self.attention(self.layernorm_before(x))
        return x + self.output(F.gelu(self.intermediate(self.layernorm_after(x))))


class RAEDecoder(nn.Module):
    def __init__(self, cfg: DecoderConfig = DECODER_XL):
        super().__init__()
        self.cfg = cfg
        w = cfg.hidden_size
        self.decoder_embed = nn.Linear(cfg.latent_dim, w)
        self.register_buffer("decoder_pos_embed", sincos_2d(w, cfg.grid, cls_token=True).unsqueeze(0))
        self.decoder_layers = nn.ModuleList([ViTLayer(cfg) for _ in range(cfg.num_layers)])
        self.decoder_norm = nn.LayerNorm(w, eps=cfg.layer_norm_eps)
        self.decoder_pred = nn.Linear(w, cfg.patch_size ** 2 * cfg.num_channels)
        self.trainable_cls_token = nn.Parameter(torch.zeros(1, 1, w))

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        """(N, grid*grid, latent_dim) tokens -> (N, 3, image, image) pixels in the encoder's normalised space."""
        n, length, _ = tokens.shape
        if length != self.cfg.grid ** 2:
            raise ValueError(f"decoder expects {self.cfg.grid ** 2} tokens, got {length}")
        x = self.decoder_embed(tokens)
        x = torch.cat([self.trainable_cls_token.expand(n, -1, -1), x], dim=1) + self.decoder_pos_embed
        for layer in self.decoder_layers:
            x = layer(x)
        patches = self.decoder_pred(self.decoder_norm(x))[:, 1:]
        p, g, ch = self.cfg.patch_size, self.cfg.grid, self.cfg.num_channels
        img = patches.reshape(n, g, g, p, p, ch).permute(0, 5, 1, 3, 2, 4)
        return img.reshape(n, ch, g * p, g * p)

