"""The `Generator` base class every model adapter derives from, and the settings it receives."""

from __future__ import annotations

from abc import ABC, abstractmethod
from typing import Any, ClassVar

import torch
from pydantic import BaseModel
from torch import nn

from bench.cell import ModelSpec, SamplerSettings
from bench.options import NoOptions, StrictOptions, parse, validated

__all__ = ["Generator", "ModelSpec", "SamplerSettings", "StrictOptions", "NonFiniteImages", "to_uint8_nhwc", "frozen"]


class Generator(ABC):
    """Base class of every model adapter. The four abstract methods are the contract; every optional hook is
    declared here with its default, so the runner never probes an adapter with ``hasattr``.

    Class attributes an adapter sets:
    - ``family``, ``version``: the adapter's family ("flow", "meanflow", ...) and code version (in every cell key);
    - ``Options``: a `bench.options.StrictOptions` model of the adapter's options (unknown keys and wrong types
      are refused at ``bench validate``; the cell key uses the validated options with defaults filled in);
    - ``solvers``: the solver names the ``solver`` axis accepts (None: the adapter takes no solver axis check);
    - ``sweeps``: False for adapters without steps / cfg axes (pre-generated samples, real images);
    - ``guidance``: one line saying what the suite's ``cfg`` means for this family (shown by ``bench validate``);
    - ``cfg_ignored``: True when the cfg axis has no effect (guidance distilled into the weights);
    - ``conditions``: what a sample can be conditioned on: "class" (a label) and/or "caption" (a dataset's
      per-item text, `bench.data.base.prompts_for`); `check_conditioning` refuses other datasets at validate.
    """

    family: ClassVar[str] = ""
    version: ClassVar[str] = ""
    Options: ClassVar[type[BaseModel]] = NoOptions
    solvers: ClassVar[tuple[str, ...] | None] = None
    sweeps: ClassVar[bool] = True
    guidance: ClassVar[str] = ""
    cfg_ignored: ClassVar[bool] = False
    conditions: ClassVar[frozenset[str]] = frozenset({"class"})

    # -- options ------------------------------------------------------------------------------------------------
    @classmethod
    def validate_options(cls, options: dict[str, Any] | None) -> dict[str, Any]:
        """Options checked against ``cls.Options`` with defaults filled in (raises `bench.options.OptionsError`
        naming every bad key). Idempotent: what a cell stores validates to itself."""
        return validated(cls.Options, options)

    @classmethod
    def parse_options(cls, options: dict[str, Any] | None) -> BaseModel:
        """The typed ``Options`` object for ``options`` (raises `bench.options.OptionsError`)."""
        return parse(cls.Options, options)

    @classmethod
    def check_steps(cls, options: dict[str, Any], steps: int) -> str | None:
        """Why the model cannot run ``steps`` steps with these (validated) options, or None. ``bench validate``
        asks for every swept step count, so a distilled checkpoint run off its step counts is refused before any
        weights are read. Default: every step count is fine."""
        return None

    @classmethod
    def check_conditioning(cls, options: dict[str, Any], conditioning: str) -> str | None:
        """Why the model (with these validated options) cannot be conditioned as a dataset's samples are
        (``conditioning``: "class" or "caption", `bench.data.base.Dataset.describes`), or None. ``bench validate``
        asks for every model x dataset pair. Default: ``conditioning`` must be one of ``conditions``."""
        if conditioning in cls.conditions:
            return None
        if conditioning == "caption":
            return ("a class-conditional model cannot be conditioned on captions; give it a class-labelled dataset, "
                    "or use a text-to-image adapter (e.g. diffusers) on this caption set")
        return f"the model takes {' or '.join(sorted(cls.conditions))} conditioning, not {conditioning}"

    # -- the contract ---------------------------------------------------------------------------------------
    @abstractmethod
    def load(self, spec: ModelSpec, device: torch.device) -> None:
        """Load weights (safetensors or weights_only=True; never pickle) onto ``device``."""

    @abstractmethod
    def nfe_per_image(self, s: SamplerSettings) -> float:
        """Declared network evaluations per image (NaN when only counting can tell); timing.py counts the real
        number."""

    @abstractmethod
    def networks(self) -> list[nn.Module]:
        """Modules whose one forward call over a batch of B rows is B network evaluations (hooked for NFE)."""

    @abstractmethod
    def generate(self, labels: torch.Tensor, sample_ids: torch.Tensor, s: SamplerSettings) -> torch.Tensor:
        """uint8 NHWC images, one per label. All randomness for row k comes from
        ``bench.noise`` seeded with (s.seed, sample_ids[k])."""

    # -- optional hooks, with their defaults ----------------------------------------------------------------
    def weights_id(self, spec: ModelSpec) -> str:
        """What identifies the weights in cell keys: by default a local path's content hash, else the reference
        as given (a hub id, which should carry a revision to be reproducible)."""
        from bench.provenance import default_weights_id
        return default_weights_id(spec)

    def requirements(self, spec: ModelSpec) -> list:
        """What `bench run` checks is on this machine before it opens the store (`bench.preflight.Requirement`s):
        by default ``spec.weights`` when given, as a local file or folder, ``$VAR/path`` or a Hugging Face id in
        the local cache, and nothing when the adapter's own default applies. Adapters that know better (several
        files, a decoder, an optional package, a default location) override it."""
        if spec.weights is None:
            return []
        from bench.preflight import weights
        return [weights(spec.weights, "weights")]

    def bind_dataset(self, dataset) -> None:
        """Called with the cell's dataset before its plan is made (adapters that draw from it, like ``real``)."""
        return None

    def plan(self, labels: torch.Tensor, sample_ids: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """The cell's (labels, sample ids) after the adapter's say (``samples`` uses its own labels)."""
        return labels, sample_ids

    def describe(self) -> dict[str, Any]:
        """Resolved details stored in every cell's provenance (pipeline, scheduler, resize filter, ...)."""
        return {}


class NonFiniteImages(ValueError):
    """A generator produced NaN or Inf pixels: quantising them would silently give black images."""


def to_uint8_nhwc(x: torch.Tensor) -> torch.Tensor:
    """Map a float NCHW batch in [-1, 1] to uint8 NHWC (round half up, clamped). NaN/Inf raise
    `NonFiniteImages` (the cell fails with that reason) instead of turning into black pixels."""
    bad = ~torch.isfinite(x)
    if bool(bad.any()):
        rows = bad.flatten(1).any(1).nonzero().flatten().tolist()
        raise NonFiniteImages(f"{len(rows)} of {len(x)} images in the batch contain NaN/Inf values "
                              f"(batch rows {rows[:8]})")
    x = ((x.float().clamp(-1, 1) + 1) * 127.5 + 0.5).floor().clamp(0, 255)
    return x.to(torch.uint8).permute(0, 2, 3, 1).contiguous().cpu()


def frozen(net: nn.Module, device: torch.device, dtype: torch.dtype | None = None) -> nn.Module:
    """An inference-only network: moved to ``device`` (and ``dtype``), eval mode, no gradients."""
    net = net.to(device=device, dtype=dtype).eval()
    for p in net.parameters():
        p.requires_grad_(False)
    return net
