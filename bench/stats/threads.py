"""Replicates of a statistic on the machine's cores: row blocks of the draw matrix on a few Python threads, each
running torch with one intra-op thread.

A replicate's value is computed from its own row of the draw matrix alone (a weighted Gram matrix and its
eigenvalues, a gather and a mean), and torch and LAPACK kernels release the GIL, so blocks of rows run side by side.
Batched ``eigvalsh`` loops over its matrices on one thread whatever ``torch.set_num_threads`` says, and threaded
BLAS inside each small LAPACK call mostly waits, so this is about 2.4x faster on 2 cores for FID's replicates than one
call with 2 torch threads (measured: 200 eigensolves of 128 x 128, 0.063 s vs 0.15 s).

Invariant: the values do not depend on the number of cores or blocks. Every block, also a lone one, runs with one
torch thread (one MKL thread). A statistic whose row values may depend on the rows computed with them passes
``align``: blocks then start at multiples of ``align`` rows, so that its chunks of ``align`` rows are the same ones
whatever the number of blocks (MKL's matrix-vector product gives a row other bits in a block of 21 rows than in one
of 64 on an AVX-512 EPYC); otherwise a row's value does not depend on the other rows of its block
(tests/test_stats_threads.py). Torch's thread count is process-wide: it is set to 1 for the duration and restored;
the threads here run nothing else, and a nested call runs its blocks on the calling thread.
"""

from __future__ import annotations

import threading
from concurrent.futures import ThreadPoolExecutor
from typing import Callable

import numpy as np
import torch

MIN_ROWS = 8                    # rows a block gets at least (smaller draws run as one block)
_state = threading.local()
_toggle = threading.Lock()


def workers() -> int:
    """Threads a draw is split over: torch's intra-op thread count (the cores it was told to use), at most 8."""
    return max(1, min(8, torch.get_num_threads()))


def map_rows(fn: Callable[[np.ndarray], np.ndarray], idx: np.ndarray, n_workers: int | None = None,
             align: int = 1) -> np.ndarray:
    """``fn`` over row blocks of ``idx`` (an (r, n) draw matrix), concatenated in row order; ``fn`` maps (k, n)
    positions to k values. Each block runs with one torch thread and starts at a multiple of ``align`` rows (see
    the module docstring)."""
    idx = np.atleast_2d(idx)
    if getattr(_state, "inside", False):          # called from one of our blocks: already single-threaded
        return np.asarray(fn(idx))
    k = n_workers or workers()
    k = max(1, min(k, len(idx) // max(MIN_ROWS, align)))
    with _toggle:
        before = torch.get_num_threads()
        torch.set_num_threads(1)
        try:
            if k == 1:
                return _inside(fn, idx)
            with ThreadPoolExecutor(k, thread_name_prefix="stepbench-replicates") as pool:
                parts = list(pool.map(lambda b: _inside(fn, b), _blocks(idx, k, align)))
            return np.concatenate(parts)
        finally:
            torch.set_num_threads(before)


def _blocks(idx: np.ndarray, k: int, align: int) -> list[np.ndarray]:
    """``idx`` in ``k`` contiguous blocks of about equal size, each starting at a multiple of ``align`` rows."""
    if align <= 1:
        return np.array_split(idx, k)
    chunks = -(-len(idx) // align)
    bounds = [min(len(idx), align * (chunks * i // k)) for i in range(k + 1)]
    return [idx[lo:hi] for lo, hi in zip(bounds, bounds[1:]) if hi > lo]


def _inside(fn, block: np.ndarray) -> np.ndarray:
    prev = getattr(_state, "inside", False)
    _state.inside = True
    try:
        return np.asarray(fn(block))
    finally:
        _state.inside = prev
