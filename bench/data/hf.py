"""Any Hugging Face dataset with an image and a label column: a hub id or a local path.

``path`` goes to ``datasets.load_dataset(path, name, split=..., revision=..., data_dir=..., cache_dir=...)``;
a folder written by ``Dataset.save_to_disk`` is opened with ``load_from_disk``. Works offline
(``HF_DATASETS_OFFLINE=1``) on a local copy or a populated cache. Images are read as raw bytes and go through the
same robust decode and named transform as the file sources. Class names: the label column's ClassLabel names,
``classes: [names]``, or ``classes: imagenet-1k`` (ids 0..999, names in the ``class_names`` variant). Order: the
split's row order. Fingerprint: sha256 of the Arrow files behind the split (cached by size + mtime), the labels,
and the preprocessing.

Captions (issue 21): ``caption_column`` makes it a caption set (`bench.data.captioned`): each row's text is the
caption its sample is generated from and scored against, and is in the fingerprint. The label column is then
optional (absent: label 0 of one unnamed class), and ``image_column: null`` makes it prompt-only (no reference
images). At its default (null) ``caption_column`` stays out of the validated options, and the class, keys and
fingerprints are exactly those of before.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import Field, model_serializer, model_validator

from bench.data import classes as cls_index
from bench.data.base import DatasetCard, DatasetError
from bench.data.captioned import CaptionedImages, clean_caption
from bench.data.hashing import digest
from bench.data.image_files import Unnamed
from bench.data.stream import Item, LabelledImages, MaybeStr, NonEmpty, Reader
from bench.options import keyed_when_set
from bench.provenance import sha256_path

_KEYED_WHEN_SET = {"caption_column": None}      # added with captions: out of the validated dict at its default


class HFReader(Reader):
    def __init__(self, ds, image_column: str):
        self.ds, self.image_column = ds, image_column

    def read(self, item: Item):
        rec = self.ds[item.ref][self.image_column]
        if rec is None:
            raise ValueError("no image in this row")
        return rec["bytes"] if rec.get("bytes") is not None else rec["path"]


class HFDataset(CaptionedImages):
    kind = "hf"
    cards = {"hf": DatasetCard(
        "hf", title="any Hugging Face dataset with an image and a label column", folder=None,
        licence="that of the dataset (see its hub card)", homepage="https://huggingface.co/datasets",
        get="set options.path to a Hugging Face dataset id or a local load_dataset / save_to_disk path")}

    class Options(LabelledImages.Options):
        path: NonEmpty                               # required: a hub id or a local path
        split: NonEmpty = "validation"
        config: MaybeStr = None                      # load_dataset's name argument
        revision: MaybeStr = None
        data_dir: MaybeStr = None
        cache_dir: MaybeStr = None
        image_column: MaybeStr = "image"             # null: prompt-only (needs caption_column)
        label_column: NonEmpty = "label"
        classes: Annotated[list[str], Field(min_length=1)] | Literal["imagenet-1k"] | None = None
        class_names: Literal[cls_index.NAME_VARIANTS] = "underscored"   # with classes: imagenet-1k
        caption_column: MaybeStr = None              # a caption set: each row's text

        @model_validator(mode="after")
        def _images_or_captions(self):
            if self.image_column is None and self.caption_column is None:
                raise ValueError("image_column: null (a prompt-only set) needs options.caption_column")
            return self

        @model_serializer(mode="wrap")
        def _keyed(self, handler) -> dict[str, Any]:
            return keyed_when_set(handler(self), _KEYED_WHEN_SET)

    @classmethod
    def describes(cls, name: str, options: dict[str, Any]) -> tuple[str, bool]:
        o = cls.validate_options(options)
        return ("caption" if o.get("caption_column") else "class"), o["image_column"] is not None

    def __init__(self, name: str, **options: Any):
        o = self._setup(name, options)
        path, split, image_column, label_column = o.path, o.split, o.image_column, o.label_column
        self.root, self.split = path, split
        ds = self._load(path, split, o.config, o.revision, o.data_dir, o.cache_dir)
        captioned = o.caption_column is not None
        needed = [c for c in (image_column, o.caption_column) if c is not None]
        if not captioned or label_column in ds.column_names:
            needed.append(label_column)
        for col in needed:
            if col not in ds.column_names:
                raise DatasetError(f"dataset {name!r}: {path!r} split {split!r} has no column {col!r} "
                                   f"(columns: {', '.join(ds.column_names)}); set options.image_column/label_column"
                                   + ("/caption_column" if captioned else ""))
        import datasets
        if image_column is not None:
            feat = ds.features[image_column]
            if not isinstance(feat, datasets.Image):
                raise DatasetError(f"dataset {name!r}: column {image_column!r} is {type(feat).__name__}, not an "
                                   "Image")
        self._arrow = [f["filename"] for f in (ds.cache_files or [])]
        self._ds_fingerprint = getattr(ds, "_fingerprint", None)
        if label_column in needed:
            self.class_names = self._class_names(ds.features[label_column], o.classes, o.class_names)
            labels = ds[label_column]
            if any(not isinstance(y, int) for y in labels):
                raise DatasetError(f"dataset {name!r}: column {label_column!r} must hold integer labels")
        else:                                        # a caption set without labels
            self.class_names, labels = Unnamed(), [0] * ds.num_rows
        items = [Item(f"row/{i}", y, i) for i, y in enumerate(labels)]
        if captioned:
            self._set_captions({it.key: clean_caption(c, f"dataset {name!r}: {path!r} row {it.ref}: column "
                                                         f"{o.caption_column!r}")
                                for it, c in zip(items, ds[o.caption_column])}, has_images=image_column is not None)
        if image_column is None:
            self._finish(items, Reader())
            return
        ds = ds.cast_column(image_column, datasets.Image(decode=False))
        self._finish(items, HFReader(ds.select_columns([image_column]), image_column))

    def _load(self, path, split, config, revision, data_dir, cache_dir):
        try:
            import datasets
        except ImportError as e:
            raise DatasetError(f"dataset {self.name!r}: the hf source needs `pip install datasets` "
                               "(or the project's [hf] extra)") from e
        p = Path(path).expanduser()
        try:
            if p.is_dir() and ((p / "state.json").is_file() or (p / "dataset_dict.json").is_file()):
                ds = datasets.load_from_disk(str(p))
                if isinstance(ds, datasets.DatasetDict):
                    if split not in ds:
                        raise DatasetError(f"dataset {self.name!r}: {path!r} has no split {split!r} "
                                           f"(splits: {', '.join(ds)})")
                    ds = ds[split]
                return ds
            return datasets.load_dataset(path, config, split=split, revision=revision, data_dir=data_dir,
                                         cache_dir=cache_dir)
        except DatasetError:
            raise
        except Exception as e:
            msg = str(e).splitlines()[0] if str(e) else type(e).__name__
            raise DatasetError(f"dataset {self.name!r}: cannot load {path!r} split {split!r}: {msg} (a hub id needs "
                               "network or a populated HF cache; with HF_DATASETS_OFFLINE=1 point options.path at "
                               "a local copy)") from e

    def _class_names(self, feat, classes, variant) -> list[str]:
        if classes == "imagenet-1k":
            return cls_index.class_names(variant)
        if classes is not None:                      # a list of names (Options: non-empty)
            return list(classes)
        names = getattr(feat, "names", None)
        if not names:
            raise DatasetError(f"dataset {self.name!r}: the label column has no ClassLabel names; set "
                               "options.classes to a list of names or 'imagenet-1k'")
        return list(names)

    def content_hash(self) -> str:
        if self._arrow:
            content = [sha256_path(f) for f in self._arrow]
        else:
            content = ["fingerprint", self._ds_fingerprint]
        out = {"arrow": content, "split": self.split, "labels": [it.label for it in self.all_items]}
        if self._captions is not None:               # a caption set (at the defaults: the hash of before)
            out.update(captions=self.caption_digest(), images=self.has_images)
        return digest(out)
