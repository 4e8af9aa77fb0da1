"""Image preprocessing for CLIP-style scorers, shared by the metrics and the mini world's training.

uint8 NHWC in, normalised float NCHW out: scale to [0, 1], bicubic resize (antialiased) to the model's input
size when it differs, then per-channel mean/std normalisation.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

OPENAI_MEAN = (0.48145466, 0.4578275, 0.40821073)
OPENAI_STD = (0.26862954, 0.26130258, 0.27577711)


def preprocess_uint8(images: torch.Tensor, image_size: int, mean=OPENAI_MEAN, std=OPENAI_STD) -> torch.Tensor:
    if images.dtype != torch.uint8 or images.dim() != 4 or images.shape[-1] != 3:
        raise ValueError(f"expected uint8 NHWC RGB images, got {images.dtype} {tuple(images.shape)}")
    x = images.permute(0, 3, 1, 2).float() / 255.0
    if x.shape[-2:] != (image_size, image_size):
        x = F.interpolate(x, size=(image_size, image_size), mode="bicubic", align_corners=False, antialias=True)
        x = x.clamp(0, 1)
    m = torch.tensor(mean, dtype=x.dtype, device=x.device).view(1, 3, 1, 1)
    s = torch.tensor(std, dtype=x.dtype, device=x.device).view(1, 3, 1, 1)
    return (x - m) / s
