"""OpenBLAS on one thread around the matrix products of a cell's statistics (FID's mean and covariance, KID).

numpy's OpenBLAS keeps its own worker threads, apart from torch's OpenMP team, and they busy-wait for a while after
every call. On a CPU machine the next network forward then shares the cores with spinning threads: measured on a
loaded 2-core machine, a generator batch right after the FID/KID statistics took a median 420 ms against 280 ms after
a pause, and 340 ms either way with OpenBLAS on one thread. The statistics' matrices are small (the feature dimension
squared), so one thread costs them little; `single_threaded` sets every loaded OpenBLAS to one thread for the block
and restores the previous counts after it.

Invariant: the values do not change. OpenBLAS divides a matrix product (gemm, syrk) among threads by blocks of the
output, each entry one dot product in the same order whatever the thread count, so products are the same bits on one
thread as on many. LAPACK's eigensolver is not (measured: at 256 features and more its eigenvalues change with the
thread count), so FID's eigenvalues stay outside the block, except where `single_threaded_if_same` has seen one
thread give the same bits at that size. ``tests/test_values_unchanged.py`` compares what is
computed inside the block with torch-fidelity's own functions outside it, with ``==``. Where OpenBLAS cannot be found
(another BLAS, no ``/proc/self/maps``), the block changes nothing. The setting is process-wide while a block runs
(the runner's statistics thread: torch's own BLAS, used by the networks meanwhile, is not OpenBLAS).
"""

from __future__ import annotations

import ctypes
import sys
import threading
from contextlib import contextmanager
from typing import Callable, Hashable, Iterator, TypeVar

T = TypeVar("T")

# (set, get) symbol names: OpenBLAS's own, and the prefixed/suffixed ones of the scipy-openblas wheels numpy and
# scipy ship
_SYMBOLS = [("openblas_set_num_threads", "openblas_get_num_threads"),
            ("scipy_openblas_set_num_threads64_", "scipy_openblas_get_num_threads64_"),
            ("scipy_openblas_set_num_threads", "scipy_openblas_get_num_threads"),
            ("openblas_set_num_threads64_", "openblas_get_num_threads64_")]
_lock = threading.Lock()
_depth = 0
_saved: list[tuple] = []


_found: tuple[int, list[tuple]] | None = None     # (len(sys.modules) when scanned, what `_scan` found)


def _libraries() -> list[tuple]:
    """(set, get) functions of every OpenBLAS loaded in this process. The scan of ``/proc/self/maps`` (~3 ms with
    torch's hundreds of mappings, once per cell) is repeated only after more modules were imported: an OpenBLAS is
    loaded by importing the extension module linked to it (numpy's, scipy's)."""
    global _found
    imported = len(sys.modules)
    if _found is None or _found[0] != imported:
        _found = (imported, _scan())
    return _found[1]


def _scan() -> list[tuple]:
    """(set, get) functions of every OpenBLAS mapped into this process now (read from ``/proc/self/maps``)."""
    paths = set()
    try:
        with open("/proc/self/maps") as f:
            for line in f:
                fields = line.split()
                name = fields[-1].rsplit("/", 1)[-1].lower() if len(fields) >= 6 else ""
                if "openblas" in name and (name.endswith(".so") or ".so." in name):
                    paths.add(fields[-1])
    except OSError:
        return []
    out = []
    for path in sorted(paths):
        try:
            lib = ctypes.CDLL(path)
        except OSError:
            continue
        for set_name, get_name in _SYMBOLS:
            if hasattr(lib, set_name) and hasattr(lib, get_name):
                setter, getter = getattr(lib, set_name), getattr(lib, get_name)
                setter.argtypes, setter.restype, getter.restype = [ctypes.c_int], None, ctypes.c_int
                out.append((setter, getter))
                break
    return out


@contextmanager
def threads(count: int) -> Iterator[None]:
    """Every loaded OpenBLAS on ``count`` threads inside the block (nested and concurrent blocks: the outermost one
    sets and restores); the previous thread counts restored on exit, also when the block raises."""
    global _depth
    with _lock:
        if _depth == 0:
            _saved[:] = [(setter, getter()) for setter, getter in _libraries()]
            for setter, _ in _saved:
                setter(int(count))
        _depth += 1
    try:
        yield
    finally:
        with _lock:
            _depth -= 1
            if _depth == 0:
                for setter, previous in _saved:
                    setter(previous)
                _saved.clear()


def single_threaded():
    """`threads` (1): what the statistics' matrix products run under."""
    return threads(1)


def thread_counts() -> list[int]:
    """The thread count of every loaded OpenBLAS now (for tests and logs)."""
    return [getter() for _, getter in _libraries()]


# (computation key, thread counts it was checked at) -> whether one thread gave the same result
_same_bits: dict[Hashable, bool] = {}
MAX_VERDICTS = 256


def single_threaded_if_same(key: Hashable, fn: Callable[[], T], same: Callable[[T, T], bool]) -> T:
    """``fn()`` on one OpenBLAS thread where that was seen to give the bits of the process's own thread counts,
    else on those. ``key``: the computation and every shape it depends on (OpenBLAS and LAPACK choose their blocking
    and threading by sizes, never by values); the first call per key (and per thread counts) runs ``fn`` both ways
    on its real input, returns the default-threads result and keeps ``same(one_thread, default)`` as the verdict.

    Why: LAPACK's eigensolver (FID) on many threads leaves OpenBLAS's workers busy-waiting for ~0.1 s after it
    returns, and the next torch computation (precision/recall, the next cell's network forward) shares the cores
    with them: measured in one setting's run on the 2-core ``make perf`` machine, precision/recall after FID took
    2.4-95 ms (median 6.6), and 2.6-3.3 ms with the eigensolver on one thread. Where one thread changes its bits
    (FID measured on this machine's 2 threads: the same bits at 128 features, other bits at 256 and more) the
    verdict is False and nothing changes."""
    checked_at = (key, tuple(thread_counts()))
    verdict = _same_bits.get(checked_at)
    if verdict is None:
        default = fn()
        with single_threaded():
            one = fn()
        if len(_same_bits) >= MAX_VERDICTS:
            _same_bits.clear()
        _same_bits[checked_at] = bool(same(one, default))
        return default
    if verdict:
        with single_threaded():
            return fn()
    return fn()
