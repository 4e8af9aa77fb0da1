"""``captions``: a local JSONL, CSV or TSV file of captions, with images or without (a prompt-only set).

Columns (names set by ``caption_column``, ``image_column``, ``label_column``):
- ``caption`` (required): the text each sample is generated from and scored against (`bench.data.captioned`);
- ``image`` (optional): an image path, relative to the file's folder (or absolute). With the column every row
  needs one; without it the set is prompt-only (``has_images`` False: FID / IS / KID cannot run on it);
- ``label`` (optional): an integer class id or a class name per row. With ``classes`` ids index it and names
  must be in it; without, ids name classes "0".."max" and names are sorted into classes. No column: label 0.

Format: ``format: auto`` (default) by the extension (.jsonl / .json -> JSONL, .csv, .tsv / .tab); JSONL is one
object per line (blank lines skipped), CSV is the csv module's dialect, TSV is tab-separated with quotes kept
as text (no quoting). Order: the file's row order. Fingerprint: the captions, the labels and (with images) each
image file's sha256, in order; the file's own bytes and format are not in it, so the same rows as CSV or JSONL
are the same set.
"""

from __future__ import annotations

import csv
import io
import json
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import Field

from bench.data.base import DatasetCard, DatasetError
from bench.data.captioned import CaptionedImages, clean_caption
from bench.data.files import FolderReader, folder_content_hash
from bench.data.hashing import digest
from bench.data.image_files import Unnamed
from bench.data.stream import Item, LabelledImages, NonEmpty

GET = ("point options.path at a .jsonl, .csv or .tsv with a 'caption' column (and optional 'image' paths relative "
       "to the file, and 'label')")
FORMATS = {".jsonl": "jsonl", ".json": "jsonl", ".csv": "csv", ".tsv": "tsv", ".tab": "tsv"}


def file_format(path: Path, fmt: str) -> str:
    if fmt != "auto":
        return fmt
    got = FORMATS.get(path.suffix.lower())
    if got is None:
        raise DatasetError(f"{path}: cannot tell the format from the extension {path.suffix!r}; set options.format "
                           "to jsonl, csv or tsv")
    return got


def _text(path: Path) -> str:
    try:
        return path.read_bytes().decode("utf-8-sig")
    except OSError as e:
        raise DatasetError(f"{path}: cannot be read ({e.strerror or e})") from None
    except UnicodeDecodeError as e:
        raise DatasetError(f"{path}: not UTF-8 text (byte {e.start})") from None


def read_rows(path: Path, fmt: str) -> tuple[list[str], list[tuple[int, dict]]]:
    """(the columns, [(line number, row)]) of a JSONL / CSV / TSV file. JSONL's columns are its first object's
    keys; CSV / TSV's the header. Errors name the file and line."""
    text = _text(path)
    if fmt == "jsonl":
        rows = []
        for n, line in enumerate(text.splitlines(), 1):
            if not line.strip():
                continue
            try:
                row = json.loads(line)
            except ValueError as e:
                raise DatasetError(f"{path}:{n}: not JSON ({e})") from None
            if not isinstance(row, dict):
                raise DatasetError(f"{path}:{n}: expected a JSON object per line, got {type(row).__name__}")
            rows.append((n, row))
        return (list(rows[0][1]) if rows else []), rows
    opts = {"delimiter": "\t", "quoting": csv.QUOTE_NONE} if fmt == "tsv" else {}
    reader = csv.DictReader(io.StringIO(text, newline=""), **opts)
    columns = list(reader.fieldnames or [])
    rows = []
    for row in reader:
        if None in row:
            raise DatasetError(f"{path}:{reader.line_num}: more fields than the header's {len(columns)}")
        rows.append((reader.line_num, row))
    return columns, rows


def column_error(path: Path, what: str, col: str, columns: list[str], option: str) -> DatasetError:
    return DatasetError(f"{path}: no {what} column {col!r} (columns: {', '.join(map(repr, columns)) or 'none'}); "
                        f"set options.{option}")


