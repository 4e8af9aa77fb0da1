"""Where a dataset lives: ``options.root``, else ``$STEPBENCH_DATA/<conventional folder>``, else one clear error."""

from __future__ import annotations

import os
from pathlib import Path

from bench.data.base import DatasetError

ENV = "STEPBENCH_DATA"


def data_root(name: str, root: str | None, folder: str, get: str) -> Path:
    """The dataset's location. ``get`` says what to download and how to lay it out (used in the error)."""
    if root is not None:
        p = Path(str(root)).expanduser()
        if not p.exists():
            raise DatasetError(f"dataset {name!r}: options.root {str(p)!r} does not exist; {get}")
        return p
    env = os.environ.get(ENV)
    if env:
        p = Path(env).expanduser() / folder
        if p.exists():
            return p
        raise DatasetError(f"dataset {name!r} not found at ${ENV}/{folder} ({p}); {get}, or set options.root")
    raise DatasetError(f"dataset {name!r}: neither options.root nor ${ENV} is set; {get} into "
                       f"${ENV}/{folder} (or anywhere, then set options.root)")
