"""Readers for image files in a folder and for members of a (compressed) tar archive read in place."""

from __future__ import annotations

import json
import tarfile
from pathlib import Path
from typing import Iterator

from bench.data import decode as dec
from bench.data.hashing import cache_dir, file_hashes
from bench.data.stream import Item, Reader
from bench.provenance import sha256_path


class FolderReader(Reader):
    def __init__(self, root: Path):
        self.root = Path(root)

    def read(self, item: Item):
        return self.root / item.ref


def folder_content_hash(root: Path, items: list[Item], ident=lambda it: it.ref) -> list:
    """[[ident, label, sha256]] per item, in order (file hashes cached by size + mtime)."""
    hashes = file_hashes(root, [it.ref for it in items])
    return [[ident(it), it.label, hashes[it.ref]] for it in items]


class TarReader(Reader):
    """Members of a .tar / .tar.gz, streamed in archive order (each worker opens its own stream)."""

    def __init__(self, path: Path):
        self.path = Path(path)
        self._tar = None

    def __getstate__(self):
        return {"path": self.path, "_tar": None}

    def iterate(self, items: list[Item]) -> Iterator[tuple[Item, object]]:
        if not items:
            return
        pending = iter(items)
        want = next(pending)
        with tarfile.open(self.path, "r|*") as tf:
            for idx, member in enumerate(tf):
                while want is not None and want.ref == idx:
                    try:
                        yield want, tf.extractfile(member).read()
                    except Exception as e:
                        yield want, dec.DecodeError(f"{type(e).__name__}: {e}")
                    want = next(pending, None)
                if want is None:
                    return
        while want is not None:
            yield want, dec.DecodeError("member not found in the archive")
            want = next(pending, None)

    def read(self, item: Item):
        """Random access (holdout images only): seeks in the decompressed stream."""
        if self._tar is None:
            self._tar = tarfile.open(self.path, "r:*")
            self._members = self._tar.getmembers()
        return self._tar.extractfile(self._members[item.ref]).read()


def tar_listing(path: Path) -> tuple[str, list[tuple[int, str]]]:
    """(sha256 of the archive, [(member index, member name)] of its files); cached by the archive's content."""
    sha = sha256_path(path)
    cfile = cache_dir() / f"tar-{sha[:32]}.json"
    try:
        return sha, [tuple(x) for x in json.loads(cfile.read_text())]
    except (OSError, ValueError):
        pass
    with tarfile.open(path, "r|*") as tf:
        listing = [(i, m.name) for i, m in enumerate(tf) if m.isfile()]
    try:
        cfile.parent.mkdir(parents=True, exist_ok=True)
        cfile.write_text(json.dumps(listing))
    except OSError:
        pass
    return sha, listing
