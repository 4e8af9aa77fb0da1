"""The paper's three evaluation sets on ImageNet-1k label ids: imagenet-val, imagenet-v2, relaionet.

Common options: root, class_names (underscored | readable), prompt_template, resolution (256), transform
(paper | adm), workers, half (a | b). Each class's ``cards`` hold its conventional folder under
$STEPBENCH_DATA, expected counts, licence and how to get it; datasets/*.md describe layouts in full.
"""

from __future__ import annotations

import csv
import re
import warnings
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import Field

from bench.data import classes
from bench.data.base import DatasetCard, DatasetError
from bench.data.files import FolderReader, TarReader, folder_content_hash, tar_listing
from bench.data.hashing import digest
from bench.data.locate import data_root
from bench.data.stream import PROVENANCE_LIMIT, Item, LabelledImages, MaybeStr, sorted_files

SYNSET = re.compile(r"^n\d{8}$")
GT_NAMES = ("LOC_val_solution.csv", "val.txt", "val_labels.txt")


class _ImageNetLabelled(LabelledImages):
    class Options(LabelledImages.Options):
        root: MaybeStr = None                        # else $STEPBENCH_DATA/<the card's folder>
        class_names: Literal[classes.NAME_VARIANTS] = "underscored"     # the form that goes into prompts

    def _setup(self, name: str, options: dict[str, Any]):
        o = super()._setup(name, options)
        self.class_names = classes.class_names(o.class_names)
        self.class_name_variant = o.class_names
        return o

    def listed(self) -> tuple[int, int]:
        """(images of this half or of the whole set, classes with an image): listed, nothing decoded."""
        return len(self.items), len({it.label for it in self.all_items})


class ImageNetVal(_ImageNetLabelled):
    """ILSVRC2012 val: ``root/<synset>/*.JPEG`` or flat ``root/*.JPEG`` + a ground-truth file. Order: label id,
    then file name, in both layouts (so both give the same labels, order and fingerprint for the same files)."""

    kind = "imagenet-val"
    cards = {"imagenet-val": DatasetCard(
        "imagenet-val", title="ILSVRC2012 validation (ImageNet-1k val)", folder="imagenet/val", images=50_000,
        classes=1000, licence="ImageNet terms of access: non-commercial research and education only; images "
        "belong to their owners; do not redistribute", homepage="https://image-net.org/download",
        get="download ILSVRC2012_img_val.tar from https://image-net.org/download (registration needed) and "
            "extract it as synset folders (n01440764/ILSVRC2012_val_00000293.JPEG ...) or flat with "
            "options.ground_truth", manifest="imagenet-val")}

    class Options(_ImageNetLabelled.Options):
        ground_truth: MaybeStr = None                # flat layout: LOC_val_solution.csv or '<file> <label>' lines

    def __init__(self, name: str, **options: Any):
        o = self._setup(name, options)
        self.root = data_root(name, o.root, self.dataset_card)
        if not self.root.is_dir():
            raise DatasetError(f"dataset {name!r}: {str(self.root)!r} is not a folder; {self.dataset_card.get}")
        dirs = sorted(p.name for p in self.root.iterdir() if p.is_dir() and not p.name.startswith("."))
        syn = classes.synset_to_index()
        if any(SYNSET.match(d) for d in dirs):
            unknown = [d for d in dirs if d not in syn]
            if unknown:
                raise DatasetError(f"dataset {name!r}: folders {unknown[:5]} under {str(self.root)!r} are not "
                                   "ImageNet-1k synsets")
            items = []
            for d in dirs:
                items += [Item(p.relative_to(self.root).as_posix(), syn[d], p.relative_to(self.root).as_posix())
                          for p in sorted_files(self.root / d)]
            self.layout = "synset folders"
        else:
            items = self._flat(o.ground_truth)
            self.layout = "flat + ground truth"
        items.sort(key=lambda it: (it.label, Path(it.ref).name))
        self._finish(items, FolderReader(self.root))

    def _flat(self, ground_truth: str | None) -> list[Item]:
        files = [p for p in sorted_files(self.root) if p.parent == self.root]
        if not files:
            raise DatasetError(f"dataset {self.name!r}: no synset folders or images in {str(self.root)!r}; "
                               f"{self.dataset_card.get}")
        gt = self._gt_path(ground_truth)
        labels = read_ground_truth(gt)
        items, unlabelled = [], []
        for p in files:
            y = labels.get(p.stem)
            if y is None:
                unlabelled.append(p.name)
            else:
                items.append(Item(p.name, y, p.name))
        if unlabelled:
            raise DatasetError(f"dataset {self.name!r}: {len(unlabelled)} image(s) have no label in {str(gt)!r}, "
                               f"e.g. {unlabelled[0]}")
        return items

    def _gt_path(self, ground_truth: str | None) -> Path:
        if ground_truth:
            p = Path(ground_truth).expanduser()
            p = p if p.is_absolute() else self.root / p
            if not p.is_file():
                raise DatasetError(f"dataset {self.name!r}: options.ground_truth {str(p)!r} is not a file")
            return p
        for d in (self.root, self.root.parent):
            for n in GT_NAMES:
                if (d / n).is_file():
                    return d / n
        raise DatasetError(f"dataset {self.name!r}: {str(self.root)!r} is a flat folder of images; set "
                           f"options.ground_truth to LOC_val_solution.csv or a '<file> <index|synset>' list")

    def content_hash(self) -> str:
        # file names, not folders, identify an image: both layouts of the same files hash alike
        return digest(folder_content_hash(self.root, self.all_items, lambda it: Path(it.ref).name))


