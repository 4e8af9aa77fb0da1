"""Evaluate pre-generated images: a folder of PNG/JPEG files or an ADM-style ``.npz`` (``arr_0`` NHWC uint8,
optional labels in ``arr_1`` or ``labels``). Sample i is the i-th file in sorted name order / the i-th row.

A folder is listed as the datasets list theirs (regular files only: a FIFO or device named like an image is
refused, never opened) and refused whole when a file is unreadable: sample i must be the i-th file.

Option: ``resolution`` (folders only): decode each file with the datasets' preprocessing at that size (default:
as stored; an ``.npz`` is always used as stored)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import numpy as np
import torch
from pydantic import Field
from torch import nn

from bench.data import decode as dec
from bench.models.base import Generator, ModelSpec, SamplerSettings, StrictOptions


def read_folder(model: str, path: Path, resolution: int | None) -> np.ndarray:
    """A folder's top-level image files (hidden ones skipped) in name order as one NHWC uint8 array. Listed as the
    datasets list theirs (`bench.data.decode.select_images`), but stricter, since sample i is the i-th file:
    a special file (FIFO, device, socket; never opened) or any unreadable file refuses the folder, naming them;
    images of different sizes without ``resolution`` are refused, naming a file of each size."""
    head = f"model {model!r}: samples folder {str(path)!r}"
    files, special = dec.select_images(sorted((p for p in path.iterdir() if not p.name.startswith(".")),
                                              key=lambda p: p.name))
    if special:
        names = ", ".join(f"{p.name} ({kind})" for p, kind in special[:5])
        raise ValueError(f"{head}: {len(special)} special file(s) named like images, never read: {names}; "
                         "only regular files can be samples")
    if not files:
        raise ValueError(f"{head}: no images ({', '.join(sorted(dec.EXTS))})")
    images, failed = [], []
    for p in files:
        try:
            images.append(dec.load_rgb(p, resolution))
        except dec.DecodeError as e:
            failed.append(f"{p.name}: {e}")
    if failed:
        raise ValueError(f"{head}: {len(failed)} unreadable image(s): {'; '.join(failed[:3])}")
    sizes: dict[tuple, str] = {}
    for p, im in zip(files, images):
        sizes.setdefault(im.shape, p.name)
    if len(sizes) > 1:
        shown = ", ".join(f"{name} is {w}x{h}" for (h, w, _), name in list(sizes.items())[:4])
        raise ValueError(f"{head}: images of {len(sizes)} different sizes ({shown}); set options.resolution "
                         "(e.g. 256) to resize every image to that size")
    return np.stack(images)


class Samples(Generator):
    """Images already made, read from ``weights``; labels stored with them replace the plan's."""
    family = "samples"
    version = "samples-1"
    sweeps = False           # no steps / cfg axes: the images are already made
    conditions = frozenset({"class", "caption"})    # sample i was made from the dataset's label or caption i

    class Options(StrictOptions):
        resolution: Annotated[int, Field(ge=1)] | None = None

    def load(self, spec: ModelSpec, device: torch.device) -> None:
        opts = self.parse_options(spec.options)
        if not spec.weights:
            raise ValueError(f"model {spec.id!r}: adapter 'samples' needs weights: a folder of images or an .npz file")
        path = Path(spec.weights)
        self.labels_given: torch.Tensor | None = None
        if path.suffix == ".npz":
            if not path.is_file():
                raise ValueError(f"model {spec.id!r}: weights {str(path)!r} does not exist")
            with np.load(path, allow_pickle=False) as z:
                if "arr_0" not in z:
                    raise ValueError(f"{path}: no 'arr_0' array (expected NHWC uint8 images)")
                arr = z["arr_0"]
                lab = z["arr_1"] if "arr_1" in z else (z["labels"] if "labels" in z else None)
            if arr.dtype != np.uint8 or arr.ndim != 4 or arr.shape[-1] != 3:
                raise ValueError(f"{path}: arr_0 must be NHWC uint8 with 3 channels, got {arr.dtype} {arr.shape}")
            self.images = torch.from_numpy(arr)
            if lab is not None:
                if len(lab) != len(arr):
                    raise ValueError(f"{path}: {len(lab)} labels for {len(arr)} images")
                self.labels_given = torch.from_numpy(np.asarray(lab)).long()
        elif path.is_dir():
            self.images = torch.from_numpy(read_folder(spec.id, path, opts.resolution))
        else:
            raise ValueError(f"model {spec.id!r}: weights {str(path)!r} is neither a folder nor an .npz file")

    def plan(self, labels: torch.Tensor, sample_ids: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """The samples' own labels win over the plan's; there must be enough samples."""
        n = len(labels)
        if len(self.images) < n:
            raise ValueError(f"the sample plan needs {n} images but only {len(self.images)} were provided")
        if self.labels_given is not None:
            return self.labels_given[:n].clone(), sample_ids
        return labels, sample_ids

    def networks(self) -> list[nn.Module]:
        return []

    def nfe_per_image(self, s: SamplerSettings) -> int:
        return 0

    def generate(self, labels: torch.Tensor, sample_ids: torch.Tensor, s: SamplerSettings) -> torch.Tensor:
        return self.images[sample_ids]
