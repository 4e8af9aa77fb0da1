"""How many CPU cores this process may use: one definition for every "is there a spare core" decision (the runner's
statistics thread, KID's subsets, the report's second process). Imports nothing heavy (the report stays torch-free).
"""

from __future__ import annotations

import os


def usable_cores() -> int:
    """How many CPU cores this process may run on (its affinity mask; the machine's count where none is known)."""
    try:
        return len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        return os.cpu_count() or 1
