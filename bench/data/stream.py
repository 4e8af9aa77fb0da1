"""The shared machinery of every file-backed dataset: listing -> scan -> streamed, decoded batches.

A source lists its images as ``Item(key, label, ref)`` in dataset order and gives a ``Reader`` that turns refs into
bytes or paths. ``LabelledImages`` then provides the Dataset protocol:

- ``reference_batches`` decodes in torch DataLoader workers (``options.workers``, default min(4, cpus); 0 = in
  process). Worker w handles chunks w, w + W, ... of ``batch_size`` items and the loader interleaves them round
  robin, so batches arrive in dataset order; at most ``workers * 2`` batches are in flight, never the whole set.
- **Unreadable files** are never a crash. The first time a set's labels, length or failures are needed, a scan
  decodes every image once (in the same workers) and lists the failures; the result is cached on disk by content
  (so later runs do not rescan). Failed images are left out of ``labels()`` and ``reference_batches`` alike, so
  the two always agree; a per_reference plan therefore has one sample per *decodable* image, numbered 0..n-1 in
  dataset order. ``decode_failures`` lists them as ``{"path": key, "error": message}``.
- ``options.half: a|b`` keeps alternate images of each class (within-class rank even -> a, odd -> b); the other
  half is the ``holdout`` that a ``real`` model draws from, so a real-vs-real row compares two disjoint halves:
  each metric's floor.
"""

from __future__ import annotations

import functools
import inspect
import json
import os
import warnings
from dataclasses import dataclass
from typing import Any, Iterable, Iterator

import numpy as np
import PIL
import torch

from bench.data import decode as dec
from bench.data.base import DatasetError
from bench.data.hashing import cache_dir, digest

SCAN_VERSION = "scan/1"


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


class LabelledImages:
    """Base of the file-backed sources. Subclasses set the fields below and call ``_finish(items)``.
    Every subclass ``__init__`` is wrapped so that an unknown option is a one-line error with a did-you-mean."""

    name: str
    class_names: list[str]
    prompt_template: str
    kind = "files"

    def __init_subclass__(cls, **kw):
        super().__init_subclass__(**kw)
        init = cls.__dict__.get("__init__")
        if init is None:
            return

        @functools.wraps(init)
        def checked(self, name, *args, **options):
            allowed = cls.option_names()
            for key in options:
                if key not in allowed:
                    from bench.registry import hint
                    raise DatasetError(f"dataset {name!r}: unknown option {key!r} for source {cls.kind!r}; "
                                       f"{hint(key, sorted(allowed))}")
            init(self, name, *args, **options)
        # the full option list (this class's and its bases'), so suite validation sees every option and default
        P = inspect.Parameter
        checked.__signature__ = inspect.Signature(
            [P("self", P.POSITIONAL_OR_KEYWORD), P("name", P.POSITIONAL_OR_KEYWORD)]
            + [P(k, P.KEYWORD_ONLY, default=v) for k, v in cls.option_defaults().items()])
        cls.__init__ = checked

    @classmethod
    def option_defaults(cls) -> dict:
        out: dict = {}
        for klass in cls.__mro__:
            init = klass.__dict__.get("__init__")
            if init is None or klass is object:
                continue
            for p in inspect.signature(inspect.unwrap(init)).parameters.values():
                if p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY) and p.name not in ("self", "name"):
                    out.setdefault(p.name, None if p.default is p.empty else p.default)
        return out

    @classmethod
    def option_names(cls) -> set[str]:
        return set(cls.option_defaults())

    def _setup(self, name: str, resolution: int | None, transform: str, workers: int | None, half: str | None,
               prompt_template: str) -> None:
        self.name = name
        if resolution is not None and (not isinstance(resolution, int) or resolution < 1):
            raise DatasetError(f"dataset {name!r}: options.resolution must be a positive integer, got {resolution!r}")
        if workers is not None and (not isinstance(workers, int) or workers < 0):
            raise DatasetError(f"dataset {name!r}: options.workers must be an integer >= 0, got {workers!r}")
        if half not in (None, "a", "b"):
            raise DatasetError(f"dataset {name!r}: options.half must be 'a' or 'b', got {half!r}")
        if "{class_name}" not in prompt_template:
            raise DatasetError(f"dataset {name!r}: options.prompt_template must contain {{class_name}}")
        self.resolution, self.transform = resolution, dec.check_transform(transform)
        self.workers = default_workers() if workers is None else workers
        self.half, self.prompt_template = half, prompt_template
        self._fingerprint: str | None = None
        self._failures: list[dict] | None = None

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
        return repr(str(getattr(self, "root", self.name)))

    # -- identity ---------------------------------------------------------------------------------------------
    def content_hash(self) -> str:
        """Hash of every listed image's bytes and label, in order (subclasses)."""
        raise NotImplementedError

    def _content(self) -> str:
        if getattr(self, "_content_hash", None) is None:
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

    def _ok(self) -> list[Item]:
        if getattr(self, "_ok_items", None) is None:
            failed = {f["path"] for f in self._scan()}
            self._ok_items = [it for it in self.items if it.key not in failed]
        return self._ok_items

    # -- the Dataset protocol -----------------------------------------------------------------------------------
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
        if not hasattr(self, "_other_by_class"):
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


def sorted_files(folder, exts: Iterable[str] = dec.EXTS) -> list:
    """Image files under a folder (recursive), sorted by relative path; hidden files skipped."""
    return sorted((p for p in folder.rglob("*") if p.is_file() and p.suffix.lower() in exts
                   and not any(part.startswith(".") for part in p.relative_to(folder).parts)),
                  key=lambda p: p.relative_to(folder).as_posix())
