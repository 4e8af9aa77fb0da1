"""``coco``: MS-COCO 2014 / 2017 captions, the reference set of zero-shot text-to-image FID ("COCO-30k").

Layout (as COCO's own zips unpack): ``root/annotations/captions_{split}{year}.json`` and
``root/{split}{year}/<file_name>``; ``root`` is ``options.root``, else ``$STEPBENCH_DATA/coco``.

The protocol (one caption per image, seeded), as implemented:
- the candidate images are the annotation file's images with at least one caption, sorted by image id;
- their order is ``numpy.random.default_rng(seed).permutation(count)``, and ``n`` keeps the first n of it (all
  when ``n`` is null), so the n-image set of a seed is a prefix of the (n + k)-image set of the same seed, and a
  ``per_reference`` plan's ``samples.n`` (the first samples) is itself a seeded random subset;
- each image's captions are ordered by annotation id; ``caption_choice: first`` takes the first, ``random`` (the
  default) draws one index per image, in set order, from ``numpy.random.default_rng([seed, 1]).integers(k)``;
- reference images: ``transform: center-crop`` (default) cuts the largest centred square and resizes it to
  ``resolution`` x ``resolution`` with the PIL ``filter`` (default bicubic; lanczos, bilinear, box, hamming,
  nearest); ``paper`` and ``adm`` are the shared transforms (`bench.data.decode`). The filter is in the
  fingerprint with the transform and resolution.

Labels: none (every item is label 0 of one unnamed class): a caption set is generated from its captions, and a
class-conditional adapter on it is refused at validation. Fingerprint: the chosen image files' sha256 in set
order, the chosen caption of each, year, split and filter (plus the transform, resolution and decoder version).
"""

from __future__ import annotations

import json
import os
import warnings
from pathlib import Path
from typing import Any, Iterator, Literal

import numpy as np
import torch
from PIL import Image
from pydantic import Field, model_validator

from bench.data import decode as dec
from bench.data.base import DatasetCard, DatasetError
from bench.data.captioned import CaptionedImages, clean_caption
from bench.data.files import FolderReader, folder_content_hash
from bench.data.hashing import digest
from bench.data.image_files import Unnamed
from bench.data.locate import data_root
from bench.data.stream import Item, LabelledImages, MaybeStr, _Chunks, _loader

FILTERS = {"bicubic": Image.BICUBIC, "lanczos": Image.LANCZOS, "bilinear": Image.BILINEAR, "box": Image.BOX,
           "hamming": Image.HAMMING, "nearest": Image.NEAREST}
# (images, captions) of each annotation file as released
COUNTS = {(2014, "val"): (40_504, 202_654), (2014, "train"): (82_783, 414_113),
          (2017, "val"): (5_000, 25_014), (2017, "train"): (118_287, 591_753)}
GET = ("download the captions annotations (annotations_trainval2014.zip or annotations_trainval2017.zip) and the "
       "images (val2014.zip, ...) from https://cocodataset.org/#download and unzip both into one folder, giving "
       "annotations/captions_val2014.json and val2014/COCO_val2014_*.jpg")


def center_crop(arr: np.ndarray, size: int | None, filt: str) -> np.ndarray:
    """uint8 HWC -> the largest centred square (top/left offsets floored), cut out, then resized to size x size
    with the PIL filter (None: the square at its own size); as ``im.crop(box).resize((size, size), filter)``."""
    h, w = arr.shape[:2]
    s = min(h, w)
    top, left = (h - s) // 2, (w - s) // 2
    square = np.ascontiguousarray(arr[top:top + s, left:left + s])
    if size is None or s == size:
        return square
    return np.asarray(Image.fromarray(square).resize((size, size), FILTERS[filt]), dtype=np.uint8)


