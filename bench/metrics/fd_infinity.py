"""FD-infinity (Chong & Forsyth 2020, "Effectively Unbiased FID and Inception Score and where to find them"): the
Frechet distance extrapolated to infinitely many generated samples, for any encoder's features.

References: github.com/mchong6/FID_IS_infinity, ``score_infinity.py`` (``calculate_FID_infinity_path``: FID_N at
``num_points = 15`` sizes ``np.linspace(5000, num_fake, 15).astype('int32')``, each on a fresh shuffle of the
generated activations, first N rows; ``LinearRegression`` of FID_N on 1/N; the prediction at 1/N = 0), and its
generalisation to any encoder in github.com/layer6ai-labs/dgm-eval, ``dgm_eval/metrics/fd.py``
(``compute_FD_infinity``: the first size is ``min(5000, max(n // 10, 2))``, each subset ``rng.choice(reps, N,
replace=False)`` from one ``np.random.default_rng()``, the reference statistics of the whole real set).

Here: the same schedule (`schedule`) and the same subset drawing, from a *seeded* ``np.random.default_rng(seed)``
(dgm-eval's is unseeded), indices drawn with ``rng.choice(n, N, replace=False)`` exactly as ``rng.choice(reps, N,
replace=False)`` draws them; the Frechet distance of each subset is the caller's (``fd_of``: torch-fidelity's
float64 statistics and distance against the reference's statistics, computed once); the fit is ordinary least
squares with an intercept (what ``LinearRegression`` computes). Returned: the intercept (FD-infinity), the slope
(the bias term, FD_N ~ FD_inf + slope / N) and the root-mean-square residual of the fit (in FD units: how far
FD_N is from linear in 1/N). Invariant: a deterministic function of the sample-ordered features and the seed.
"""

from __future__ import annotations

import math
from typing import Annotated, Callable

import numpy as np
import torch
from pydantic import Field

from bench.metrics.base import MetricError

# How many subset sizes the line is fitted to (mchong6's and dgm-eval's ``num_points``: 15)
Points = Annotated[int, Field(ge=2, description="subset sizes of the FD-infinity fit")]


def schedule(n: int, points: int) -> np.ndarray:
    """dgm-eval's subset sizes for ``n`` generated samples: ``points`` values from min(5000, max(n // 10, 2)) to n,
    linearly spaced and truncated to int32 (so they may repeat for small n)."""
    return np.linspace(min(5000, max(n // 10, 2)), n, points).astype("int32")


def fit(sizes, fds) -> tuple[float, float, float]:
    """(intercept, slope, rms residual) of the least-squares line FD = intercept + slope / N (float64)."""
    x = 1.0 / np.asarray(sizes, dtype=np.float64)
    y = np.asarray(fds, dtype=np.float64)
    dx = x - x.mean()
    sxx = float(dx @ dx)
    if not sxx > 0:
        raise MetricError("FD-infinity: the subset sizes are all equal, no line can be fitted")
    slope = float(dx @ (y - y.mean())) / sxx
    intercept = float(y.mean() - slope * x.mean())
    residual = math.sqrt(float(np.mean((y - (intercept + slope * x)) ** 2)))
    return intercept, slope, residual


def fd_infinity(features: torch.Tensor, fd_of: Callable[[torch.Tensor], float], points: int, seed: int,
                what: str = "fd_inf") -> tuple[float, float, float]:
    """(FD-infinity, slope, rms residual) of the generated ``features`` (rows in sample order): ``fd_of(subset)``
    at each size of `schedule`, each subset a fresh seeded draw without replacement."""
    n = len(features)
    sizes = schedule(n, points)
    if len(np.unique(sizes)) < 2:
        raise MetricError(f"{what}: needs at least 3 generated samples for two subset sizes, got {n}")
    rng = np.random.default_rng(seed)
    fds = [fd_of(features[torch.from_numpy(rng.choice(n, int(size), replace=False))]) for size in sizes]
    return fit(sizes, fds)
