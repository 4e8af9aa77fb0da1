"""Set metrics under resampling, recomputed from a cell's kept features (the reference set fixed).

Two ways, both `bench.stats.paired.Statistic`s over positions into the cell's id-sorted feature rows:

- `accumulator_statistic` (exact, any set metric): per replicate, the metric's own accumulator is rebuilt from the
  resampled state, ids renumbered 0..n-1 (a draw repeats samples; `PerSampleAccumulator.result` refuses duplicate
  ids): ``acc = metric.accumulator(dataset); acc.add_state({"rows": {k: [v[i]]}, "ids": [arange(n)], "labels":
  [labels[i]]}); acc.result()[value]``. It computes every value of the metric per replicate (about 0.1 s for
  fid_is_kid on the mini world at n = 500), so it is the slow path. k-NN values (precision, recall, density,
  coverage) see repeated samples as zero-distance neighbours: their bootstrap is biased, as is known for them.
- fast paths for the values MMHM needs, the same formulas as the metric's: `fd_statistic` (Fréchet distance of
  resampled features to the fixed reference statistics: the covariance of a draw from its sample counts, and
  tr sqrt(S_r S_g) as the sum of square roots of the eigenvalues of R S_g R, R = S_r^(1/2), which are those of
  S_r S_g that torch-fidelity's ``fid_statistics_to_metric`` takes; float64, batched over replicates) and
  `is_statistic` (torch-fidelity's ``isc_features_to_metric`` on the resampled logits, its seeded split order).
  On the full sample both equal the stored values to about 1e-9 relative (tests/test_stats_paired.py). Both run
  their replicates in row blocks on the machine's cores, one torch thread each (`bench.stats.threads`), so their
  values do not depend on the core count.

`FAST` names the fast path of each (metric, value) pair: ``{(source metric, value name): (row name, kind)}``.
"""

from __future__ import annotations

import hashlib
import threading
from collections import OrderedDict
from typing import Any, Callable

import numpy as np
import torch

from bench.stats.paired import Statistic
from bench.stats.threads import map_rows

# (source metric, value name) -> (feature row name, "fd" | "is")
FAST = {("fid_is_kid", "fid"): ("fid", "fd"), ("fid_is_kid", "is"): ("isc", "is")}
MEMORY = 2 ** 27                         # float64 entries of the weighted feature block of one chunk of replicates
# at most this many replicates per chunk: a block of (16, n, d) float64 is reused by the allocator from chunk to
# chunk, where one of all a thread's replicates (51 MB at n = 500, d = 128) was mapped and page-faulted anew on every
# call (12 s of kernel time in the default suite's report). A row's bits may depend on its chunk (MKL's
# matrix-vector product on AVX-512), so `map_rows` starts its blocks at multiples of the chunk (``align``)
CHUNK = 16


def _sym_sqrt(s: np.ndarray) -> np.ndarray:
    w, v = np.linalg.eigh(s)
    return (v * np.sqrt(np.clip(w, 0.0, None))) @ v.T


_MOMENTS: OrderedDict[bytes, tuple[np.ndarray, np.ndarray, float]] = OrderedDict()
_MOMENTS_KEPT = 8                       # reference sets: a report's datasets, a comparison's one
_MOMENTS_LOCK = threading.Lock()        # the report computes them on its statistics threads


def reference_moments(reference) -> tuple[np.ndarray, np.ndarray, float]:
    """(mean, S_r^(1/2), tr S_r) of a fixed reference set (float64), computed once per distinct set (by content):
    every cell of a dataset shares them."""
    ref = np.ascontiguousarray(reference, dtype=np.float64)
    k = hashlib.blake2b(ref.tobytes(), digest_size=16).digest() + repr(ref.shape).encode()
    with _MOMENTS_LOCK:
        hit = _MOMENTS.get(k)
        if hit is not None:
            _MOMENTS.move_to_end(k)
            return hit
    s_r = np.cov(ref, rowvar=False)
    out = (ref.mean(axis=0), _sym_sqrt(s_r), float(np.trace(s_r)))
    with _MOMENTS_LOCK:
        _MOMENTS[k] = out
        while len(_MOMENTS) > _MOMENTS_KEPT:
            _MOMENTS.popitem(last=False)
    return out


