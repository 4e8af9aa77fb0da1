"""The C allocator of a process that generates and scores: freed memory is kept for reuse, not handed back.

glibc's malloc serves a block above its mmap threshold (128 KiB at start, then raised only to the largest block
freed so far) with its own ``mmap`` and unmaps it on free, and gives the heap's top back to the kernel past its trim
threshold. A network's activations are megabytes, allocated and freed at every layer of every forward, so they kept
coming back as fresh pages the kernel had to fault in and zero. On the 2-core CPU of ``make perf`` that cost 5-13%
of mini-sit's time (a batch of 128 through its 4 CFG steps: 364-372 ms against 313-335 ms with the settings below,
processes alternated) and made the same network calls 3-12% slower inside a cell than replayed on inputs already in
place, the largest part of a setting's overhead against its floor.

`keep_freed_memory` sets ``M_MMAP_THRESHOLD`` to 32 MiB (glibc's largest: blocks below it come from the heap, which
reuses them) and ``M_TRIM_THRESHOLD`` to 256 MiB (freed memory at the heap's top up to that size stays with the
process), once per process, where the C library is glibc. It leaves the allocator alone where the user chose its
settings (``GLIBC_TUNABLES`` naming ``glibc.malloc``, or a ``MALLOC_*_`` variable), with ``STEPBENCH_MALLOC=default``,
and on other C libraries (musl, macOS, Windows). The allocator decides where memory is, never what is computed:
stored values are the same with and without it (tests/test_values_unchanged.py); what was done goes into each run's
environment record (`state`).
"""

from __future__ import annotations

import ctypes
import os
import threading
from typing import Any

M_TRIM_THRESHOLD, M_MMAP_THRESHOLD = -1, -3          # glibc's malloc.h
# (name in `state`, mallopt parameter, value)
SETTINGS = (("mmap_threshold", M_MMAP_THRESHOLD, 32 << 20), ("trim_threshold", M_TRIM_THRESHOLD, 256 << 20))
# glibc's own environment variables for these settings (MALLOC_<NAME>_, with the trailing underscore)
USER_VARIABLES = ("MALLOC_MMAP_THRESHOLD_", "MALLOC_TRIM_THRESHOLD_", "MALLOC_TOP_PAD_", "MALLOC_MMAP_MAX_",
                  "MALLOC_ARENA_MAX")
OPT_OUT = "STEPBENCH_MALLOC"

_lock = threading.Lock()
_state: dict[str, Any] | None = None


def _glibc():
    """The process's own C library (its ``mallopt``) when it is glibc, else None: the symbols already loaded, no
    library search."""
    try:
        if not os.confstr("CS_GNU_LIBC_VERSION").startswith("glibc"):    # glibc answers "glibc 2.36"
            return None
        return ctypes.CDLL(None)
    except (AttributeError, ValueError, OSError):                        # no confstr, or not this name
        return None


def _left_alone(environ) -> str | None:
    """Why the allocator is left as it is (None: it may be set)."""
    if environ.get(OPT_OUT, "").strip().lower() == "default":
        return f"{OPT_OUT}=default"
    if "glibc.malloc" in environ.get("GLIBC_TUNABLES", ""):
        return "GLIBC_TUNABLES sets glibc.malloc"
    chosen = [v for v in USER_VARIABLES if v in environ]
    if chosen:
        return f"{chosen[0]} is set"
    return None


def _default(reason: str) -> dict[str, Any]:
    return {"allocator": "default", "reason": reason}


def _apply(environ, libc) -> dict[str, Any]:
    """Set the thresholds unless left alone; what was done, as `state` reports it."""
    reason = _left_alone(environ)
    if reason:
        return _default(reason)
    lib = _glibc() if libc is None else libc
    if lib is None:
        return _default("not glibc")
    refused = [name for name, param, value in SETTINGS if lib.mallopt(param, value) != 1]
    if refused:
        return _default(f"mallopt refused {', '.join(refused)}")
    return {"allocator": "glibc", **{name: value for name, _, value in SETTINGS}}


def keep_freed_memory(environ=None, libc=None) -> dict[str, Any]:
    """Set the thresholds once per process (see the module docstring) and return `state`. ``environ`` and ``libc``
    (an object with ``mallopt``) stand in for the process's, in tests."""
    global _state
    with _lock:
        if _state is None:
            _state = _apply(os.environ if environ is None else environ, libc)
        return dict(_state)


def state() -> dict[str, Any]:
    """What `keep_freed_memory` did in this process: ``{"allocator": "glibc", "mmap_threshold": ..., "trim_threshold":
    ...}``, ``{"allocator": "default", "reason": ...}``, or ``{"allocator": "default", "reason": "not set"}`` before
    any engine started."""
    with _lock:
        return dict(_state) if _state is not None else _default("not set")


def _reset_for_tests() -> None:
    global _state
    with _lock:
        _state = None
