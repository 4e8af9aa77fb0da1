"""Prompt-only benchmark sets read from their released files: ``partiprompts``, ``drawbench``, ``geneval``.

A prompt-only set has no reference images (``has_images`` False): sample i is generated from prompt i and scored
by the metrics that need no reference images (CLIP Score, PickScore, ImageReward); FID / IS / KID are not
computed on it. ``captions()`` are the prompts in file order and ``categories()`` each prompt's category (the
per-category means the report and store keep as extra rows).

Files (``options.root``: the file itself or a folder holding it; else ``$STEPBENCH_DATA/<the card's folder>``):
- ``partiprompts``: ``PartiPrompts.tsv`` of google-research/parti, columns Prompt, Category, Challenge, Note
  (1,632 prompts, 12 categories). Read as plain tab-separated text, quotes kept (one prompt starts with a quoted
  phrase, which the csv module's default dialect would strip);
- ``drawbench``: the DrawBench sheet of Imagen as CSV, columns Prompts (or Prompt), Category (200 prompts, 11
  categories);
- ``geneval``: GenEval's ``prompts/evaluation_metadata.jsonl`` (djghosh13/geneval), one object per line with
  ``prompt`` and ``tag`` (the task: single_object, two_object, counting, colors, position, color_attr; 553 prompts).

``categories: [names]`` keeps only those categories' prompts (file order); an unknown name is an error listing the
file's. Labels: each prompt's category is its class (``class_names`` = the categories in order of first
appearance, listed in the cells' provenance), so the per-class rows CLIP Score / PickScore store
(``clip_score/class/<k>``) are the per-category means. Fingerprint: the prompts and categories, in order (not the
file's bytes: the same rows reformatted are the same set).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any, Iterator

import torch
from pydantic import Field

from bench.data.base import Dataset, DatasetCard, DatasetError, StrictOptions
from bench.data.captioned import clean_caption, prompt_only_error
from bench.data.captions import read_rows
from bench.data.hashing import digest
from bench.data.locate import data_root
from bench.data.stream import MaybeStr, NonEmpty


@dataclass(frozen=True)
class PromptFile:
    file: str                       # its name as released (looked for inside a folder root)
    format: str                     # jsonl | csv | tsv (bench.data.captions.read_rows)
    prompt: tuple[str, ...]         # accepted names of the prompt column, first found wins
    category: tuple[str, ...]       # ... and of the category column
    prompts: int                    # as released
    categories: int


FILES = {
    "partiprompts": PromptFile("PartiPrompts.tsv", "tsv", ("Prompt",), ("Category",), 1632, 12),
    "drawbench": PromptFile("DrawBench.csv", "csv", ("Prompts", "Prompt", "prompts", "prompt"),
                            ("Category", "category"), 200, 11),
    "geneval": PromptFile("evaluation_metadata.jsonl", "jsonl", ("prompt",), ("tag",), 553, 6),
}

CARDS = {
    "partiprompts": DatasetCard(
        "partiprompts", title="PartiPrompts (P2): 1,632 prompts in 12 categories (prompt-only)",
        folder="partiprompts", licence="Apache-2.0 (google-research/parti)",
        homepage="https://github.com/google-research/parti",
        get="download PartiPrompts.tsv from https://github.com/google-research/parti (raw file at the repository "
            "root) into $STEPBENCH_DATA/partiprompts/ (or set options.root to the file)"),
    "drawbench": DatasetCard(
        "drawbench", title="DrawBench (Imagen): 200 prompts in 11 categories (prompt-only)", folder="drawbench",
        licence="released by Google Research with Imagen (Saharia et al., 2022) without a stated "
        "licence: cite the paper, use for evaluation", homepage="https://imagen.research.google/",
        get="export the DrawBench sheet linked from https://imagen.research.google/ as CSV (columns Prompts, "
            "Category; a copy is on the Hugging Face hub, e.g. shunk031/DrawBench) and save it as "
            "$STEPBENCH_DATA/drawbench/DrawBench.csv (or set options.root to the file)"),
    "geneval": DatasetCard(
        "geneval", title="GenEval: 553 compositional prompts in 6 tasks (prompt-only; its object-detector "
        "scoring is not part of stepbench)", folder="geneval", licence="MIT (djghosh13/geneval)",
        homepage="https://github.com/djghosh13/geneval",
        get="download prompts/evaluation_metadata.jsonl from https://github.com/djghosh13/geneval into "
            "$STEPBENCH_DATA/geneval/ (or set options.root to the file)"),
}


def _column(columns: list[str], accepted: tuple[str, ...], path: Path, what: str) -> str:
    for c in accepted:
        if c in columns:
            return c
    raise DatasetError(f"{path}: no {what} column ({' or '.join(map(repr, accepted))}; columns: "
                       f"{', '.join(map(repr, columns)) or 'none'})")


class PromptSet(Dataset):
    """A released prompt list with a category per prompt; no reference images (see the module doc)."""

    cards = CARDS
    conditioning = "caption"
    has_images = False

    class Options(StrictOptions):
        root: MaybeStr = None                        # the file or its folder; else $STEPBENCH_DATA/<folder>
        categories: Annotated[list[NonEmpty], Field(min_length=1)] | None = None   # keep only these

    @classmethod
    def planned_size(cls, name: str, options: dict[str, Any]) -> int | None:
        """The released prompt count (the cards' ``images`` stay None: these sets have no images); None with
        ``categories``."""
        card = cls._card_for(name)
        spec = FILES.get(card.name) if card is not None else None
        return spec.prompts if spec is not None and not (options or {}).get("categories") else None

    def __init__(self, name: str, **options: Any):
        o = self.open_options(name, options)
        card = self._card_for(name)
        spec = FILES.get(card.name) if card is not None else None
        if spec is None:
            raise DatasetError(f"unknown prompt set {name!r}; expected {', '.join(FILES)}")
        self.name, self.set, self.prompt_template = name, card.name, "{class_name}"
        found = data_root(name, o.root, card)
        path = found / spec.file if found.is_dir() else found
        if not path.is_file():
            raise DatasetError(f"dataset {name!r}: no {spec.file} in {str(found)!r}; {card.get}")
        self.path = path
        columns, rows = read_rows(path, spec.format)
        if not rows:
            raise DatasetError(f"dataset {name!r}: {str(path)!r} has no prompts")
        pcol = _column(columns, spec.prompt, path, "prompt")
        ccol = _column(columns, spec.category, path, "category")
        prompts, cats = [], []
        for n, row in rows:
            prompts.append(clean_caption(row.get(pcol), f"{path}:{n}: column {pcol!r}"))
            cat = row.get(ccol)
            if not isinstance(cat, str) or not cat.strip():
                raise DatasetError(f"{path}:{n}: column {ccol!r} needs a category, got {cat!r}")
            cats.append(cat.strip())
        if o.categories is not None:
            unknown = [c for c in o.categories if c not in set(cats)]
            if unknown:
                raise DatasetError(f"dataset {name!r}: options.categories: {unknown[0]!r} is not a category of "
                                   f"{str(path)!r} (its categories: {', '.join(sorted(set(cats)))})")
            keep = [i for i, c in enumerate(cats) if c in set(o.categories)]
            prompts, cats = [prompts[i] for i in keep], [cats[i] for i in keep]
        self._prompts, self._categories = prompts, cats
        self.class_names = list(dict.fromkeys(cats))              # categories in order of first appearance
        index = {c: k for k, c in enumerate(self.class_names)}
        self._labels = torch.tensor([index[c] for c in cats], dtype=torch.long)
        self._fingerprint = digest({"source": f"prompts/{self.set}", "prompts": prompts, "categories": cats})

    def __len__(self) -> int:
        return len(self._prompts)

    def fingerprint(self) -> str:
        return self._fingerprint

    def labels(self) -> torch.Tensor:
        """Each prompt's category id (the index of its category in ``class_names``)."""
        return self._labels.clone()

    def captions(self) -> list[str]:
        return list(self._prompts)

    def categories(self) -> list[str]:
        """Each prompt's category, in dataset order (PartiPrompts' Category, DrawBench's Category, GenEval's tag)."""
        return list(self._categories)

    def reference_batches(self, batch_size: int) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        raise prompt_only_error(self.name)

    def listed(self) -> tuple[int, None]:
        return len(self._prompts), None

    def provenance(self) -> dict[str, Any]:
        return {"prompt_set": {"file": str(self.path), "count": len(self._prompts),
                               "categories": list(self.class_names)}}    # class k of the per-class rows
