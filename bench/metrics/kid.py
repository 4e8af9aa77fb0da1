"""KID (polynomial kernel) as torch-fidelity computes it, from kernel blocks computed once per cell.

torch-fidelity's ``kid_features_to_metric`` draws ``kid_subsets`` pairs of subsets (``RandomState(seed).choice``,
generated subset then reference subset) and, for each, multiplies three ``subset_size`` x ``subset_size`` feature
blocks (``np.matmul``: X X^T, Y Y^T, X Y^T), applies the kernel ``(G * gamma + coef0) ** degree`` and takes the
unbiased MMD^2 (``mmd2``, torch-fidelity/torch_fidelity/metric_kid.py). The products of every subset are entries of
three Gram matrices that do not depend on the subset: X X^T of all generated features, Y Y^T of all reference
features (the same for every cell of a dataset, so its kernel is kept by the caller: `ReferenceKernel`) and X Y^T.
`kid_poly` computes those once, applies torch-fidelity's own kernel expression to each whole matrix (elementwise: a
block of the kernel is the kernel of the block), reads each subset's kernel blocks out of them and takes the three
sums ``mmd2`` takes of them (`_within_sum`, `_between_sum`), with ``mmd2``'s own expressions on blocks of the same
shape and dtype, then combines them as ``mmd2`` does (`_unbiased`), in the same subset order with the same draws.

The reference subsets' sum depends only on the reference kernel and the draws, and the draws only on the set sizes,
the subset size and count and the seed: `ReferenceKernel` keeps the sums per draw sequence, so every cell after the
first of a dataset reads no reference block (the draws are kept per process: `draws`).

Invariant: the values are those of torch-fidelity's function, bit for bit. An entry of a float32 matrix product is
one dot product accumulated over the feature dimension; BLAS splits the work over rows and columns of the output
(tiles, threads), not over that dimension, so the entry does not depend on which other rows were multiplied with
it; nor does an elementwise kernel value depend on where in an array it is computed; a sum of an array with the
same shape, dtype and bits is the same sum. Those are properties of the BLAS and of numpy's loops, not guarantees,
so they are checked on every call: the first subset's three blocks are also multiplied and put through the kernel
directly (as torch-fidelity does), compared with the blocks read from the kernel matrices, and torch-fidelity's
``mmd2`` of them is compared with this module's value of that subset (kept reference sums included); on any
difference, and when the Gram matrices would be large (`MAX_GRAM_ENTRIES`), torch-fidelity's own function computes
the value instead. ``tests/test_values_unchanged.py`` compares both paths with ``==``. The subsets after the check
are split over two threads where the process has two cores (`_in_parts`): each subset's sums are computed alone,
as on one thread, and kept in their place.
"""

from __future__ import annotations

import functools
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


class ReferenceKernel:
    """The kernel of the reference set's whole Gram matrix (``matrix``: the same for every cell of a dataset and
    kernel, so the caller keeps it for `kid_poly`) and, per draw sequence, each reference subset's within-set sum
    (``sums``: filled by `kid_poly`, read by the next cells of the same sizes and seed)."""

    def __init__(self, matrix: np.ndarray):
        self.matrix = matrix
        self.sums: dict[tuple[int, int, int, int], list] = {}


def reference_kernel(ref: np.ndarray, degree: int, gamma: float | None, coef0: float) -> ReferenceKernel:
    """The reference set's kernel matrix, kept by the caller for `kid_poly`."""
    return ReferenceKernel(kernel_poly(gram(ref), degree, _gamma(ref, gamma), coef0))


def fits(n_gen: int, n_ref: int) -> bool:
    """Whether the three Gram matrices of ``n_gen`` generated and ``n_ref`` reference rows fit `MAX_GRAM_ENTRIES`."""
    return n_gen * n_gen + n_ref * n_ref + n_gen * n_ref <= MAX_GRAM_ENTRIES


# a column ``take`` (one gathered element at a time) costs about this many row ``take`` elements (whole rows copied)
GATHER_COST = 5


def _block(g: np.ndarray, rows: np.ndarray, cols: np.ndarray) -> np.ndarray:
    """``g[np.ix_(rows, cols)]`` (a C-contiguous copy of those entries), in two ``take`` passes (about 2x faster),
    the cheaper order first: rows then columns copies len(rows) whole rows, columns then rows gathers the columns of
    every row (measured for 250 of 250 x 1,000 entries: 78 us rows first, 48 us columns first; of 500 x 1,000: 82
    and 142 us). Either order copies the same entries."""
    m_r, m_c = len(rows), len(cols)
    rows_first = m_r * g.shape[1] + GATHER_COST * m_r * m_c
    cols_first = GATHER_COST * g.shape[0] * m_c + m_r * m_c
    if cols_first < rows_first:
        return g.take(cols, axis=1).take(rows, axis=0)
    return g.take(rows, axis=0).take(cols, axis=1)