class _CropChunks(_Chunks):
    """The shared decode workers at the native size, each image centre-cropped and resized before packing."""

    def __init__(self, reader, items, chunk, size, filt):
        super().__init__(reader, items, chunk, "paper", None, scan=False)
        self.out_size, self.filt = size, filt

    def _pack(self, imgs, labels):
        return super()._pack([center_crop(a, self.out_size, self.filt) for a in imgs], labels)


class Coco(CaptionedImages):
    """COCO captions + images, n images drawn by a seed, one caption each (see the module doc)."""

    kind = "coco"
    conditioning = "caption"                         # every item has its caption (`describes` reads this)
    cards = {"coco": DatasetCard(
        "coco", title="MS-COCO captions (2014 / 2017; the COCO-30k text-to-image protocol)", folder="coco",
        images=COUNTS[(2014, "val")][0], classes=None,
        licence="annotations: CC BY 4.0 (the COCO Consortium); images: Flickr terms of use, each image under "
                "its own licence (listed in the annotation file); do not redistribute",
        homepage="https://cocodataset.org/#download", get=GET)}

    class Options(LabelledImages.Options):
        root: MaybeStr = None                        # else $STEPBENCH_DATA/coco
        year: Literal[2014, 2017] = 2014
        split: Literal["val", "train"] = "val"
        n: int | None = Field(None, ge=1)            # images kept (None: every captioned image)
        caption_choice: Literal["random", "first"] = "random"
        seed: int = Field(0, ge=0)                   # the image draw and the random caption choice
        transform: Literal["center-crop", "paper", "adm"] = "center-crop"
        filter: Literal[tuple(FILTERS)] = "bicubic"  # with center-crop

        @model_validator(mode="after")
        def _filter_with_center_crop(self):
            if self.transform != "center-crop" and self.filter != "bicubic":
                raise ValueError(f"filter {self.filter!r} applies to transform center-crop only "
                                 f"(transform {self.transform!r} has its own resize)")
            return self

    @classmethod
    def planned_size(cls, name: str, options: dict[str, Any]) -> int | None:
        o = cls.validate_options(options)
        return o["n"] or COUNTS[(o["year"], o["split"])][0]

    def __init__(self, name: str, **options: Any):
        o = self._setup(name, options)
        self.year, self.split, self.n, self.seed = o.year, o.split, o.n, o.seed
        self.caption_choice, self.filter = o.caption_choice, o.filter
        base = data_root(name, o.root, self.dataset_card)
        sub = f"{o.split}{o.year}"
        ann, images = base / "annotations" / f"captions_{sub}.json", base / sub
        for p, what in ((ann, "the captions annotation file"), (images, "the images folder")):
            if not p.exists():
                raise DatasetError(f"dataset {name!r}: {what} {str(p)!r} is missing; {GET}")
        self.root, self.annotation_file = images, ann
        files, caps = read_captions(ann)
        chosen = self._choose(sorted(caps), files, caps)
        missing = [f for f, _ in chosen if not os.path.exists(images / f)]
        if missing and len(missing) == len(chosen):
            raise DatasetError(f"dataset {name!r}: none of the {len(chosen):,} chosen images is in {str(images)!r} "
                               f"(e.g. {missing[0]}); {GET}")
        if missing:
            warnings.warn(f"dataset {name!r}: {len(missing):,} of {len(chosen):,} chosen images are missing from "
                          f"{str(images)!r} (e.g. {missing[0]}); they are left out as unreadable", stacklevel=2)
        self.class_names, self.captions_total = Unnamed(), sum(len(c) for c in caps.values())
        self._set_captions({f: c for f, c in chosen})
        self._finish([Item(f, 0, f) for f, _ in chosen], FolderReader(images))

    def _choose(self, ids: list[int], files: dict[int, str], caps: dict[int, list[str]]) -> list[tuple[str, str]]:
        """[(file name, caption)] in set order (the module doc's protocol)."""
        if self.n is not None and self.n > len(ids):
            raise DatasetError(f"dataset {self.name!r}: options.n = {self.n:,} exceeds the {len(ids):,} captioned "
                               f"images of {str(self.annotation_file)!r}")
        order = np.random.default_rng(self.seed).permutation(len(ids))[: self.n]
        pick = np.random.default_rng([self.seed, 1])
        out = []
        for i in order.tolist():
            c = caps[ids[i]]
            out.append((files[ids[i]], c[0] if self.caption_choice == "first" else c[int(pick.integers(len(c)))]))
        return out

    def listed(self) -> tuple[int, None]:
        return len(self.items), None

    def content_hash(self) -> str:
        return digest({"images": folder_content_hash(self.root, self.all_items), "captions": self.caption_digest(),
                       "year": self.year, "split": self.split, "filter": self.filter})

    # -- the centre-crop transform (the shared decoders at native size, then crop + resize) --------------------
    def reference_batches(self, batch_size: int) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        if self.transform != "center-crop":
            return super().reference_batches(batch_size)
        return self._cropped(batch_size)

    def _cropped(self, batch_size: int) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        ds = _CropChunks(self.reader, self._ok(), batch_size, self.resolution, self.filter)
        for (imgs, labels), fails in _loader(ds, self.workers):
            if fails:      # readable at scan time, not now: listed, the run goes on (as LabelledImages)
                self._failures += [f for f in fails if f not in self._failures]
                warnings.warn(f"dataset {self.name!r}: {fails[0]['path']} became unreadable: {fails[0]['error']}",
                              stacklevel=2)
            if len(imgs):
                yield imgs, labels

    def _decode_one(self, pool: list[Item], r: int) -> np.ndarray:
        if self.transform != "center-crop":
            return super()._decode_one(pool, r)
        for k in range(len(pool)):             # an unreadable holdout image: take the next one
            try:
                return center_crop(np.asarray(dec.decode(self.reader.read(pool[(r + k) % len(pool)]))),
                                   self.resolution, self.filter)
            except Exception:
                continue
        raise DatasetError(f"dataset {self.name!r}: no readable holdout image")


