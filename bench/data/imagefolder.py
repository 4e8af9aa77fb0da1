"""Any labelled folder: ``root/<class folder>/**/*.png|jpg|...``.

Labels: folders in sorted order (default); ``classes: [names]`` (folder name -> its position); ``label_map:
{folder: id}`` with ``classes`` naming the ids; or ``class_index: imagenet-1k`` (folders named by synset, id or
class name -> ImageNet-1k ids, names from datasets/imagenet-1k.json in the ``class_names`` variant). Order: label
id, then relative path. Same decoding, transforms, workers, halves and failure handling as the ImageNet sources.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import Field, ValidationInfo, field_validator

from bench.data import classes as cls_index
from bench.data.base import DatasetCard, DatasetError
from bench.data.files import FolderReader, folder_content_hash
from bench.data.hashing import digest
from bench.data.locate import data_root
from bench.data.stream import Item, LabelledImages, NonEmpty, sorted_files


class ImageFolder(LabelledImages):
    kind = "imagefolder"
    cards = {"imagefolder": DatasetCard(
        "imagefolder", title="any labelled folder of images (<class folder>/**/<image>)", folder=None,
        licence="that of the images: stepbench reads a copy, never ships one",
        get="point options.root at a folder of <class>/<image> files")}

    class Options(LabelledImages.Options):
        root: NonEmpty                                           # required: no conventional folder
        classes: Annotated[list[str], Field(min_length=1)] | None = None     # folder names in label order
        class_index: Literal["imagenet-1k"] | None = None        # folders named by synset, id or class name
        class_names: Literal[cls_index.NAME_VARIANTS] = "underscored"   # with class_index: the name form
        label_map: dict[str, Annotated[int, Field(ge=0)]] | None = None      # folder -> label id

        @field_validator("label_map")
        @classmethod
        def _ids_index_classes(cls, v, info: ValidationInfo):
            """Without class_index, label_map's ids index options.classes (fields above are validated first)."""
            if v is None or info.data.get("class_index") is not None or "classes" not in info.data:
                return v
            names = info.data["classes"]
            if not names:
                raise ValueError("needs options.classes (the names of its ids)")
            for f, y in v.items():
                if y >= len(names):
                    raise ValueError(f"{f!r}: {y} is not an index of options.classes ({len(names)} names)")
            return v

    def __init__(self, name: str, **options: Any):
        o = self._setup(name, options)
        self.root = data_root(name, o.root, self.dataset_card)
        if not self.root.is_dir():
            raise DatasetError(f"dataset {name!r}: options.root {str(self.root)!r} is not a folder")
        found = sorted(p.name for p in self.root.iterdir() if p.is_dir() and not p.name.startswith("."))
        ids = self._label_ids(found, o.classes, o.label_map, o.class_index, o.class_names)
        items = []
        for folder, y in ids.items():
            d = self.root / folder
            items += [Item(p.relative_to(self.root).as_posix(), y, p.relative_to(self.root).as_posix())
                      for p in sorted_files(d)]
        items.sort(key=lambda it: (it.label, it.ref))
        self._finish(items, FolderReader(self.root))

    def _label_ids(self, found, classes, label_map, class_index, variant) -> dict[str, int]:
        name = self.name
        if class_index is not None:                 # "imagenet-1k", the one index (checked by Options)
            self.class_names = cls_index.class_names(variant)
            syn = cls_index.synset_to_index()
            out, bad = {}, []
            for f in found:
                y = syn.get(f, int(f) if f.isdigit() and int(f) < 1000 else cls_index.id_for_name(f))
                if label_map and f in label_map:
                    y = label_map[f]
                (bad.append(f) if y is None else out.__setitem__(f, y))
            if bad:
                raise DatasetError(f"dataset {name!r}: folders {bad[:5]} are not ImageNet-1k synsets, ids or class "
                                   "names (add them to options.label_map)")
            return out
        if label_map is not None:                   # ids index options.classes (checked by Options)
            self.class_names = list(classes)
            missing = [f for f in found if f not in label_map]
            if missing:
                raise DatasetError(f"dataset {name!r}: folders {missing[:5]} are not in options.label_map")
            return {f: label_map[f] for f in found}
        self.class_names = list(classes) if classes else found
        missing = [c for c in found if c not in self.class_names]
        if missing:
            raise DatasetError(f"dataset {name!r}: folders {missing[:5]} are not in options.classes")
        return {c: i for i, c in enumerate(self.class_names) if c in found}

    def content_hash(self) -> str:
        return digest(folder_content_hash(Path(self.root), self.all_items))