@functools.lru_cache(maxsize=8)
def draws(n1: int, n2: int, m: int, subsets: int, seed: int) -> tuple[tuple[np.ndarray, np.ndarray], ...]:
    """torch-fidelity's subset draws, in its order: ``subsets`` pairs (generated rows, reference rows) of ``m`` from
    ``RandomState(seed)``, ``choice`` without replacement, generated first. Read-only arrays, kept per process."""
    rng = np.random.RandomState(seed)
    out = []
    for _ in range(subsets):
        ix, iy = rng.choice(n1, m, replace=False), rng.choice(n2, m, replace=False)
        ix.setflags(write=False)
        iy.setflags(write=False)
        out.append((ix, iy))
    return tuple(out)


def _within_sum(k: np.ndarray):
    """``mmd2``'s ``Kt_XX_sum`` (or ``Kt_YY_sum``) of one subset's within-set kernel block: its off-diagonal sum,
    by the same expressions (row sums less the diagonal, then their sum)."""
    return (k.sum(axis=1) - np.diagonal(k)).sum()


def _between_sum(k: np.ndarray):
    """``mmd2``'s ``K_XY_sum`` of one subset's cross block (column sums, then their sum)."""
    return k.sum(axis=0).sum()


def _unbiased(xx, yy, xy, m: int):
    """``mmd2``'s unbiased estimate from its three sums, by its expressions in its order."""
    mmd2 = (xx + yy) / (m * (m - 1))
    mmd2 -= 2 * xy / (m * m)
    return mmd2


def kid_poly(features_1: torch.Tensor, features_2: torch.Tensor, *, kid_subsets: int, kid_subset_size: int,
             degree: int, gamma: float | None, coef0: float, rng_seed: int,
             ref_kernel: ReferenceKernel | None = None) -> dict[str, float]:
    """``kid_features_to_metric(features_1, features_2, kid_kernel="poly", ...)`` of torch-fidelity, bit for bit
    (see the module docstring). ``ref_kernel``: ``reference_kernel(features_2, degree, gamma, coef0)`` when the
    caller keeps it (the reference set's; checked like the rest, and given this call's reference sums)."""
    kwargs = dict(kid_subsets=kid_subsets, kid_subset_size=kid_subset_size, kid_kernel="poly",
                  kid_kernel_poly_degree=degree, kid_kernel_poly_gamma=gamma, kid_kernel_poly_coef0=coef0,
                  rng_seed=rng_seed, verbose=False)
    assert torch.is_tensor(features_1) and features_1.dim() == 2
    assert torch.is_tensor(features_2) and features_2.dim() == 2
    assert features_1.shape[1] == features_2.shape[1]
    n1, n2, m = len(features_1), len(features_2), kid_subset_size
    if not fits(n1, n2) or n1 < m or n2 < m or kid_subsets < 1:    # too large, torch-fidelity's refusal, or nothing
        return kid_features_to_metric(features_1, features_2, **kwargs)
    x, y = features_1.cpu().numpy(), features_2.cpu().numpy()
    g = _gamma(x, gamma)

    def kernel(block: np.ndarray) -> np.ndarray:
        return kernel_poly(block, degree, g, coef0)

    # the kernel is elementwise, so each subset's kernel block is a block of the kernel of the whole Gram matrix
    ref = reference_kernel(y, degree, gamma, coef0) if ref_kernel is None else ref_kernel
    kyy = ref.matrix
    vassert(kyy.shape == (n2, n2), "reference kernel matrix does not match the reference features")
    kxx, kxy = kernel(gram(x)), kernel(gram(x, y))
    pairs = draws(n1, n2, m, kid_subsets, rng_seed)
    key = (n1, m, kid_subsets, rng_seed)
    kept = ref.sums.get(key)                                # the reference subsets' sums of an earlier cell

    def sums(i: int) -> tuple:                              # (generated, reference, cross) sums of subset i
        ix, iy = pairs[i]
        yy = kept[i] if kept is not None else _within_sum(_block(kyy, iy, iy))
        return _within_sum(_block(kxx, ix, ix)), yy, _between_sum(_block(kxy, ix, iy))

    # the invariant, checked on this call's data: subset 0's blocks as torch-fidelity computes them, and its value
    # (from the blocks just read and checked, the kept reference sum if there is one)
    ix, iy = pairs[0]
    f1, f2 = x[ix], y[iy]
    direct = kernel(gram(f1)), kernel(gram(f1, f2)), kernel(gram(f2))
    read = _block(kxx, ix, ix), _block(kxy, ix, iy), _block(kyy, iy, iy)
    first = (_within_sum(read[0]), kept[0] if kept is not None else _within_sum(read[2]), _between_sum(read[1]))
    if not (all(np.array_equal(a, b) for a, b in zip(read, direct)) and _unbiased(*first, m) == mmd2(*direct)):
        return kid_features_to_metric(features_1, features_2, **kwargs)

    def part(lo: int, hi: int) -> list[tuple]:              # subset 0's sums are the checked ones
        return [first if i == 0 else sums(i) for i in range(lo, hi)]

    per_subset = [s for chunk in _in_parts(part, kid_subsets) for s in chunk]
    if kept is None:
        ref.sums[key] = [s[1] for s in per_subset]
    mmds = np.zeros(kid_subsets)
    mmds[:] = [_unbiased(*s, m) for s in per_subset]
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
