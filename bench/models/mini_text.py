"""The miniature world's text-to-image adapters: ``mini-t2i-sit`` and ``mini-t2i-meanflow``.

Each is a mini class-conditional generator (`bench.models.mini`) behind a text encoder that reads the caption of
each sample (`bench.data.base.prompts_for`) and conditions on the one mini shape it names. The labels a plan gives
are never used: what a sample shows comes from its caption alone, as in a text-to-image pipeline, so a caption that
names another shape than its reference image's label gets that shape. The mini generators know only shapes, so
colour words are not followed (CLIP Score on `mini-captions` shows that as a lower score than real images get).

Invariant: sample i is the base generator's sample i for the class its caption names, with the same noise
(seed, i), NFE and settings; a caption naming no mini shape, or two, fails the cell naming the caption.
"""

from __future__ import annotations

import re

import torch

from bench.data.base import prompts_for
from bench.mini import data as mini
from bench.models.base import SamplerSettings
from bench.models.mini import MiniMeanFlow, MiniSiT

_WORDS = {name: k for k, name in enumerate(mini.CLASSES)}


def class_of(caption: str) -> int:
    """The mini class a caption names (whole words, case-insensitive); a ValueError naming the caption otherwise."""
    named = {_WORDS[w] for w in re.findall(r"[a-z]+", caption.lower()) if w in _WORDS}
    if len(named) != 1:
        what = "names no mini shape" if not named else "names more than one mini shape"
        raise ValueError(f"caption {caption!r} {what} ({', '.join(mini.CLASSES)}): the mini text encoder conditions "
                         f"on exactly one")
    return named.pop()


class _CaptionConditioned:
    """Mixin: bind the cell's caption set, map each sample's caption to the class it names, then generate."""
    conditions = frozenset({"caption"})

    def bind_dataset(self, dataset) -> None:
        self.dataset = dataset

    def generate(self, labels: torch.Tensor, sample_ids: torch.Tensor, s: SamplerSettings) -> torch.Tensor:
        dataset = getattr(self, "dataset", None)
        if dataset is None:
            raise RuntimeError(f"{type(self).__name__}: no dataset bound (the runner binds it before generating)")
        ids = torch.as_tensor(sample_ids).reshape(-1).cpu()
        text = torch.tensor([class_of(c) for c in prompts_for(dataset, labels, ids)], dtype=torch.long)
        return super().generate(text, sample_ids, s)

    def describe(self) -> dict:
        return {"text_encoder": "mini shape-word reader (one of the mini classes per caption; colours ignored)"}


class MiniText2ImageSiT(_CaptionConditioned, MiniSiT):
    """mini-sit conditioned on each sample's caption."""
    version = "mini-t2i-sit-1"


class MiniText2ImageMeanFlow(_CaptionConditioned, MiniMeanFlow):
    """mini-meanflow conditioned on each sample's caption."""
    version = "mini-t2i-meanflow-1"
