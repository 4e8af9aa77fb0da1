"""SD-VAE latent decoding shared by the latent-space adapters (SiT, MeanFlow, iMF, SoFlow).

diffusers' `AutoencoderKL` (default `stabilityai/sd-vae-ft-mse`; `stabilityai/sd-vae-ft-ema` selectable), latents
divided by the scale 0.18215, decoded in batches, quantised as DiT/SiT do: clamp(127.5 x + 128) to uint8 (that is
`to_uint8_nhwc`, which rounds the same way).
"""

from __future__ import annotations

import torch

from bench.hub import resolve_weights
from bench.models.base import to_uint8_nhwc

SD_VAE = {"ft-mse": "stabilityai/sd-vae-ft-mse", "ft-ema": "stabilityai/sd-vae-ft-ema"}
SCALE = 0.18215


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
