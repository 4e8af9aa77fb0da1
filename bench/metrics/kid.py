"""KID (polynomial kernel) as torch-fidelity computes it, from kernel blocks computed once per cell.

torch-fidelity's ``kid_features_to_metric`` draws ``kid_subsets`` pairs of subsets (``RandomState(seed).choice``,
generated subset then reference subset) and, for each, multiplies three ``subset_size`` x ``subset_size`` feature
blocks (``np.matmul``: X X^T, Y Y^T, X Y^T), applies the kernel ``(G * gamma + coef0) ** degree`` and takes the
unbiased MMD^2. The products of every subset are entries of three Gram matrices that do not depend on the subset:
X X^T of all generated features, Y Y^T of all reference features (the same for every cell of a dataset, so its
kernel is kept by the caller) and X Y^T. `kid_poly` computes those once, applies torch-fidelity's own kernel
expression to each whole matrix (elementwise: a block of the kernel is the kernel of the block) and reads each
subset's kernel blocks out of them, then applies torch-fidelity's own ``mmd2`` to blocks of the same shape and
dtype, in the same subset order with the same random draws.

Invariant: the values are those of torch-fidelity's function, bit for bit. An entry of a float32 matrix product is
one dot product accumulated over the feature dimension; BLAS splits the work over rows and columns of the output
(tiles, threads), not over that dimension, so the entry does not depend on which other rows were multiplied with
it; nor does an elementwise kernel value depend on where in an array it is computed. Those are properties of the
BLAS and of numpy's vector loops, not guarantees, so they are checked on every call: the first subset's three
blocks are also multiplied and put through the kernel directly (as torch-fidelity does) and compared with the
blocks read from the kernel matrices; on any difference, and when the Gram matrices would be large
(`MAX_GRAM_ENTRIES`), torch-fidelity's own function computes the value instead. ``tests/test_values_unchanged.py``
compares both paths with ``==``. The subsets after the check are split over two threads where the process has two
cores (`_in_parts`): each subset's MMD is computed alone, as on one thread, and kept in its place.
"""

from __future__ import annotations

import os
from concurrent.futures import ThreadPoolExecutor
from typing import Callable

import numpy as np
import torch
from torch_fidelity.helpers import vassert
from torch_fidelity.metric_kid import KEY_METRIC_KID_MEAN, KEY_METRIC_KID_STD, kid_features_to_metric, mmd2

from bench.cores import usable_cores

# Gram matrices up to this many float32 entries in all (256 MiB) are computed; larger sets take torch-fidelity's loop
MAX_GRAM_ENTRIES = 64 * 1024 * 1024
# the subsets' MMDs on up to this many threads (`_in_parts`): measured 19.4 -> 14.4 ms for 50 subsets of 250 on 2 cores
WORKERS = 2


def gram(a: np.ndarray, b: np.ndarray | None = None) -> np.ndarray:
    """``a a^T`` (or ``a b^T``) by ``np.matmul``, as torch-fidelity's kernel multiplies (float32 in, float32 out)."""
    return np.matmul(a, a.T) if b is None else np.matmul(a, b.T)


def kernel_poly(products: np.ndarray, degree: int, gamma: float, coef0: float) -> np.ndarray:
    """torch-fidelity's ``kernel_poly`` applied to feature products: ``(G * gamma + coef0) ** degree`` (elementwise)."""
    return (products * gamma + coef0) ** degree


def _gamma(features: np.ndarray, gamma: float | None) -> float:
    """torch-fidelity's default: 1 / feature dimension when ``gamma`` is None."""
    return 1.0 / features.shape[1] if gamma is None else gamma


def reference_kernel(ref: np.ndarray, degree: int, gamma: float | None, coef0: float) -> np.ndarray:
    """The kernel of the reference set's whole Gram matrix: the same for every cell of a dataset and kernel, so the
    caller keeps it for `kid_poly`."""
    return kernel_poly(gram(ref), degree, _gamma(ref, gamma), coef0)


def fits(n_gen: int, n_ref: int) -> bool:
    """Whether the three Gram matrices of ``n_gen`` generated and ``n_ref`` reference rows fit `MAX_GRAM_ENTRIES`."""
    return n_gen * n_gen + n_ref * n_ref + n_gen * n_ref <= MAX_GRAM_ENTRIES


def _block(g: np.ndarray, rows: np.ndarray, cols: np.ndarray) -> np.ndarray:
    """``g[np.ix_(rows, cols)]`` (a C-contiguous copy of those entries), in two ``take`` passes: about 2x faster."""
    return g.take(rows, axis=0).take(cols, axis=1)