def read_ground_truth(path: Path) -> dict[str, int]:
    """image stem -> label id from LOC_val_solution.csv (ImageId,PredictionString) or '<file> <index|synset>'
    lines (0-based ImageNet-1k index, e.g. Caffe's val.txt)."""
    syn = classes.synset_to_index()
    out: dict[str, int] = {}
    text = path.read_text()
    first = text.lstrip().split("\n", 1)[0]
    if first.startswith("ImageId"):
        for row in csv.DictReader(text.splitlines()):
            tok = (row.get("PredictionString") or "").split()
            if not tok or tok[0] not in syn:
                raise DatasetError(f"{path}: row {row.get('ImageId')!r}: expected a synset first in PredictionString")
            out[Path(row["ImageId"]).stem] = syn[tok[0]]
        return out
    for n, line in enumerate(text.splitlines(), 1):
        parts = line.split()
        if not parts:
            continue
        if len(parts) != 2:
            raise DatasetError(f"{path}:{n}: expected '<file> <index|synset>' (a devkit ground-truth file of bare "
                               "ILSVRC2012_IDs is not in index order; use LOC_val_solution.csv), got {line!r}")
        f, lab = parts
        if lab in syn:
            out[Path(f).stem] = syn[lab]
        elif lab.isdigit() and int(lab) < 1000:
            out[Path(f).stem] = int(lab)
        else:
            raise DatasetError(f"{path}:{n}: label {lab!r} is neither a synset nor an index 0..999")
    return out


class ImageNetV2(_ImageNetLabelled):
    """ImageNetV2 (matched-frequency by default): ``{0..999}/*.jpeg`` folders (order: class id, file name) or the
    .tar.gz read in place without extracting (order: archive order)."""

    kind = "imagenet-v2"
    ARCHIVE_DIR = "imagenetv2-matched-frequency-format-val"     # the folder inside the release archive
    cards = {"imagenet-v2": DatasetCard(
        "imagenet-v2", title="ImageNetV2 matched-frequency", folder="imagenet-v2", images=10_000, classes=1000,
        licence="images collected from Flickr, owned by their creators; research evaluation only (see the "
        "ImageNetV2 repository's terms); do not redistribute", homepage="https://github.com/modestyachts/ImageNetV2",
        get="download imagenetv2-matched-frequency.tar.gz from https://huggingface.co/datasets/vaishaal/ImageNetV2 "
            f"and keep the .tar.gz or extract it (giving {ARCHIVE_DIR}/0..999/)", manifest="imagenet-v2")}

    def __init__(self, name: str, **options: Any):
        o = self._setup(name, options)
        self.root = found = data_root(name, o.root, self.dataset_card)
        if found.is_dir() and not _class_id_dirs(found):
            sub = found / self.ARCHIVE_DIR
            tars = sorted(found.glob("*.tar.gz")) + sorted(found.glob("*.tar"))
            if sub.is_dir():
                found = sub
            elif len(tars) == 1:
                found = tars[0]
            elif len(tars) > 1:
                raise DatasetError(f"dataset {name!r}: several archives in {str(found)!r} "
                                   f"({', '.join(t.name for t in tars)}); set options.root to one of them")
            else:
                raise DatasetError(f"dataset {name!r}: no class folders 0..999, {self.ARCHIVE_DIR}/ or .tar.gz in "
                                   f"{str(found)!r}; {self.dataset_card.get}")
        self.source_path = found
        if found.is_dir():
            self.layout = "folder"
            items = []
            for d in _class_id_dirs(found):
                items += [Item(p.relative_to(found).as_posix(), int(d.name), p.relative_to(found).as_posix())
                          for p in sorted_files(d)]
            items.sort(key=lambda it: (it.label, it.ref))
            self._finish(items, FolderReader(found))
        else:
            self.layout = "tar"
            self._tar_sha, listing = tar_listing(found)
            items = []
            for idx, member in listing:
                parts = Path(member).parts
                if len(parts) >= 2 and Path(member).suffix.lower() in (".jpeg", ".jpg", ".png") \
                        and parts[-2].isdigit() and int(parts[-2]) < 1000:
                    items.append(Item(member, int(parts[-2]), idx))
            self._finish(items, TarReader(found))

    def _where(self) -> str:
        return repr(str(self.source_path))

    def content_hash(self) -> str:
        if self.layout == "tar":
            return digest(["tar", self._tar_sha, [[it.key, it.label] for it in self.all_items]])
        return digest(folder_content_hash(self.source_path, self.all_items))


