"""Scale-RAE's diffusion head (the "DiT 2.4B" of Scale-RAE-Qwen1.5B_DiT2.4B), with the official parameter names.

Reference: ZitengWangNYU/Scale-RAE, ``scale_rae/model/diffusion_loss/models/lightningDiT.py`` (``LightningDiT``,
non-DDT path) as built by ``FullSequenceRectifiedFlowProjector`` for ``vision_loss_mode=query`` and
``vision_loss=diffusion-loss`` (scripts/examples/stage2_rae_siglip_1.5b_dit2.4b.sh: hidden 2048, depth 32, 32
heads, z_channels 2048, 256 SigLIP-2 tokens of 1152 channels on a 16 x 16 grid, class_dropout_prob 0.1). In the
full checkpoint these tensors sit under ``diff_head.model.``; ``diff_head_projector`` (Linear 1536 -> 2048) maps
the Qwen2.5-1.5B hidden states of the 256 query tokens to the per-token condition z.

    x_embedder.proj                       PatchEmbed (patch 1) of the 1152-channel token grid to width 2048
    pos_embed                             (1, 256, 2048) fixed 2-D sin-cos table
    t_embedder.mlp.{0,2}                  Gaussian-Fourier time embedding into z_channels; its 256 frequencies W
                                          are NOT in the checkpoint: torch.normal(0, 1, (256,)) from a CPU generator
                                          seeded 114514 (rebuilt here the same way)
    y_embedder.dropout_embedding          (z_channels,) learned null condition, used for CFG
    feat_rope                             2-D RoPE tables (buffers)
    dit_blocks.N.*                        the RAE DiT^DH block (RMSNorm, RoPE attention, SwiGLU) whose adaLN takes
                                          the per-token condition of width z_channels
    final_layer.*                         RMSNorm, adaLN from z_channels, Linear(2048, 1152)

Forward: c = silu(t_emb[:, None] + z) per token (N, 256, z_channels); blocks(x_embed(x) + pos, c); output the
velocity (N, 1152, 16, 16).

The Qwen2.5 query-token pass, the rectified-flow sampler and the SigLIP-2 decoder are in
``bench/models/scale_rae.py`` (the ``scale-rae`` adapter). Network definitions only: no file I/O.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from bench.nets.rae import DDTBlock, DDTFinalLayer, FourierTimeEmbed, PatchEmbed, Rope2D, sincos_2d

W_SEED = 114514


@dataclass(frozen=True)
class HeadConfig:
    input_size: int = 16
    in_channels: int = 1152
    hidden_size: int = 2048
    depth: int = 32
    num_heads: int = 32
    z_channels: int = 2048
    mlp_ratio: float = 4.0


HEAD_2_4B = HeadConfig()


class ConditionEmbed(nn.Module):
    def __init__(self, z_channels: int):
        super().__init__()
        self.dropout_embedding = nn.Parameter(torch.zeros(z_channels))

    def null_like(self, z: torch.Tensor) -> torch.Tensor:
        return self.dropout_embedding.to(z.dtype).expand_as(z)


class ScaleRAEHead(nn.Module):
    def __init__(self, cfg: HeadConfig = HEAD_2_4B):
        super().__init__()
        self.cfg = cfg
        w, z = cfg.hidden_size, cfg.z_channels
        self.x_embedder = PatchEmbed(cfg.in_channels, w, 1)
        self.t_embedder = FourierTimeEmbed(z, persistent_w=False)
        g = torch.Generator(device="cpu").manual_seed(W_SEED)
        with torch.no_grad():
            if self.t_embedder.W.device.type != "meta":
                self.t_embedder.W.copy_(torch.normal(0.0, 1.0, size=(256,), generator=g))
        self.y_embedder = ConditionEmbed(z)
        self.register_buffer("pos_embed", sincos_2d(w, cfg.input_size).unsqueeze(0))
        self.feat_rope = Rope2D(w // cfg.num_heads // 2, cfg.input_size)
        self.dit_blocks = nn.ModuleList([DDTBlock(w, cfg.num_heads, cfg.mlp_ratio, cond_dim=z)
                                         for _ in range(cfg.depth)])
        self.final_layer = DDTFinalLayer(w, cfg.in_channels, cond_dim=z)

    def forward(self, x: torch.Tensor, t: torch.Tensor, z: torch.Tensor) -> torch.Tensor:
        """Velocity: x (N, C, g, g) noisy tokens, t (N,), z (N, g*g, z_channels) per-token conditions."""
        n, c, h, w = x.shape
        cond = F.silu(self.t_embedder(t).unsqueeze(1) + z)
        s = self.x_embedder(x) + self.pos_embed.to(x.dtype)
        for blk in self.dit_blocks:
            s = blk(s, cond, self.feat_rope)
        return self.final_layer(s, cond).transpose(1, 2).reshape(n, c, h, w)
