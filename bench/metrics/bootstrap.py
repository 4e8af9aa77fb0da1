"""Seeded percentile bootstrap confidence intervals over the generated samples of a cell.

Resample i draws n indices with replacement from a ``torch.Generator`` seeded with ``seed``; the rows it sees
are ordered by sample id (the accumulators sort first), so an interval depends only on (values, seed, count).
The reference set is held fixed: the interval reflects the finite generated sample, as is usual for FID.

Resampled rows are gathered with ``index_select`` (a copy: the same values as advanced indexing ``v[idx]``, which
runs a parallel region per call, about 10 ms each on a loaded 2-core machine), and the means are taken over the
same chunks of 64 resamples as before, so every value is unchanged. The index matrix depends only on (count,
resamples, seed): a process keeps the last few small ones (`_indices`: up to `MAX_KEPT_INDICES` entries each),
so the cells of a sweep, and CLIP Score and PickScore within a cell, draw them once (drawing 1,000 x 250 took
0.8 ms of a 1.3 ms interval).
"""

from __future__ import annotations

import functools
from typing import Annotated, Callable

import torch
from pydantic import Field

# Option types shared by the metrics that offer an interval (``bootstrap`` resamples, 0 = off; a level in (0, 1)).
Resamples = Annotated[int, Field(ge=0, description="bootstrap resamples (0 = off)")]
Level = Annotated[float, Field(gt=0, lt=1, description="confidence level of the interval")]


# index matrices up to this many entries (8 MiB of int64) are kept per process; larger ones are drawn per call
MAX_KEPT_INDICES = 1 << 20


def resample_indices(n: int, resamples: int, seed: int) -> torch.Tensor:
    """The (resamples, n) indices of every resample, drawn with replacement from ``torch.Generator(seed)``."""
    g = torch.Generator().manual_seed(int(seed))
    return torch.randint(0, n, (int(resamples), n), generator=g)


@functools.lru_cache(maxsize=4)
def _kept_indices(n: int, resamples: int, seed: int) -> torch.Tensor:
    return resample_indices(n, resamples, seed)


def _indices(n: int, resamples: int, seed: int) -> torch.Tensor:
    """`resample_indices`, kept when small: the same tensor for the same arguments, which callers only read."""
    if int(n) * int(resamples) > MAX_KEPT_INDICES:
        return resample_indices(n, resamples, seed)
    return _kept_indices(int(n), int(resamples), int(seed))


def percentile_ci(stats: torch.Tensor, level: float) -> tuple[float, float]:
    alpha = (1.0 - float(level)) / 2.0
    q = torch.quantile(stats.double(), torch.tensor([alpha, 1.0 - alpha], dtype=torch.float64))
    return float(q[0]), float(q[1])


def mean_ci(values: torch.Tensor, resamples: int, seed: int, level: float) -> tuple[float, float]:
    """CI of the mean of per-sample values (vectorised: cheap even for 50k samples x 1000 resamples)."""
    v = values.double()
    idx = _indices(len(v), resamples, seed)
    means = torch.cat([v.index_select(0, chunk.reshape(-1)).view(chunk.shape).mean(dim=1) for chunk in idx.split(64)])
    return percentile_ci(means, level)


def statistic_ci(rows: torch.Tensor, statistic: Callable[[torch.Tensor], float], resamples: int, seed: int,
                 level: float) -> tuple[float, float]:
    """CI of any statistic of the rows (e.g. FID of resampled features: one covariance + sqrtm per resample)."""
    idx = _indices(len(rows), resamples, seed)
    return percentile_ci(torch.tensor([statistic(rows.index_select(0, i)) for i in idx], dtype=torch.float64), level)
