"""Precision and recall (k-NN manifolds, Kynkäänniemi et al.) as torch-fidelity computes them, with the real set's
half computed once.

torch-fidelity's ``calculate_precision_recall_part`` spends half its distance computations on the real set alone:
the distance from every real sample to its k-th nearest real neighbour (the real manifold's radii). Those depend only
on the reference features, so stepbench computes them once per reference set (cached on disk beside the features)
instead of once per cell; for ImageNet val that is a 50,000 x 50,000 distance matrix saved per cell. The rest is
torch-fidelity's own ``calc_cdist_part`` on the same batches, so the values are identical to
``prc_features_to_metric(..., save_cpu_ram=True)`` (tested).
"""

from __future__ import annotations

import torch
from torch_fidelity.metric_prc import calc_cdist_part


def radii(features: torch.Tensor, k: int, batch_size: int) -> torch.Tensor:
    """Distance from each row of ``features`` to its k-th nearest other row (the k+1-th, counting itself)."""
    return torch.cat([calc_cdist_part(b, features, batch_size).kthvalue(k + 1).values
                      for b in features.split(batch_size)])


def _covered(points: torch.Tensor, centres: torch.Tensor, centre_radii: torch.Tensor, batch_size: int) -> float:
    """Fraction of ``points`` inside at least one ball (centre, radius)."""
    return torch.cat([(calc_cdist_part(b, centres, batch_size) <= centre_radii).any(dim=1).float()
                      for b in points.split(batch_size)]).mean().item()


def precision_recall(gen: torch.Tensor, ref: torch.Tensor, ref_radii: torch.Tensor, k: int,
                     batch_size: int) -> tuple[float, float]:
    """(precision, recall): generated samples inside the real manifold, real samples inside the generated one."""
    recall = _covered(ref, gen, radii(gen, k, batch_size), batch_size)
    precision = _covered(gen, ref, ref_radii, batch_size)
    return precision, recall
