"""KID over random subsets, exactly as torch-fidelity's ``kid_features_to_metric`` computes it, subsets in parallel.

torch-fidelity draws each subset's indices from one seeded ``RandomState`` and evaluates the subsets one after
another; most of a subset's time is NumPy's elementwise ``** degree`` of the polynomial kernel, which runs on one
core. Here the indices are drawn first, in torch-fidelity's order from the same generator, and its own
``kernel_mmd`` runs on the subsets in a thread pool (NumPy releases the GIL): every subset gets the same arrays and the
same operations, so the values are bit-identical to torch-fidelity's (tested), only sooner.
"""

from __future__ import annotations

import os
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import torch
from torch_fidelity.metric_kid import KEY_METRIC_KID_MEAN, KEY_METRIC_KID_STD, kernel_mmd


def kid(features_1: torch.Tensor, features_2: torch.Tensor, subsets: int, subset_size: int, seed: int,
        degree: int = 3, gamma: float | None = None, coef0: float = 1, workers: int | None = None) -> dict[str, float]:
    """``{kernel_inception_distance_mean, kernel_inception_distance_std}`` of the polynomial-kernel KID."""
    n1, n2 = len(features_1), len(features_2)
    if subset_size > min(n1, n2):
        raise ValueError(f"KID subset size {subset_size} is larger than the number of samples ({n1}, {n2})")
    f1, f2 = features_1.cpu().numpy(), features_2.cpu().numpy()
    rng = np.random.RandomState(seed)
    draws = [(rng.choice(n1, subset_size, replace=False), rng.choice(n2, subset_size, replace=False))
             for _ in range(subsets)]
    kw = {"kid_kernel": "poly", "kid_kernel_poly_degree": degree, "kid_kernel_poly_gamma": gamma,
          "kid_kernel_poly_coef0": coef0}

    def one(ab) -> float:
        a, b = ab
        return kernel_mmd(f1[a], f2[b], **kw)

    workers = workers or min(subsets, os.cpu_count() or 1)
    if workers <= 1:
        mmds = np.array([one(ab) for ab in draws], dtype=np.float64)
    else:
        with ThreadPoolExecutor(workers) as pool:
            mmds = np.array(list(pool.map(one, draws)), dtype=np.float64)
    return {KEY_METRIC_KID_MEAN: float(np.mean(mmds)), KEY_METRIC_KID_STD: float(np.std(mmds))}
