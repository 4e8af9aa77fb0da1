"""Unlabelled reference sets read from files, the two forms a "reference batch" usually comes in:

- ``imagefiles``: a flat folder of images (its top-level image files, hidden ones skipped, in file-name order: the
  order torch-fidelity's ``--input2 DIR`` reads for PNG/JPEG files), decoded, streamed and fingerprinted by the
  shared file-source machinery (`bench.data.stream`), at the stored size by default (``resolution: null``);
- ``npz``: an ADM-style ``.npz`` whose ``arr_0`` is N x H x W x 3 uint8, streamed row by row from the archive (a
  50,000-image batch is never held in memory), used as stored; fingerprinted by the file's sha256.

Both are one class, ``image`` (`Unnamed`: every label names it): FID, IS, KID and precision/recall need no
labels. They are what `bench score --ref` opens for a folder or an ``.npz`` (it registers them: `bench.score.SOURCES`).
"""

from __future__ import annotations

import zipfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Iterator

import numpy as np
import torch
from pydantic import Field, field_validator

from bench.data.base import Dataset, DatasetCard, DatasetError, StrictOptions
from bench.data.files import FolderReader, folder_content_hash
from bench.data.hashing import digest
from bench.data.locate import data_root
from bench.data.stream import Item, LabelledImages, NonEmpty, _template_ok, listed_images


class Unnamed(Sequence):
    """The class names of an unlabelled set: one class, ``image``, which every label names. So samples that carry
    labels of their own (an ADM .npz's class ids) can be scored against the set: FID, IS and KID ignore labels, and
    nothing else here can name them."""

    def __len__(self) -> int:
        return 1

    def __getitem__(self, i):
        return ["image"][i] if isinstance(i, slice) else "image"

    def __iter__(self):
        return iter(["image"])


def top_level_images(folder: Path) -> list[Path]:
    """A folder's own image files (not its sub-folders'), hidden ones skipped, sorted by file name; special files
    skipped with a warning, broken links listed (`bench.data.decode.select_images`)."""
    found = (p for p in Path(folder).iterdir() if not p.name.startswith("."))
    return sorted(listed_images(folder, found), key=lambda p: p.name)


class ImageFiles(LabelledImages):
    """A flat folder of images as one unlabelled reference set (what torch-fidelity's ``--input2 DIR`` reads)."""

    kind = "imagefiles"
    cards = {"imagefiles": DatasetCard(
        "imagefiles", title="a flat folder of images as an unlabelled reference set", folder=None,
        licence="that of the images: stepbench reads a copy, never ships one",
        get="point options.root at a folder of image files")}

    class Options(LabelledImages.Options):
        root: NonEmpty                                     # required: the folder
        resolution: int | None = Field(None, ge=1)         # default: the stored size (no resize)

    def __init__(self, name: str, **options: Any):
        o = self._setup(name, options)
        self.root = data_root(name, o.root, self.dataset_card)
        if not self.root.is_dir():
            raise DatasetError(f"dataset {name!r}: options.root {str(self.root)!r} is not a folder")
        self.class_names = Unnamed()
        self._finish([Item(p.name, 0, p.name) for p in top_level_images(self.root)], FolderReader(self.root))

    def content_hash(self) -> str:
        return digest(folder_content_hash(Path(self.root), self.all_items))


def npz_header(path: Path, member: str = "arr_0") -> tuple[tuple[int, ...], np.dtype, set[str]]:
    """(shape, dtype) of one array of an .npz read from its header alone, and the names of all its arrays."""
    try:
        with zipfile.ZipFile(path) as zf:
            names = {n.removesuffix(".npy") for n in zf.namelist()}
            if member not in names:
                raise DatasetError(f"{path}: no {member!r} array (expected N x H x W x 3 uint8 images); it holds "
                                   f"{', '.join(sorted(names)) or 'nothing'}")
            with zf.open(member + ".npy") as f:
                shape, fortran, dtype = _read_header(f)
    except (OSError, zipfile.BadZipFile, ValueError) as e:
        raise DatasetError(f"{path}: not a readable .npz ({type(e).__name__}: {e})") from None
    if fortran:
        raise DatasetError(f"{path}: {member} is stored in Fortran order; save it C-ordered "
                           "(np.savez(path, arr_0=np.ascontiguousarray(images)))")
    return shape, dtype, names


def _read_header(f) -> tuple[tuple[int, ...], bool, np.dtype]:
    version = np.lib.format.read_magic(f)
    read = np.lib.format.read_array_header_1_0 if version == (1, 0) else np.lib.format.read_array_header_2_0
    return read(f)


class NpzImages(Dataset):
    """An ADM-style .npz (``arr_0``: N x H x W x 3 uint8) as one unlabelled reference set, streamed row by row."""

    cards = {"npz": DatasetCard(
        "npz", title="an ADM-style .npz of images (arr_0) as an unlabelled reference set", folder=None,
        licence="that of the images", get="point options.path at an .npz whose arr_0 is N x H x W x 3 uint8")}

    class Options(StrictOptions):
        path: NonEmpty                                     # the .npz file
        prompt_template: str = "a photo of a {class_name}"

        @field_validator("prompt_template")
        @classmethod
        def _template(cls, v: str) -> str:
            return _template_ok(v)                         # the same rule as every labelled source

    def __init__(self, name: str, **options: Any):
        o = self.open_options(name, options)
        self.name, self.path = name, Path(o.path).expanduser()
        if not self.path.is_file():
            raise DatasetError(f"dataset {name!r}: options.path {str(self.path)!r} is not a file")
        shape, dtype, _ = npz_header(self.path)
        if dtype != np.uint8 or len(shape) != 4 or shape[-1] != 3:
            raise DatasetError(f"{self.path}: arr_0 must be N x H x W x 3 uint8, got {dtype} {shape}")
        self.shape = shape
        self.class_names, self.prompt_template = Unnamed(), o.prompt_template
        self._fingerprint: str | None = None

    def __len__(self) -> int:
        return self.shape[0]

    def fingerprint(self) -> str:
        if self._fingerprint is None:
            from bench.provenance import sha256_path
            self._fingerprint = digest({"source": "npz", "array": "arr_0", "sha256": sha256_path(self.path)})
        return self._fingerprint

    def labels(self) -> torch.Tensor:
        return torch.zeros(len(self), dtype=torch.long)

    def reference_batches(self, batch_size: int) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        n, h, w, c = self.shape
        row = h * w * c
        with zipfile.ZipFile(self.path) as zf, zf.open("arr_0.npy") as f:
            _read_header(f)
            for start in range(0, n, batch_size):
                b = min(batch_size, n - start)
                buf = f.read(row * b)
                if len(buf) != row * b:
                    raise DatasetError(f"{self.path}: arr_0 ends after {start + len(buf) // row} of {n} images")
                imgs = torch.from_numpy(np.frombuffer(buf, np.uint8).reshape(b, h, w, c).copy())
                yield imgs, torch.zeros(b, dtype=torch.long)