class CaptionsFile(CaptionedImages):
    """Rows of (caption, optional image, optional label) from a local file (see the module doc)."""

    kind = "captions"
    cards = {"captions": DatasetCard(
        "captions", title="a local JSONL / CSV / TSV of captions, with or without images", folder=None,
        licence="that of the captions and images: stepbench reads a copy, never ships one", get=GET)}

    class Options(LabelledImages.Options):
        path: NonEmpty                               # required: the file
        format: Literal["auto", "jsonl", "csv", "tsv"] = "auto"
        caption_column: NonEmpty = "caption"
        image_column: NonEmpty = "image"             # absent from the file: a prompt-only set
        label_column: NonEmpty = "label"             # absent from the file: label 0
        classes: Annotated[list[str], Field(min_length=1)] | None = None

    @classmethod
    def describes(cls, name: str, options: dict[str, Any]) -> tuple[str, bool]:
        """Images or not, from the file's columns (its header or first object); an unreadable file: images
        assumed (opening it then says what is wrong)."""
        o = cls.validate_options(options)
        path = Path(o["path"]).expanduser()
        try:
            columns, _ = read_rows(path, file_format(path, o["format"]))
        except DatasetError:
            return "caption", True
        return "caption", o["image_column"] in columns

    @classmethod
    def requirements(cls, name: str, options: dict[str, Any]) -> list:
        """The file, opened as a run opens it (the base checks only sets with a folder or ``root``)."""
        from bench.cell import canonical_json
        from bench.preflight import Requirement
        return [Requirement("", ("dataset", cls.__module__, cls.__qualname__, name, canonical_json(options)),
                            lambda: cls.inspect(name, options))]

    def __init__(self, name: str, **options: Any):
        o = self._setup(name, options)
        self.path = Path(o.path).expanduser()
        if not self.path.is_file():
            raise DatasetError(f"dataset {name!r}: options.path {str(self.path)!r} is not a file; {GET}")
        self.root = self.path.parent
        columns, rows = read_rows(self.path, file_format(self.path, o.format))
        if not rows:
            raise DatasetError(f"dataset {name!r}: {str(self.path)!r} has no rows")
        if o.caption_column not in columns:
            raise column_error(self.path, "caption", o.caption_column, columns, "caption_column")
        images = o.image_column in columns
        labels = self._labels(rows, o.label_column, o.classes) if o.label_column in columns else None
        if labels is None:
            self.class_names = Unnamed()
            labels = [0] * len(rows)
        items, caps = [], {}
        for (n, row), y in zip(rows, labels):
            where = f"{self.path}:{n}"
            if o.caption_column not in row:
                raise column_error(self.path, "caption", o.caption_column, list(row), "caption_column")
            if images:
                img = row.get(o.image_column)
                if not isinstance(img, str) or not img.strip():
                    raise DatasetError(f"{where}: column {o.image_column!r} needs an image path, got {img!r}")
                it = Item(f"{n}:{img}", y, img)
            else:
                it = Item(f"row/{n}", y, n)
            caps[it.key] = clean_caption(row[o.caption_column], f"{where}: column {o.caption_column!r}")
            items.append(it)
        self._set_captions(caps, has_images=images)
        self._finish(items, FolderReader(self.root))

    def _labels(self, rows: list[tuple[int, dict]], col: str, classes: list[str] | None) -> list[int]:
        """Label ids of the rows (and ``class_names``): ids or names, as the module doc says."""
        raw = []
        for n, row in rows:
            v = row.get(col)
            if isinstance(v, str) and v.strip().isdigit():
                v = int(v)
            if isinstance(v, bool) or not isinstance(v, (int, str)) or v == "":
                raise DatasetError(f"{self.path}:{n}: column {col!r} needs a class id or name, got {v!r}")
            raw.append((n, v))
        names = {v for _, v in raw if isinstance(v, str)}
        if names and any(isinstance(v, int) for _, v in raw):
            n = next(n for n, v in raw if isinstance(v, int) != isinstance(raw[0][1], int))
            raise DatasetError(f"{self.path}:{n}: column {col!r} mixes class ids and names")
        if classes is not None:
            self.class_names = list(classes)
            index = {c: i for i, c in enumerate(classes)}
            out = []
            for n, v in raw:
                y = index.get(v) if isinstance(v, str) else v
                if y is None or not 0 <= y < len(classes):
                    raise DatasetError(f"{self.path}:{n}: label {v!r} is not in options.classes")
                out.append(y)
            return out
        if names:
            self.class_names = sorted(names)
            index = {c: i for i, c in enumerate(self.class_names)}
            return [index[v] for _, v in raw]
        self.class_names = [str(i) for i in range(max(v for _, v in raw) + 1)]
        return [v for _, v in raw]

    def listed(self) -> tuple[int, int | None]:
        return len(self.items), None

    def content_hash(self) -> str:
        images = folder_content_hash(self.root, self.all_items, lambda it: it.ref) if self.has_images else None
        return digest({"captions": self.caption_digest(), "images": images,
                       "labels": [it.label for it in self.all_items],
                       "classes": list(self.class_names) if not isinstance(self.class_names, Unnamed) else None})
