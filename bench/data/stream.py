"""The shared machinery of every file-backed dataset: listing -> scan -> streamed, decoded batches.

A source lists its images as ``Item(key, label, ref)`` in dataset order and gives a ``Reader`` that turns refs into
bytes or paths. ``LabelledImages`` then implements the `Dataset` base class:

- ``reference_batches`` decodes in torch DataLoader workers (``options.workers``, default min(4, cpus); 0 = in
  process). Worker w handles chunks w, w + W, ... of ``batch_size`` items and the loader interleaves them round
  robin, so batches arrive in dataset order; at most ``workers * 2`` batches are in flight, never the whole set.
- **Unreadable files** are never a crash. The first time a set's labels, length or failures are needed, a scan
  decodes every image once (in the same workers) and lists the failures; the result is cached on disk by content
  (so later runs do not rescan). Failed images are left out of ``labels()`` and ``reference_batches`` alike, so
  the two always agree; a per_reference plan therefore has one sample per *decodable* image, numbered 0..n-1 in
  dataset order. ``decode_failures`` lists them as ``{"path": key, "error": message}``. A set with no readable
  image is a `DatasetError` ("no readable images in ..."), never an empty reference set.
- ``options.half: a|b`` keeps alternate images of each class (within-class rank even -> a, odd -> b); the other
  half is the ``holdout`` that a ``real`` model draws from, so a real-vs-real row compares two disjoint halves:
  each metric's floor.
"""

from __future__ import annotations

import json
import os
import warnings
from dataclasses import dataclass
from typing import Annotated, Any, Iterable, Iterator, Literal

import numpy as np
import PIL
import torch
from pydantic import Field, field_validator

from bench.data import decode as dec
from bench.data.base import Dataset, DatasetCard, DatasetError, StrictOptions
from bench.data.hashing import cache_dir, digest

SCAN_VERSION = "scan/1"
PROVENANCE_LIMIT = 1000          # entries of a list kept in a cell's provenance
NonEmpty = Annotated[str, Field(min_length=1)]               # a string option that must say something
MaybeStr = NonEmpty | None                                   # ... or be left out (None)


@dataclass(frozen=True)
class Item:
    key: str          # stable name (relative path or member name): in fingerprints and failure lists
    label: int
    ref: Any          # what the reader needs: a relative path, a tar member index, a row index


class Reader:
    """Turns items into decodable data. Picklable; each worker opens its own handles."""

    def read(self, item: Item):
        raise NotImplementedError

    def iterate(self, items: list[Item]) -> Iterator[tuple[Item, Any]]:
        """(item, data) for items in the given order (sources that stream, like a tar, override this)."""
        for it in items:
            try:
                yield it, self.read(it)
            except Exception as e:      # a missing or unreadable file counts as a decode failure
                yield it, dec.DecodeError(f"{type(e).__name__}: {e}")


class _Chunks(torch.utils.data.IterableDataset):
    def __init__(self, reader: Reader, items: list[Item], chunk: int, transform: str, size: int | None, scan: bool):
        super().__init__()
        self.reader, self.items, self.chunk = reader, items, chunk
        self.transform, self.size, self.scan = transform, size, scan

    def __iter__(self):
        info = torch.utils.data.get_worker_info()
        w, nw = (info.id, info.num_workers) if info else (0, 1)
        n_chunks = (len(self.items) + self.chunk - 1) // self.chunk
        mine = list(range(w, n_chunks, nw))
        wanted = [it for c in mine for it in self.items[c * self.chunk:(c + 1) * self.chunk]]
        stream = self.reader.iterate(wanted)
        for c in mine:
            imgs, labels, fails = [], [], []
            for _ in range(len(self.items[c * self.chunk:(c + 1) * self.chunk])):
                it, data = next(stream)
                try:
                    if isinstance(data, Exception):
                        raise data
                    im = dec.decode(data, check_only=self.scan)
                    if not self.scan:
                        imgs.append(dec.apply(im, self.transform, self.size))
                        labels.append(it.label)
                except dec.DecodeError as e:
                    fails.append({"path": it.key, "error": str(e)})
            yield self._pack(imgs, labels), fails

    def _pack(self, imgs, labels):
        if self.scan:
            return None
        if not imgs:
            s = self.size or 0
            return torch.empty((0, s, s, 3), dtype=torch.uint8), torch.empty(0, dtype=torch.long)
        if len({a.shape for a in imgs}) > 1:
            raise DatasetError("images of different sizes in one batch: set options.resolution (e.g. 256)")
        return torch.from_numpy(np.stack(imgs)), torch.tensor(labels, dtype=torch.long)


