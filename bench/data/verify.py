"""Checks of local dataset copies, with or without a manifest.

- **Manifests**: ``datasets/<name>.sha256`` in ``sha256sum`` format (``<hex>  <path relative to the dataset
  folder>``), written from a trusted copy by ``bench data manifest NAME --root DIR`` and checked by ``bench data
  verify NAME``. Verification re-reads every byte (no stat cache): its job is to catch changed files.
- **Without a manifest** (none ships: a manifest pins one copy), `check_copy` opens the copy with its dataset
  source, so the layout is checked exactly as a run would read it, compares image and class counts with the
  dataset's card (and, where the card's classes are equal in size, every class's count), and decodes a seeded
  sample of the files.
"""

from __future__ import annotations

import os
import random
import re
import warnings
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
            raise no_folder(name)
        if not os.environ.get(ENV):
            raise DatasetError(f"no --root for {name!r} and ${ENV} is not set (it is looked for at "
                               f"${ENV}/{card.folder})")
        p = Path(os.environ[ENV]).expanduser() / card.folder
    if not p.is_dir():
        raise DatasetError(f"{str(p)!r} is not a folder (dataset {name!r})")
    return p


def no_folder(name: str) -> DatasetError:
    return DatasetError(f"{name!r} has no conventional folder (datasets with one: "
                        f"{', '.join(sorted(conventional_folders()))}); pass --root")


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


# -- without a manifest ---------------------------------------------------------------------------------------
@dataclass
class CopyCheck:
    """What `check_copy` found: the copy's layout and counts beside the card's, the sampled files that do not
    decode, and every mismatch as one line in ``problems``."""
    name: str
    root: str
    layout: str
    images: int
    classes: int
    expected_images: int | None
    expected_classes: int | None
    sampled: int
    unreadable: list[dict] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not (self.problems or self.unreadable)


def known_dataset(name: str):
    """The dataset class registered as ``name``; an unknown name is a `DatasetError` with a did-you-mean."""
    from bench import registry
    if name not in registry.DATASETS:
        raise DatasetError(f"unknown dataset {name!r} ({registry.hint(name, registry.DATASETS.names())})")
    return registry.DATASETS.resolve(name)


def check_copy(name: str, root: str | None = None, sample: int = 200, seed: int = 0) -> CopyCheck:
    """Open the copy with its own source (``root`` or ``$STEPBENCH_DATA/<card folder>``), count its images and
    classes against the card, and decode ``sample`` files drawn with ``seed``. A layout the source cannot read is
    the source's own `DatasetError`."""
    from bench.data import decode as dec
    from bench.data.stream import LabelledImages
    cls = known_dataset(name)
    card = cls.card(name)
    if not issubclass(cls, LabelledImages):
        raise DatasetError(f"dataset {name!r} is not read from local files ({card.get if card else 'no card'}); "
                           "there is nothing to verify")
    if not root and (card is None or card.folder is None):
        raise no_folder(name)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        ds = cls(name, **({"root": root} if root else {}), workers=0)
    items = ds.all_items
    per: dict[int, int] = {}
    for it in items:
        per[it.label] = per.get(it.label, 0) + 1
    where = getattr(ds, "source_path", None) or ds.root
    c = CopyCheck(name, str(where), getattr(ds, "layout", "files"), len(items), len(per),
                  card.images if card else None, card.classes if card else None, 0)
    c.notes += [str(w.message) for w in caught]
    label = card.title if card and card.title else name
    if c.expected_images is not None and c.images != c.expected_images:
        c.problems.append(f"{c.images:,} images; the card ({label}) expects {c.expected_images:,}")
    if c.expected_classes is not None and c.classes != c.expected_classes:
        c.problems.append(f"{c.classes:,} classes with images; the card expects {c.expected_classes:,}")
    if c.expected_images and c.expected_classes and c.expected_images % c.expected_classes == 0:
        each = c.expected_images // c.expected_classes
        off = sorted((y, k) for y, k in per.items() if k != each)
        if off:
            shown = ", ".join(f"{ds.class_names[y]}: {k}" for y, k in off[:5])
            c.problems.append(f"{len(off)} of the {c.classes:,} classes with images do not hold {each} each "
                              f"({shown}{', ...' if len(off) > 5 else ''})")
    picks = sorted(random.Random(seed).sample(range(len(items)), min(sample, len(items))))
    c.sampled = len(picks)
    for it, data in ds.reader.iterate([items[i] for i in picks]):
        try:
            if isinstance(data, Exception):
                raise data
            dec.decode(data, check_only=True)
        except dec.DecodeError as e:
            c.unreadable.append({"path": it.key, "error": str(e)})
    return c
