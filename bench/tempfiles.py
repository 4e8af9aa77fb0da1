"""Temporary names for atomic writes (write to a temp file beside the target, then ``os.replace``). Torch-free.

Invariant: a name is unique across processes and machines (host, pid and a random token), so concurrent writers
on nodes that share a filesystem, which can have the same pid, never write the same temp file."""

from __future__ import annotations

import os
import secrets
import socket
from pathlib import Path


def temp_name(path: Path) -> Path:
    """A hidden temp file beside ``path``: ``.<name>.<host>.<pid>.<token>.tmp``."""
    path = Path(path)
    return path.with_name(f".{path.name}.{socket.gethostname()}.{os.getpid()}.{secrets.token_hex(4)}.tmp")
