"""The `Dataset` base class (a labelled reference set), its `DatasetCard`, and sample plans over it."""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass
from typing import Any, ClassVar, Iterator

import torch
from pydantic import BaseModel

from bench import noise
from bench.cell import SamplePlan
from bench.options import NoOptions, OptionsError, StrictOptions, parse, validated

__all__ = ["Dataset", "DatasetCard", "DatasetError", "StrictOptions", "plan_labels", "prompts_for"]


@dataclass(frozen=True)
class DatasetCard:
    """What is known about a dataset before it is opened: where it conventionally lives, what it should hold,
    its licence and how to get it. Cards feed `bench data verify`, `bench validate` sizes, error messages and
    the report; a source's conventional folder is named here and nowhere else."""
    name: str
    title: str = ""
    folder: str | None = None         # under $STEPBENCH_DATA; None: not file-backed (procedural, hub)
    images: int | None = None         # expected reference images (None: depends on options or the copy)
    classes: int | None = None
    licence: str = ""
    homepage: str = ""
    get: str = ""                     # what to download and how to lay it out (used in "not found" errors)
    manifest: str | None = None       # datasets/<manifest>.sha256 for `bench data verify`


class Dataset(ABC):
    """Base class of every dataset source: a labelled reference set, opened as ``cls(name, **options)`` with
    options validated against ``cls.Options`` (unknown keys and bad values refused at ``bench validate``).

    ``cards`` maps each registry name the class serves to its `DatasetCard` (one class may serve several names,
    like the mini world's three sets); ``card(name)`` returns it.
    """

    Options: ClassVar[type[BaseModel]] = NoOptions
    cards: ClassVar[dict[str, DatasetCard]] = {}

    name: str
    class_names: list[str]
    prompt_template: str

    # What conditions a sample (see `describes`): "class" (the label's class name through ``prompt_template``) or
    # "caption" (reference item i has its own text, ``captions()[i]``, which sample i is generated from and scored
    # against). ``has_images`` False: a prompt-only set (PartiPrompts, DrawBench): no reference images, so metrics
    # that compare with reference images are not computed on it.
    conditioning: ClassVar[str] = "class"
    has_images: ClassVar[bool] = True

    @classmethod
    def validate_options(cls, options: dict[str, Any] | None) -> dict[str, Any]:
        """Options with defaults filled in (raises `bench.options.OptionsError` naming every bad key)."""
        return validated(cls.Options, options)

    @classmethod
    def open_options(cls, name: str, options: dict[str, Any] | None) -> BaseModel:
        """The typed options a constructor works from: ``cls(name, **options)`` calls this first, so a bad
        option is the same error at run time as at ``bench validate``, as one `DatasetError`
        ``dataset {name!r}: options.<key>: ...`` (every problem, ``; `` apart)."""
        try:
            return parse(cls.Options, options)
        except OptionsError as e:
            raise DatasetError(f"dataset {name!r}: " + "; ".join(f"options.{k}: {m}" if k else m
                                                                 for k, m in e.problems)) from None

    @classmethod
    def describes(cls, name: str, options: dict[str, Any]) -> tuple[str, bool]:
        """(conditioning, has_images) of the set with these validated options, known without opening it (suite
        validation checks adapters and metrics against it offline). Default: the class attributes."""
        return cls.conditioning, cls.has_images

    def captions(self) -> list[str] | None:
        """One caption per reference item, in dataset order (caption sets); None for class-conditioned sets."""
        return None

    @classmethod
    def card(cls, name: str) -> DatasetCard | None:
        return cls.cards.get(name)

    @classmethod
    def planned_size(cls, name: str, options: dict[str, Any]) -> int | None:
        """Reference images the set will have with these (validated) options, known without opening it
        (None: only the copy on disk can tell). Default: the card's expected count."""
        card = cls.card(name)
        return card.images if card else None

    @classmethod
    def requirements(cls, name: str, options: dict[str, Any]) -> list:
        """What `bench run` checks is on this machine before it opens the store (`bench.preflight.Requirement`s).
        Default: a file-backed set (its card names a folder under $STEPBENCH_DATA, or ``options.root`` is given)
        needs its copy, as `inspect` finds it; a procedural or hub-backed set needs nothing checked here."""
        card = cls._card_for(name)
        if (card is None or card.folder is None) and not (options or {}).get("root"):
            return []
        from bench.cell import canonical_json
        from bench.preflight import Requirement
        return [Requirement("", ("dataset", cls.__module__, cls.__qualname__, name, canonical_json(options)),
                            lambda: cls.inspect(name, options))]

    @classmethod
    def inspect(cls, name: str, options: dict[str, Any]):
        """The copy opened as a run opens it, files listed and none decoded (`bench.preflight.Check`): missing
        when it cannot be opened (not found, wrong layout: the error says what to download and where to put it);
        a note when what it lists differs from the card's counts (`listed`) or opening it warned."""
        import warnings

        from bench.preflight import Check
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            try:
                ds = cls(name, **(options or {}))
            except DatasetError as e:
                return Check(missing=str(e).removeprefix(f"dataset {name!r}: ").removeprefix(f"dataset {name!r} "))
        notes = [str(w.message).removeprefix(f"dataset {name!r}: ") for w in caught]
        card, listed = cls._card_for(name), ds.listed()
        expected = (cls.planned_size(name, options or {}), card.classes if card else None)
        differ = [f"{n:,} {unit} (its card: {e:,})" for n, e, unit in zip(listed, expected, ("images", "classes"))
                  if n is not None and e is not None and n != e]
        if differ:
            notes.append(f"the copy lists {' in '.join(differ)}: its numbers are not comparable with a full copy's")
        return Check(note="; ".join(notes) or None)

    @classmethod
    def _card_for(cls, name: str) -> DatasetCard | None:
        """The card of ``name``, or the class's only card when it is registered under another name."""
        card = cls.card(name)
        return card if card is not None or len(cls.cards) != 1 else next(iter(cls.cards.values()))

    def listed(self) -> tuple[int | None, int | None]:
        """(images, classes) an opened copy lists before any image is decoded, for the pre-flight's comparison
        with the card (None: unknown). Default: unknown."""
        return None, None

    @abstractmethod
    def __len__(self) -> int: ...

    @abstractmethod
    def fingerprint(self) -> str:
        """Content hash of the reference set and its preprocessing: part of every cell and cache key."""

    @abstractmethod
    def labels(self) -> torch.Tensor:
        """Reference labels (int64) in dataset order."""

    @abstractmethod
    def reference_batches(self, batch_size: int) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        """(uint8 NHWC images, int64 labels) of the whole reference set, in order, streamed."""

    # -- optional hooks, with their defaults ----------------------------------------------------------------
    has_holdout: ClassVar[bool] = False

    def holdout(self, labels: torch.Tensor, sample_ids: torch.Tensor) -> torch.Tensor:
        """Real images disjoint from the reference set (for real-vs-real rows); only where ``has_holdout``."""
        raise DatasetError(f"dataset {self.name!r} has no holdout set for real-vs-real rows")

    def provenance(self) -> dict[str, Any]:
        """What a cell's provenance records about the set beyond its fingerprint (decode failures, unmapped
        folders, ...)."""
        return {}


