"""Whether a metric network's last, short chunk may skip its zero padding: checked once per shape, on real rows.

`bench.metrics.base.fixed_shape_forward` runs a network on chunks of exactly ``batch_size`` rows, padding the last
one with zeros, because a kernel may pick its blocking (and so its summation order) by the batch shape. Many do not:
measured on this project's 2-core Xeon, the mini world's classifier, CLIP and PickScore towers give every row the
same bits in batches of 25, 50, 64, 100, 125, 250 and 500. Where that holds, the padding of a short chunk is wasted
work: a 250-sample cell with 500-row metric batches runs each network on twice its rows.

So a caller that names its network (``same_bits_key``: a hashable identity of the computation, such as the metric's
code version, extractor, weights hash, layers and device; equal keys must mean the same function) lets a short
chunk run at its own shape, once that shape has been seen to give exactly the padded batch's bits. The first short chunk
of a shape runs both ways: the padded batch (whose rows are the result, as before) and the chunk alone, compared
with ``torch.equal`` on every output. Equal: later chunks of that shape run alone. Different (or the network is
not deterministic): that shape stays padded. Verdicts are kept for the process, per network key (so a new Runner
loading the same network does not check again; at most `MAX_NETWORKS` keys, the oldest dropped) and per (batch
size, rows, row shape, dtype, device, numerics mode), at most `MAX_SHAPES` shapes a network; further shapes are
padded unchecked. The first short chunk of a shape costs one extra pass over its rows; every later one saves the
padding.

Invariant: a row's output is the bits the padded fixed-shape batch gives it, whichever path ran. A kernel's
blocking is chosen by shape, not by data, so equality on one real chunk of a shape (hundreds of outputs, each a
long reduction) stands for every chunk of that shape; a shape that ever differed is never trusted.
``tests/test_remainder_shapes.py`` covers a batch-dependent network (padded each time, equal to the padded result)
and a batch-independent one (checked once, then run alone), and ``tests/test_values_unchanged.py`` compares the
cells end to end.
"""

from __future__ import annotations

import threading
from typing import Any, Callable

import torch

MAX_SHAPES = 8                 # short-chunk shapes checked per network; more (odd --limit values) stay padded
MAX_NETWORKS = 64              # network keys remembered; the oldest is dropped first

_verdicts: dict[Any, dict[tuple, bool]] = {}
_lock = threading.Lock()


def as_list(y) -> list[torch.Tensor]:
    """A network's outputs as a list: a tuple or list of tensors, or one tensor."""
    return list(y) if isinstance(y, (tuple, list)) else [y]


def signature(chunk: torch.Tensor, batch_size: int, mode: str) -> tuple:
    """What a verdict holds for: the batch size padded to, the rows, the row shape, dtype, device and numerics."""
    return (batch_size, len(chunk), tuple(chunk.shape[1:]), str(chunk.dtype), str(chunk.device), mode)


def verdict(key: Any, sig: tuple) -> bool | None:
    """True: ``sig`` gave the padded bits; False: it did not, or too many shapes were checked; None: not seen."""
    with _lock:
        known = _verdicts.get(key)
        if known is None:
            return None
        if sig in known:
            return known[sig]
        return None if len(known) < MAX_SHAPES else False


def record(key: Any, sig: tuple, same: bool) -> None:
    with _lock:
        if key not in _verdicts:
            while len(_verdicts) >= MAX_NETWORKS:
                _verdicts.pop(next(iter(_verdicts)))
            _verdicts[key] = {}
        _verdicts[key][sig] = bool(same)


def verdicts(key: Any) -> dict[tuple, bool]:
    """Every verdict about ``key``: `signature` -> whether that short shape gave the padded bits (a copy)."""
    with _lock:
        return dict(_verdicts.get(key, {}))


def forget(key: Any) -> None:
    """Drop every verdict about ``key`` (tests; a network whose weights were changed in place under the same key)."""
    with _lock:
        _verdicts.pop(key, None)


def short_chunk(fn: Callable[[torch.Tensor], Any], chunk: torch.Tensor, batch_size: int, key: Any,
                mode: str) -> list[torch.Tensor]:
    """``fn``'s outputs for ``chunk`` (fewer than ``batch_size`` rows), the bits of the zero-padded batch: run alone
    where that shape was seen to give them, padded otherwise (and, the first time, both ways to find out)."""
    n = len(chunk)
    sig = signature(chunk, batch_size, mode) if key is not None else None
    known = verdict(key, sig) if key is not None else False
    if known:
        return as_list(fn(chunk))
    padded = torch.cat([chunk, chunk.new_zeros((batch_size - n, *chunk.shape[1:]))])
    out = [t[:n] for t in as_list(fn(padded))]
    if known is None:
        alone = as_list(fn(chunk))
        record(key, sig, len(alone) == len(out) and all(
            torch.is_tensor(a) and a.shape == b.shape and a.dtype == b.dtype and torch.equal(a, b)
            for a, b in zip(alone, out)))
    return out