def read_captions(path: Path) -> tuple[dict[int, str], dict[int, list[str]]]:
    """(image id -> file name, image id -> its cleaned captions ordered by annotation id) from a COCO captions
    file; images without a caption are left out. Errors name the file and the entry."""
    try:
        data = json.loads(Path(path).read_bytes())
    except OSError as e:
        raise DatasetError(f"{path}: cannot be read ({e.strerror or e})") from None
    except ValueError as e:
        raise DatasetError(f"{path}: not JSON ({e})") from None
    if not isinstance(data, dict) or not isinstance(data.get("images"), list) \
            or not isinstance(data.get("annotations"), list):
        raise DatasetError(f"{path}: not a COCO captions file (expected an object with 'images' and 'annotations' "
                           "lists)")
    files: dict[int, str] = {}
    for i, im in enumerate(data["images"]):
        if not isinstance(im, dict) or not isinstance(im.get("id"), int) or not isinstance(im.get("file_name"), str):
            raise DatasetError(f"{path}: images[{i}] needs an integer 'id' and a 'file_name'")
        files[im["id"]] = im["file_name"]
    found: dict[int, list[tuple[int, str]]] = {}
    for i, a in enumerate(data["annotations"]):
        if not isinstance(a, dict) or not isinstance(a.get("image_id"), int) or "caption" not in a:
            raise DatasetError(f"{path}: annotations[{i}] needs an integer 'image_id' and a 'caption'")
        if a["image_id"] not in files:
            raise DatasetError(f"{path}: annotations[{i}] names image_id {a['image_id']}, which is not in 'images'")
        found.setdefault(a["image_id"], []).append(
            (a.get("id", i) if isinstance(a.get("id", i), int) else i,
             clean_caption(a["caption"], f"{path}: annotations[{i}]")))
    caps = {k: [c for _, c in sorted(v, key=lambda t: t[0])] for k, v in found.items()}
    if not caps:
        raise DatasetError(f"{path}: no captions")
    return files, caps