class DatasetError(ValueError):
    pass


def prompts_for(dataset: Dataset, labels: torch.Tensor, sample_ids: torch.Tensor | None = None) -> list[str]:
    """The text of each sample: its reference item's caption on a caption set (sample i is planned from reference
    item i: caption sets take ``per_reference`` plans only, `plan_labels`), else its label's class name through the
    set's template. What generators that take text are given and what CLIP Score / PickScore score against."""
    captions = dataset.captions() if getattr(dataset, "conditioning", "class") == "caption" else None
    if captions is not None:
        if sample_ids is None:
            raise DatasetError(f"dataset {dataset.name!r}: captions are looked up by sample id (none given)")
        n = len(captions)
        bad = [i for i in sample_ids.tolist() if not 0 <= i < n]
        if bad:
            raise DatasetError(f"dataset {dataset.name!r}: sample {bad[0]} has no caption (the set has {n})")
        return [captions[i] for i in sample_ids.tolist()]
    return [dataset.prompt_template.format(class_name=dataset.class_names[int(y)]) for y in labels.tolist()]


def plan_labels(dataset: Dataset, plan: SamplePlan, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """(labels, sample_ids) for a cell: sample i is conditioned on labels[i] and seeded by (seed, i)."""
    if getattr(dataset, "conditioning", "class") == "caption" and plan.kind != "per_reference":
        raise DatasetError(f"dataset {dataset.name!r} gives each item its own caption: samples.plan must be "
                           f"per_reference (sample i is made from caption i), not {plan.kind!r}")
    k = len(dataset.class_names)
    if plan.kind == "per_reference":
        labels = dataset.labels()
        if plan.n is not None:
            if plan.n > len(labels):
                raise DatasetError(f"samples.n = {plan.n} exceeds the {len(labels)} reference images of "
                                   f"dataset {dataset.name!r}")
            labels = labels[: plan.n]
    elif plan.kind == "per_class":
        labels = torch.arange(k).repeat_interleave(plan.n)
    elif plan.kind == "uniform":
        labels = noise.labels_uniform(seed, torch.arange(plan.n), k)
    else:
        raise DatasetError(f"unknown sample plan {plan.kind!r}")
    return labels.long(), torch.arange(len(labels))
