"""Density and coverage (Naeem et al. 2020, "Reliable Fidelity and Diversity Metrics for Generative Models") on
feature vectors, as clovaai's reference computes them, with the real set's k-NN radii computed once per reference.

Reference: github.com/clovaai/generative-evaluation-prdc, ``prdc/prdc.py`` (``compute_prdc``; dgm-eval's
``dgm_eval/metrics/prdc.py`` is the same code, called with ``nearest_k = 5``):

- distances are Euclidean (sklearn ``pairwise_distances``, which upcasts float32 to float64 in its products);
- a real sample's radius is the distance to its k-th nearest *other* real sample: the (k+1)-th smallest distance
  of its row, its own zero counted (``get_kth_value(distances, k + 1)``), so a duplicated real image counts as a
  neighbour of its copy, as there;
- density = (1/k) * mean over generated samples of #{real i : d(fake, real_i) < r_i};
- coverage = mean over real samples of [min over fakes d(fake, real_i) < r_i]; both comparisons strict ``<``.

Invariants: distances are float64, ``|a|^2 + |b|^2 - 2 a.b`` clamped at 0 (the formula sklearn uses), in blocks
of at most `BLOCK` x `BLOCK` rows whose layout depends on the set sizes only, so the values are a deterministic
function of the two (sample-ordered) feature sets: the same bits at any generator batch size or shard split. The
radii depend on the reference features and k alone (`radii`); `cached_radii` keeps them in the reference's
refstats entry (``dc_radii_k<k>``), as `bench.metrics.prc` keeps precision/recall's. A reference of fewer than
k + 1 samples has no k-th neighbour: a `MetricError` naming ``dc_neighborhood``.
"""

from __future__ import annotations

from typing import Annotated, Any

import torch
from pydantic import Field

from bench.metrics.base import MetricError

# The neighbourhood size option (dgm-eval's ``--nearest_k``, 5 by default there and here)
Neighbours = Annotated[int, Field(ge=1, description="k of the k-NN radii (density/coverage)")]
# Rows per side of one distance block (2048 x 2048 float64: 32 MiB)
BLOCK = 2048


def _blocks(x: torch.Tensor) -> list[torch.Tensor]:
    return list(x.split(BLOCK))


def _distances(a: torch.Tensor, a_sq: torch.Tensor, b: torch.Tensor, b_sq: torch.Tensor) -> torch.Tensor:
    """Euclidean distances of float64 blocks ``a`` (rows) and ``b`` (columns) given their squared norms."""
    return (a_sq[:, None] + b_sq[None, :] - 2.0 * (a @ b.T)).clamp_min_(0).sqrt_()


def radii(ref: torch.Tensor, k: int, what: str = "density/coverage") -> torch.Tensor:
    """Float64 distance from each row of ``ref`` to its k-th nearest other row (prdc's real radii)."""
    n = len(ref)
    if n < k + 1:
        raise MetricError(f"{what}: dc_neighborhood {k} needs at least {k + 1} reference samples, got {n}")
    r = ref.double()
    sq = (r * r).sum(1)
    out = []
    for a, a_sq in zip(_blocks(r), _blocks(sq)):
        best = None                                   # the k+1 smallest distances of each row seen so far
        for b, b_sq in zip(_blocks(r), _blocks(sq)):
            d = _distances(a, a_sq, b, b_sq)
            d = d if best is None else torch.cat([best, d], dim=1)
            best = d.topk(min(k + 1, d.shape[1]), dim=1, largest=False, sorted=True).values
        out.append(best[:, k])
    return torch.cat(out)


def density_coverage(gen: torch.Tensor, ref: torch.Tensor, ref_radii: torch.Tensor, k: int) -> tuple[float, float]:
    """(density, coverage) of generated features ``gen`` against real features ``ref`` with their k-NN radii."""
    if len(gen) < 1:
        raise MetricError("density/coverage: no generated samples")
    if len(ref_radii) != len(ref):
        raise MetricError(f"density/coverage: {len(ref_radii)} radii for {len(ref)} reference samples")
    g, r, rad = gen.double(), ref.double(), ref_radii.double()
    g_sq, r_sq = (g * g).sum(1), (r * r).sum(1)
    inside = torch.zeros(len(g), dtype=torch.int64)          # per fake: #{real i : d < r_i}
    nearest = torch.full((len(r),), float("inf"), dtype=torch.float64)   # per real: distance to the nearest fake
    start = 0
    for b, b_sq, b_rad in zip(_blocks(r), _blocks(r_sq), _blocks(rad)):
        stop = start + len(b)
        for i, (a, a_sq) in enumerate(zip(_blocks(g), _blocks(g_sq))):
            d = _distances(a, a_sq, b, b_sq)                 # fakes x reals
            inside[i * BLOCK:i * BLOCK + len(a)] += (d < b_rad[None, :]).sum(1)
            nearest[start:stop] = torch.minimum(nearest[start:stop], d.min(dim=0).values)
        start = stop
    density = float(inside.sum().item()) / (k * len(g))
    coverage = float((nearest < rad).double().mean().item())
    return density, coverage


def cached_radii(cache, material: dict[str, Any], entry: dict[str, torch.Tensor], k: int,
                 what: str = "density/coverage") -> tuple[dict[str, torch.Tensor], torch.Tensor]:
    """(entry, radii): the k-NN radii of ``entry["features"]`` read from the reference's refstats entry, or
    computed once and saved into it (``cache``: a `bench.metrics.refcache.RefCache`, ``material``: the entry's)."""
    name = f"dc_radii_k{k}"
    if name not in entry:
        entry = {**entry, name: radii(entry["features"], k, what)}
        cache.save(material, entry)
    return entry, entry[name]