def kid_poly(features_1: torch.Tensor, features_2: torch.Tensor, *, kid_subsets: int, kid_subset_size: int,
             degree: int, gamma: float | None, coef0: float, rng_seed: int,
             ref_kernel: np.ndarray | None = None) -> dict[str, float]:
    """``kid_features_to_metric(features_1, features_2, kid_kernel="poly", ...)`` of torch-fidelity, bit for bit
    (see the module docstring). ``ref_kernel``: ``reference_kernel(features_2, degree, gamma, coef0)`` when the
    caller keeps it (the reference set's; checked like the rest)."""
    kwargs = dict(kid_subsets=kid_subsets, kid_subset_size=kid_subset_size, kid_kernel="poly",
                  kid_kernel_poly_degree=degree, kid_kernel_poly_gamma=gamma, kid_kernel_poly_coef0=coef0,
                  rng_seed=rng_seed, verbose=False)
    assert torch.is_tensor(features_1) and features_1.dim() == 2
    assert torch.is_tensor(features_2) and features_2.dim() == 2
    assert features_1.shape[1] == features_2.shape[1]
    n1, n2, m = len(features_1), len(features_2), kid_subset_size
    if not fits(n1, n2) or n1 < m or n2 < m:           # too large, or torch-fidelity's own refusal
        return kid_features_to_metric(features_1, features_2, **kwargs)
    x, y = features_1.cpu().numpy(), features_2.cpu().numpy()
    g = _gamma(x, gamma)

    def kernel(block: np.ndarray) -> np.ndarray:
        return kernel_poly(block, degree, g, coef0)

    # the kernel is elementwise, so each subset's kernel block is a block of the kernel of the whole Gram matrix
    kyy = reference_kernel(y, degree, gamma, coef0) if ref_kernel is None else ref_kernel
    vassert(kyy.shape == (n2, n2), "reference kernel matrix does not match the reference features")
    kxx, kxy = kernel(gram(x)), kernel(gram(x, y))
    rng = np.random.RandomState(rng_seed)
    draws = []                                              # torch-fidelity's draws, in its order
    for _ in range(kid_subsets):
        ix = rng.choice(n1, m, replace=False)
        draws.append((ix, rng.choice(n2, m, replace=False)))
    def blocks(i: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:     # (K_XX, K_XY, K_YY) of subset i
        ix, iy = draws[i]
        return _block(kxx, ix, ix), _block(kxy, ix, iy), _block(kyy, iy, iy)

    first = blocks(0) if kid_subsets else None
    if first is not None:                                   # the invariant, checked on this call's data
        f1, f2 = x[draws[0][0]], y[draws[0][1]]
        if not (np.array_equal(first[0], kernel(gram(f1))) and np.array_equal(first[1], kernel(gram(f1, f2)))
                and np.array_equal(first[2], kernel(gram(f2)))):
            return kid_features_to_metric(features_1, features_2, **kwargs)

    def part(lo: int, hi: int) -> list[float]:              # subset 0's blocks are the checked ones
        return [mmd2(*(first if i == 0 else blocks(i))) for i in range(lo, hi)]

    mmds = np.zeros(kid_subsets)
    mmds[:] = [v for chunk in _in_parts(part, kid_subsets) for v in chunk]
    return {KEY_METRIC_KID_MEAN: float(np.mean(mmds)), KEY_METRIC_KID_STD: float(np.std(mmds))}


_pool: ThreadPoolExecutor | None = None


def _forget_pool() -> None:                 # a forked child has none of the parent's threads: it starts its own
    global _pool
    _pool = None


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_forget_pool)


def _in_parts(part: Callable[[int, int], list[float]], n: int) -> list[list[float]]:
    """``part(lo, hi)`` over [0, n) in up to `WORKERS` contiguous pieces, their results in order. The subsets'
    blocks are copies (``take``) and sums that numpy runs without the GIL, so a second core (idle while a cell's
    statistics run: the networks have finished) takes half of them; each subset's value is computed alone as on one
    thread."""
    global _pool
    workers = min(WORKERS, usable_cores(), max(1, n // 8))
    if workers < 2:
        return [part(0, n)]
    if _pool is None:
        _pool = ThreadPoolExecutor(WORKERS, thread_name_prefix="stepbench-kid")
    bounds = [n * i // workers for i in range(workers + 1)]
    futures = [_pool.submit(part, lo, hi) for lo, hi in zip(bounds[1:-1], bounds[2:])]
    first = part(bounds[0], bounds[1])                      # this thread takes the first piece
    return [first, *(f.result() for f in futures)]