def _loader(ds: _Chunks, workers: int):
    n_chunks = (len(ds.items) + ds.chunk - 1) // ds.chunk
    workers = min(workers, n_chunks)
    # pinned host memory when a GPU is present: the batches go to it (non-blocking copies)
    return torch.utils.data.DataLoader(ds, batch_size=None, num_workers=workers,
                                       prefetch_factor=2 if workers else None, pin_memory=torch.cuda.is_available())


def default_workers() -> int:
    return min(4, os.cpu_count() or 1)


def _template_ok(template: str) -> str:
    if "{class_name}" not in template:
        raise ValueError("must contain {class_name}")
    try:
        template.format(class_name="x")
    except (KeyError, IndexError, ValueError) as e:
        raise ValueError(f"must format with only {{class_name}} ({type(e).__name__}: {e})") from None
    return template


class LabelledImages(Dataset):
    """Base of the file-backed sources. A subclass extends ``Options``, declares its ``cards``, and in
    ``__init__(name, **options)`` calls ``o = self._setup(name, options)`` (validation: a bad option is a
    `DatasetError` naming ``options.<key>``), sets ``class_names`` and calls ``_finish(items, reader)``."""

    kind = "files"                 # part of the fingerprint: never rename a source's kind
    has_holdout = True             # with options.half: the other half

    class Options(StrictOptions):
        """What every file-backed source takes."""
        resolution: int | None = Field(256, ge=1)     # evaluation size; None: native size, no resize
        transform: Literal[dec.TRANSFORMS] = "paper"
        workers: int | None = Field(None, ge=0)       # DataLoader decode workers (None: min(4, cpus); 0: inline)
        half: Literal["a", "b"] | None = None         # alternate images of each class (the other: holdout)
        prompt_template: str = "a photo of a {class_name}"

        @field_validator("prompt_template")
        @classmethod
        def _template(cls, v: str) -> str:
            return _template_ok(v)

    def _setup(self, name: str, options: dict[str, Any]):
        """Validate ``options`` against this class's ``Options`` and set the common fields; returns them typed."""
        o = self.open_options(name, options)
        self.name, self.options = name, o
        self.resolution, self.transform = o.resolution, o.transform
        self.workers = default_workers() if o.workers is None else o.workers
        self.half, self.prompt_template = o.half, o.prompt_template
        card = self.card(name)
        if card is None and len(self.cards) == 1:      # the class registered under another name
            card = next(iter(self.cards.values()))
        self.dataset_card = card or DatasetCard(name)
        self.root = None
        self._fingerprint: str | None = None
        self._content_hash: str | None = None
        self._failures: list[dict] | None = None
        self._ok_items: list[Item] | None = None
        self._other_by_class: dict[int, list[Item]] | None = None
        return o

    @classmethod
    def planned_size(cls, name: str, options: dict[str, Any]) -> int | None:
        """The card's count; with ``half`` the half's share of it, where the card's classes are equal in size
        (a takes within-class ranks 0, 2, 4, ...: the larger half of an odd class)."""
        card = cls.card(name)
        if card is None or card.images is None:
            return None
        half = (options or {}).get("half")
        if half is None:
            return card.images
        if not card.classes or card.images % card.classes:
            return None
        per = card.images // card.classes
        return card.classes * ((per + 1) // 2 if half == "a" else per // 2)

    def _finish(self, items: list[Item], reader: Reader) -> None:
        if not items:
            raise DatasetError(f"dataset {self.name!r}: no images found under {self._where()}")
        bad = [it.label for it in items if not 0 <= it.label < len(self.class_names)]
        if bad:
            raise DatasetError(f"dataset {self.name!r}: label {bad[0]} outside 0..{len(self.class_names) - 1}")
        self.reader, self.all_items = reader, items
        self.items, self.other_items = items, []
        if self.half:
            rank: dict[int, int] = {}
            a, b = [], []
            for it in items:
                r = rank.get(it.label, 0)
                rank[it.label] = r + 1
                (a if r % 2 == 0 else b).append(it)
            self.items, self.other_items = (a, b) if self.half == "a" else (b, a)

    def _where(self) -> str:
        return repr(str(self.root if self.root is not None else self.name))

    # -- identity ---------------------------------------------------------------------------------------------
    def content_hash(self) -> str:
        """Hash of every listed image's bytes and label, in order (subclasses)."""
        raise NotImplementedError

    def _content(self) -> str:
        if self._content_hash is None:
            self._content_hash = self.content_hash()
        return self._content_hash

    def fingerprint(self) -> str:
        if self._fingerprint is None:
            self._fingerprint = digest({
                "source": self.kind, "content": self._content(), "half": self.half,
                "transform": self.transform, "resolution": self.resolution, "decode": dec.DECODE_VERSION})
        return self._fingerprint

    # -- decode failures ----------------------------------------------------------------------------------------
    def _scan(self) -> list[dict]:
        if self._failures is None:
            key = digest({"v": SCAN_VERSION, "content": self._content(), "pil": PIL.__version__,
                          "items": digest([[it.key, it.label] for it in self.all_items])})
            cfile = cache_dir() / f"scan-{key[:32]}.json"
            try:
                self._failures = json.loads(cfile.read_text())
            except (OSError, ValueError):
                fails = []
                ds = _Chunks(self.reader, self.all_items, 64, self.transform, self.resolution, scan=True)
                for _, f in _loader(ds, self.workers):
                    fails += f
                self._failures = fails
                try:
                    cfile.parent.mkdir(parents=True, exist_ok=True)
                    cfile.write_text(json.dumps(fails))
                except OSError:
                    pass
            if self._failures:
                warnings.warn(f"dataset {self.name!r}: {len(self._failures)} unreadable image(s) left out, e.g. "
                              f"{self._failures[0]['path']}: {self._failures[0]['error']}", stacklevel=3)
        return self._failures

    @property
    def decode_failures(self) -> list[dict]:
        """Unreadable images of the listed set: [{"path": key, "error": message}] (scans on first use)."""
        keys = {it.key for it in self.items}
        return [f for f in self._scan() if f["path"] in keys]

    def provenance(self) -> dict[str, Any]:
        """``{"decode_failures": {"count", "files" (the first PROVENANCE_LIMIT)}}`` when an image was left out,
        else {}: the runner stores this dict in the cell's provenance as it is."""
        failures = self.decode_failures
        if not failures:
            return {}
        return {"decode_failures": {"count": len(failures), "files": list(failures)[:PROVENANCE_LIMIT]}}

    def _ok(self) -> list[Item]:
        if self._ok_items is None:
            failed = {f["path"] for f in self._scan()}
            ok = [it for it in self.items if it.key not in failed]
            if self.items and not ok:        # never an empty reference set: metrics cannot use one
                keys = {it.key for it in self.items}
                first = next(f for f in self._failures if f["path"] in keys)
                raise DatasetError(f"dataset {self.name!r}: no readable images in {self._where()}: all "
                                   f"{len(self.items)} listed image(s) failed to decode (e.g. {first['path']}: "
                                   f"{first['error']})")
            self._ok_items = ok
        return self._ok_items

    # -- the Dataset contract -----------------------------------------------------------------------------------
    def __len__(self) -> int:
        return len(self._ok())

    def labels(self) -> torch.Tensor:
        return torch.tensor([it.label for it in self._ok()], dtype=torch.long)

    def counts(self) -> dict[int, int]:
        out: dict[int, int] = {}
        for it in self._ok():
            out[it.label] = out.get(it.label, 0) + 1
        return out

    def reference_batches(self, batch_size: int) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        ds = _Chunks(self.reader, self._ok(), batch_size, self.transform, self.resolution, scan=False)
        for (imgs, labels), fails in _loader(ds, self.workers):
            if fails:      # readable at scan time, not now (file changed mid-run): list it, keep going
                self._failures += [f for f in fails if f not in self._failures]
                warnings.warn(f"dataset {self.name!r}: {fails[0]['path']} became unreadable: {fails[0]['error']}",
                              stacklevel=2)
            if len(imgs):
                yield imgs, labels

    # -- real-vs-real -------------------------------------------------------------------------------------------
    def holdout(self, labels: torch.Tensor, sample_ids: torch.Tensor) -> torch.Tensor:
        """Real images of the given labels from the other half (needs options.half), for real-vs-real rows.
        Sample i of label y gets the other half's image of class y at (i's rank within y) mod (count of y)."""
        if not self.half:
            raise DatasetError(f"dataset {self.name!r}: real-vs-real rows need options.half: a or b (the reference "
                               "set is one half, the real model draws the other)")
        if self._other_by_class is None:
            by: dict[int, list[Item]] = {}
            for it in self.other_items:
                by.setdefault(it.label, []).append(it)
            ok = self._ok()
            first: dict[int, int] = {}
            self._rank = []
            for it in ok:
                first[it.label] = first.get(it.label, 0) + 1
                self._rank.append((it.label, first[it.label] - 1))
            self._other_by_class = by
        out = []
        for i, y in zip(sample_ids.tolist(), labels.tolist()):
            pool = self._other_by_class.get(y)
            if not pool:
                raise DatasetError(f"dataset {self.name!r}: the other half has no image of class {y}")
            r = self._rank[i][1] if i < len(self._rank) and self._rank[i][0] == y else i
            out.append(self._decode_one(pool, r))
        if not out:
            s = self.resolution or 0
            return torch.empty((0, s, s, 3), dtype=torch.uint8)
        return torch.from_numpy(np.stack(out))

    def _decode_one(self, pool: list[Item], r: int) -> np.ndarray:
        for k in range(len(pool)):             # an unreadable holdout image: take the next one of its class
            it = pool[(r + k) % len(pool)]
            try:
                return dec.apply(dec.decode(self.reader.read(it)), self.transform, self.resolution)
            except Exception:
                continue
        raise DatasetError(f"dataset {self.name!r}: no readable holdout image of class {pool[0].label}")


def sorted_files(folder) -> list:
    """Image files under a folder (recursive), sorted by relative path; hidden files skipped; special files
    skipped with a warning, broken links listed (`bench.data.decode.select_images`)."""
    found = (p for p in folder.rglob("*") if not any(part.startswith(".") for part in p.relative_to(folder).parts))
    return sorted(listed_images(folder, found), key=lambda p: p.relative_to(folder).as_posix())


def listed_images(folder, paths: Iterable) -> list:
    """`bench.data.decode.select_images` over ``paths``, warning once about the special files it skips."""
    listed, skipped = dec.select_images(paths)
    if skipped:
        named = ", ".join(f"{p.relative_to(folder).as_posix()} ({kind})" for p, kind in sorted(skipped)[:5])
        warnings.warn(f"{folder}: {len(skipped)} special file(s) named like images skipped, never read (not "
                      f"regular files): {named}", stacklevel=3)
    return listed
