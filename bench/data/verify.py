"""sha256 manifests of local dataset copies: ``datasets/<name>.sha256`` in ``sha256sum`` format
(``<hex>  <path relative to the dataset folder>``), checked by ``bench data verify NAME [--root DIR]`` and written
by ``bench data manifest NAME [--root DIR]``. Verification re-reads every byte (no stat cache): its job is to
catch changed files."""

from __future__ import annotations

import os
import re
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

from bench.data.base import DatasetError
from bench.data.locate import ENV, card_of, conventional_folders
from bench.provenance import sha256_file

CARDS = Path(__file__).resolve().parents[2] / "datasets"
LINE = re.compile(r"^([0-9a-fA-F]{64}) [ *](.+)$")


def manifest_path(name: str) -> Path:
    """datasets/<card's manifest name>.sha256 (a name without a card: datasets/<name>.sha256)."""
    card = card_of(name)
    return CARDS / f"{(card.manifest if card is not None and card.manifest else name)}.sha256"


def dataset_dir(name: str, root: str | None) -> Path:
    """The folder to verify: ``--root``, else ``$STEPBENCH_DATA/<the card's folder>`` of a registered name."""
    if root:
        p = Path(root).expanduser()
    else:
        card = card_of(name)
        if card is None or card.folder is None:
            from bench import registry
            if name not in registry.DATASETS:
                raise DatasetError(f"unknown dataset {name!r} ({registry.hint(name, registry.DATASETS.names())}); "
                                   "for a copy of another dataset pass --root")
            raise DatasetError(f"{name!r} has no conventional folder (datasets with one: "
                               f"{', '.join(sorted(conventional_folders()))}); pass --root")
        if not os.environ.get(ENV):
            raise DatasetError(f"no --root for {name!r} and ${ENV} is not set (it is looked for at "
                               f"${ENV}/{card.folder})")
        p = Path(os.environ[ENV]).expanduser() / card.folder
    if not p.is_dir():
        raise DatasetError(f"{str(p)!r} is not a folder (dataset {name!r})")
    return p


def read_manifest(path: Path) -> dict[str, str]:
    out = {}
    for n, line in enumerate(path.read_text().splitlines(), 1):
        if not line.strip() or line.startswith("#"):
            continue
        m = LINE.match(line)
        if not m:
            raise DatasetError(f"{path}:{n}: expected '<sha256>  <relative path>', got {line[:80]!r}")
        out[m.group(2)] = m.group(1).lower()
    return out


def local_files(root: Path) -> list[str]:
    return sorted(p.relative_to(root).as_posix() for p in root.rglob("*")
                  if p.is_file() and not any(s.startswith(".") for s in p.relative_to(root).parts))


def hash_all(root: Path, rels: list[str], threads: int = 8) -> dict[str, str]:
    with ThreadPoolExecutor(threads) as ex:
        return dict(zip(rels, ex.map(lambda r: sha256_file(root / r), rels)))


@dataclass
class Verification:
    checked: int = 0
    missing: list[str] = field(default_factory=list)
    changed: list[str] = field(default_factory=list)
    extra: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not (self.missing or self.changed or self.extra)


def verify(root: Path, manifest: dict[str, str]) -> Verification:
    present = set(local_files(root))
    v = Verification(missing=sorted(r for r in manifest if r not in present),
                     extra=sorted(r for r in present if r not in manifest))
    common = sorted(r for r in manifest if r in present)
    got = hash_all(root, common)
    v.checked = len(common)
    v.changed = [r for r in common if got[r] != manifest[r]]
    return v


def write_manifest(root: Path, out: Path) -> int:
    rels = local_files(root)
    hashes = hash_all(root, rels)
    out.write_text("".join(f"{hashes[r]}  {r}\n" for r in rels))
    return len(rels)