def fd_statistic(name: str, features, reference) -> Statistic:
    """Fréchet distance of resampled generated ``features`` (n, d) to ``reference`` features (m, d), fixed.

    With R = S_r^(1/2), the eigenvalues of R S_g R are those of the covariance of the rows x R, so the features
    are transformed once and a replicate costs one weighted Gram matrix and one symmetric eigensolve; tr S_g and
    the mean come from per-row sums. float64 throughout."""
    x = np.asarray(features, dtype=np.float64)
    mu_r, sqrt_r, tr_r = reference_moments(reference)
    shift = x.mean(axis=0)                # centring first: the covariance of a draw is shift-invariant
    xc = torch.as_tensor(x - shift)
    yc = xc @ torch.as_tensor(sqrt_r)                                   # rows x R
    sq = (xc * xc).sum(dim=1)                                                   # |x_i - shift|^2
    mu_r_c = torch.as_tensor(mu_r - shift)
    n, d = x.shape

    step = max(1, min(CHUNK, MEMORY // max(1, n * d)))   # replicates per chunk; blocks start at multiples of it

    def fn(idx: np.ndarray) -> np.ndarray:
        out = []
        m = idx.shape[1]
        for i in range(0, len(idx), step):
            block = torch.as_tensor(idx[i:i + step])
            w = torch.zeros(len(block), n, dtype=torch.float64).scatter_add_(
                1, block, torch.ones(block.shape, dtype=torch.float64))          # (r, n) sample counts
            mu = w @ xc / m                                                       # (r, d), shifted
            nu = w @ yc / m                                                       # the same mean, x R
            z = w.sqrt()[:, :, None] * yc                                         # (r, n, d)
            cov_y = (z.transpose(1, 2) @ z - m * nu[:, :, None] * nu[:, None, :]) / (m - 1)
            ev = torch.linalg.eigvalsh(cov_y).clamp_min(0.0)
            tr_g = (w @ sq - m * (mu * mu).sum(-1)) / (m - 1)
            diff = mu - mu_r_c
            out.append(((diff * diff).sum(-1) + tr_g + tr_r - 2.0 * ev.sqrt().sum(-1)).numpy())
        return np.concatenate(out)
    return Statistic(name, lambda idx: map_rows(fn, idx, align=step), "set (features, Fréchet distance)")


def is_statistic(name: str, logits, splits: int = 10, seed: int = 2020) -> Statistic:
    """Inception Score of resampled ``logits``: torch-fidelity's ``isc_features_to_metric`` (rows shuffled by
    ``RandomState(seed).permutation(n)``, ``splits`` chunks, exp of the mean KL to each chunk's marginal, mean over
    chunks), vectorised over replicates in float64."""
    lg = torch.as_tensor(np.asarray(logits, dtype=np.float64))

    def fn(idx: np.ndarray) -> np.ndarray:
        m = idx.shape[1]                                  # a draw's size: n, or a subset's (sample-size curves)
        perm = torch.as_tensor(np.random.RandomState(seed).permutation(m))
        x = lg[torch.as_tensor(idx)[:, perm]]                                    # (r, m, C), shuffled
        p, log_p = x.softmax(dim=-1), x.log_softmax(dim=-1)
        scores = []
        for i in range(splits):
            lo, hi = i * m // splits, (i + 1) * m // splits
            pc, lpc = p[:, lo:hi], log_p[:, lo:hi]
            q = pc.mean(dim=1, keepdim=True)
            scores.append((pc * (lpc - q.log())).sum(-1).mean(-1).exp())
        return torch.stack(scores, -1).mean(-1).numpy()
    return Statistic(name, lambda idx: map_rows(fn, idx), "set (features, Inception Score)")


def resampled_state(state: dict[str, Any], i: np.ndarray) -> dict[str, Any]:
    """A feature state (rows sorted by sample id) at positions ``i``, ids renumbered 0..len(i)-1, in the list form
    `PerSampleAccumulator.add_state` takes."""
    t = torch.as_tensor(i, dtype=torch.long)
    return {"rows": {k: [torch.as_tensor(v).index_select(0, t)] for k, v in state["rows"].items()},
            "ids": [torch.arange(len(t), dtype=torch.long)],
            "labels": [torch.as_tensor(state["labels"]).long().index_select(0, t)]}


def accumulator_results(make_acc: Callable[[], Any], state: dict[str, Any]) -> Callable[[np.ndarray], dict]:
    """``row -> acc.result()`` of a fresh accumulator fed the resampled state, memoised by the row's content (the
    values of one metric share one result per replicate)."""
    memo: dict[int, dict] = {}

    def result(i: np.ndarray) -> dict:
        k = hash(np.ascontiguousarray(i).tobytes())
        if k not in memo:
            acc = make_acc()
            acc.add_state(resampled_state(state, i))
            memo[k] = acc.result()
        return memo[k]
    return result


def accumulator_statistic(name: str, value: str, results: Callable[[np.ndarray], dict]) -> Statistic:
    """Value ``value`` of a metric recomputed by its own accumulator per replicate (`accumulator_results`)."""
    return Statistic(name, lambda idx: np.array([float(results(i).get(value, np.nan)) for i in idx]),
                     "set (features, metric accumulator)")