def _class_id_dirs(folder: Path) -> list[Path]:
    dirs = [p for p in folder.iterdir() if p.is_dir() and p.name.isdigit() and int(p.name) < 1000]
    return sorted(dirs, key=lambda p: int(p.name))


class ReLAIONet(_ImageNetLabelled):
    """reLAIONet: ``images/<class name>/`` folders, names normalised (lower-case; spaces, '-', "'" -> '_') and
    matched to ImageNet-1k first lemmas (then any lemma). ``class_map: {folder: id}`` overrides or fills in;
    folders that map to no id are listed in ``unmapped_folders`` (and are an error with ``strict: true``)."""

    kind = "relaionet"
    cards = {"relaionet": DatasetCard(
        "relaionet", title="reLAIONet (LAION web images aligned to ImageNet-1k)", folder="relaionet", images=None,
        classes=1000, licence="web images owned by their creators, gathered via LAION's index; research "
        "evaluation only under the release's terms; do not redistribute",
        get="download reLAIONet (reLAIONet-cleaned-v1, images/<class name>/...) from its authors' release and "
            "unpack it", manifest="relaionet")}

    class Options(_ImageNetLabelled.Options):
        class_map: dict[str, Annotated[int, Field(ge=0, le=999)]] | None = None    # folder -> ImageNet-1k id
        strict: bool = False                         # a folder that maps to no id is an error, not a warning

    def __init__(self, name: str, **options: Any):
        o = self._setup(name, options)
        base = data_root(name, o.root, self.dataset_card)
        for cand in (base / "reLAIONet-cleaned-v1" / "images", base / "images", base):
            if cand.is_dir():
                self.root = cand
                break
        else:
            raise DatasetError(f"dataset {name!r}: {str(base)!r} is not a folder; {self.dataset_card.get}")
        cmap = {classes.normalize(k): v for k, v in (o.class_map or {}).items()}
        self.unmapped_folders: list[dict] = []
        self.folder_ids: dict[str, int] = {}
        items = []
        for d in sorted(p for p in self.root.iterdir() if p.is_dir() and not p.name.startswith(".")):
            y = cmap.get(classes.normalize(d.name), classes.id_for_name(d.name))
            files = sorted_files(d)
            if y is None:
                self.unmapped_folders.append({"folder": d.name, "images": len(files)})
                continue
            self.folder_ids[d.name] = y
            items += [Item(p.relative_to(self.root).as_posix(), y, p.relative_to(self.root).as_posix()) for p in files]
        if self.unmapped_folders:
            msg = (f"dataset {name!r}: {len(self.unmapped_folders)} folder(s) map to no ImageNet-1k id and are left "
                   f"out: {', '.join(u['folder'] for u in self.unmapped_folders[:5])} (add them to options.class_map)")
            if o.strict:
                raise DatasetError(msg)
            warnings.warn(msg, stacklevel=2)
        items.sort(key=lambda it: (it.label, it.ref))
        self._finish(items, FolderReader(self.root))

    def provenance(self) -> dict[str, Any]:
        """Decode failures as every file source, plus ``unmapped_folders`` (folder, image count) when any."""
        out = super().provenance()
        if self.unmapped_folders:
            out["unmapped_folders"] = list(self.unmapped_folders)[:PROVENANCE_LIMIT]
        return out

    def content_hash(self) -> str:
        return digest(folder_content_hash(self.root, self.all_items))
