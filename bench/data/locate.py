"""Where a dataset lives: ``options.root``, else ``$STEPBENCH_DATA/<the card's folder>``, else one clear error.

Invariant: a source's conventional folder is read from its `DatasetCard` (``cls.cards``) and written nowhere
else; the dataset constructors, `bench data verify` and the error messages all come through here.
"""

from __future__ import annotations

import os
from pathlib import Path

from bench.data.base import DatasetCard, DatasetError

ENV = "STEPBENCH_DATA"


def data_root(name: str, root: str | None, card: DatasetCard) -> Path:
    """The dataset's location. ``card.get`` says what to download and how to lay it out (used in the errors)."""
    get = card.get or "point options.root at a copy"
    if root is not None:
        p = Path(str(root)).expanduser()
        if not p.exists():
            raise DatasetError(f"dataset {name!r}: options.root {str(p)!r} does not exist; {get}")
        return p
    if card.folder is None:
        raise DatasetError(f"dataset {name!r} has no conventional folder under ${ENV}; set options.root ({get})")
    env = os.environ.get(ENV)
    if env:
        p = Path(env).expanduser() / card.folder
        if p.exists():
            return p
        raise DatasetError(f"dataset {name!r} not found at ${ENV}/{card.folder} ({p}); {get}, or set options.root")
    raise DatasetError(f"dataset {name!r}: neither options.root nor ${ENV} is set; {get} into "
                       f"${ENV}/{card.folder} (or anywhere, then set options.root)")


def card_of(name: str) -> DatasetCard | None:
    """The card of a registered dataset name (None: not registered, its class cannot be imported, or no card)."""
    from bench import registry
    try:
        return registry.DATASETS.resolve(name).card(name)
    except (KeyError, ImportError, registry.RegistryError):
        return None


def conventional_folders() -> dict[str, str]:
    """registry name -> folder under $STEPBENCH_DATA, for every registered dataset whose card names one."""
    from bench import registry
    out = {}
    for name in registry.DATASETS.names():
        card = card_of(name)
        if card is not None and card.folder is not None:
            out[name] = card.folder
    return out
