"""What the caption sources share (issue 21): reference items that carry their own text.

`CaptionedImages` is the file-backed base (`bench.data.stream.LabelledImages`) of a set whose items each have a
caption (``coco``, ``captions``, ``hf`` with ``caption_column``). A subclass lists its items as usual and calls
``_set_captions({item key: caption}, has_images)`` before ``_finish``. Invariants:

- ``captions()`` has one caption per reference item in dataset order: the items ``labels()`` and
  ``reference_batches`` give, so an image that fails to decode takes its caption out with it;
- the caption text of every listed item is part of the fingerprint (``caption_digest``, hashed into the source's
  ``content_hash``), so a changed caption changes every cell key on the set;
- ``has_images`` False (a captions file with no image column): nothing is decoded or scanned, ``reference_batches``
  and ``holdout`` are a `DatasetError`, and the fingerprint is the content alone (no transform or resolution);
- with no captions set (``_set_captions`` never called, e.g. ``hf`` at its defaults) the class behaves exactly as
  `LabelledImages`: ``conditioning`` "class", ``captions()`` None, the same fingerprint.

Captions are cleaned once (`clean_caption`: whitespace runs, newlines included, become one space; ends stripped);
an empty or non-text caption is a `DatasetError` naming where it is.
"""

from __future__ import annotations

from typing import Any, Iterator

import torch

from bench.data.base import DatasetError
from bench.data.hashing import digest
from bench.data.stream import LabelledImages


def clean_caption(text: Any, where: str) -> str:
    """``text`` with whitespace runs made one space and ends stripped; ``where`` names it in the error when it is
    not a non-empty string."""
    if not isinstance(text, str):
        raise DatasetError(f"{where}: the caption is {type(text).__name__}, not text")
    out = " ".join(text.split())
    if not out:
        raise DatasetError(f"{where}: the caption is empty")
    return out


def prompt_only_error(name: str) -> DatasetError:
    return DatasetError(f"dataset {name!r} is prompt-only: it has no reference images, so metrics that compare "
                        "with reference images (FID, IS, KID, ...) cannot run on it")


class CaptionedImages(LabelledImages):
    """A file-backed set whose items carry captions (see the module doc)."""

    _captions: dict[str, str] | None = None

    def _set_captions(self, captions: dict[str, str], has_images: bool = True) -> None:
        """Make this a caption set: ``captions`` maps every item key to its (cleaned) caption."""
        self._captions = captions
        self.conditioning, self.has_images = "caption", has_images

    def captions(self) -> list[str] | None:
        if self._captions is None:
            return None
        ok = self._ok()                      # cached by the base: the list is built once per set
        if getattr(self, "_caption_list", (None,))[0] is not ok:
            self._caption_list = (ok, [self._captions[it.key] for it in ok])
        return list(self._caption_list[1])

    def caption_digest(self) -> str | None:
        """sha256 over the caption of every listed item in order (None: not a caption set)."""
        if self._captions is None:
            return None
        return digest([self._captions[it.key] for it in self.all_items])

    def fingerprint(self) -> str:
        if self.has_images:
            return super().fingerprint()
        if self._fingerprint is None:
            self._fingerprint = digest({"source": self.kind, "content": self._content(), "half": self.half,
                                        "images": False})
        return self._fingerprint

    def _scan(self) -> list[dict]:
        if not self.has_images:            # nothing to decode: every listed item is in the set
            self._failures = []
        return super()._scan()

    def reference_batches(self, batch_size: int) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        if not self.has_images:
            raise prompt_only_error(self.name)
        return super().reference_batches(batch_size)

    def holdout(self, labels: torch.Tensor, sample_ids: torch.Tensor) -> torch.Tensor:
        if not self.has_images:
            raise prompt_only_error(self.name)
        return super().holdout(labels, sample_ids)

    def provenance(self) -> dict[str, Any]:
        out = super().provenance()
        if self._captions is not None:
            out["captions"] = {"count": len(self.items), "sha256": self.caption_digest()}
        return out


__all__ = ["CaptionedImages", "clean_caption", "prompt_only_error"]
