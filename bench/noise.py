"""Per-sample deterministic randomness: sample i depends only on (seed, i).

Every random draw a generator makes for a sample (initial noise, re-noising in multi-step one-step models,
stochastic solvers) comes from a torch.Generator seeded from a hash of (seed, sample id, stream), so a
cell's images do not change with batch size, device count or shard split.
"""

from __future__ import annotations

import hashlib

import torch


def sample_seed(seed: int, sample_id: int, stream: str = "noise") -> int:
    digest = hashlib.sha256(f"{int(seed)}/{int(sample_id)}/{stream}".encode()).digest()
    return int.from_bytes(digest[:8], "little") & ((1 << 63) - 1)


def gaussian(seed: int, sample_ids: torch.Tensor, shape: tuple[int, ...], stream: str = "noise",
             device: torch.device | str = "cpu", dtype: torch.dtype = torch.float32) -> torch.Tensor:
    """Standard normal tensor of shape (len(sample_ids), *shape); row k depends only on (seed, sample_ids[k], stream).

    Drawn on the CPU in float32 (the same numbers on every device), then moved.
    """
    rows = []
    for sid in sample_ids.tolist():
        g = torch.Generator().manual_seed(sample_seed(seed, sid, stream))
        rows.append(torch.randn(shape, generator=g, dtype=torch.float32))
    out = torch.stack(rows) if rows else torch.empty((0, *shape))
    return out.to(device=device, dtype=dtype)


def labels_uniform(seed: int, sample_ids: torch.Tensor, num_classes: int) -> torch.Tensor:
    """Uniform random class labels, label k depending only on (seed, sample_ids[k])."""
    return torch.tensor([sample_seed(seed, sid, "label") % num_classes for sid in sample_ids.tolist()],
                        dtype=torch.long)
