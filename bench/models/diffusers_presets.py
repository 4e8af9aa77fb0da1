"""What each diffusers pipeline's "guidance scale" means, declared, and the paper's two text-to-image presets.

The suite's ``cfg`` axis is passed to one ``__call__`` argument of the pipeline (``Guidance.kwarg``). What that
argument does differs by pipeline, and decides the NFE:

- ``true_cfg``  classifier-free guidance: a conditional and an unconditional denoiser evaluation per step when
                the value is > 1 (SD3.x, SDXL, SD 1.x/2.x, PixArt, SANA), 1 evaluation when <= 1;
- ``embedded``  a distilled guidance *input* of the denoiser (FLUX.1-dev's ``guidance_scale``, SANA-Sprint): always
                1 evaluation per step;
- ``none``      the pipeline has no guidance argument (one-step students, FLUX.1-schnell): the axis is not passed.

A pipeline may also have a second, separate true-CFG knob (FLUX's ``true_cfg_scale``), set by the model option of
that name; FLUX runs it only when a negative prompt is given, so one (empty by default) is passed with it.

A pipeline is prompt-conditioned (text-to-image; the class name fills the prompt template) or, with
``condition: class``, class-conditional: its ``__call__`` takes ``class_labels`` (DiT, consistency models) and gets
the dataset's labels, no prompt.

The adapter hooks the denoiser and checks the counted evaluations against this declaration on every call, so a
wrong entry here (or in a suite's ``guidance:`` option) fails the cell instead of mislabelling its NFE.
A pipeline missing from this table is declared in the suite: ``options: {guidance: {kwarg: ..., kind: ...}}``.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal, get_args

from pydantic import Field, model_serializer, model_validator

from bench.options import StrictOptions, keyed_when_set

Kind = Literal["true_cfg", "embedded", "none"]
Condition = Literal["prompt", "class"]
KINDS: tuple[str, ...] = get_args(Kind)
ArgName = Annotated[str, Field(min_length=1)]


class Guidance(StrictOptions):
    """One pipeline's guidance mapping; also the shape of the ``guidance`` model option (strict, unknown keys
    refused). Invariant: ``kwarg`` is None exactly when ``kind`` is "none" (an omitted kwarg means
    ``guidance_scale`` for the other kinds)."""
    kwarg: ArgName | None = None                 # the __call__ argument the cfg axis sets (None for kind "none")
    kind: Kind = "true_cfg"                      # see the module doc
    true_cfg_kwarg: ArgName | None = None        # a separate true-CFG argument (FLUX: true_cfg_scale)
    true_cfg_negative: bool = False              # that knob is only active with a negative prompt (FLUX)
    condition: Condition = "prompt"              # "class": __call__(class_labels=...) from the dataset's labels

    @model_validator(mode="before")
    @classmethod
    def _default_kwarg(cls, value: Any) -> Any:
        if isinstance(value, dict):
            value = dict(value)
            if value.get("kind", "true_cfg") == "none":
                value["kwarg"] = None             # the axis is not passed: whatever was named is dropped
            else:
                value.setdefault("kwarg", "guidance_scale")
        return value

    @model_validator(mode="after")
    def _kwarg_named(self) -> "Guidance":
        if self.kind != "none" and self.kwarg is None:
            raise ValueError("kwarg: name the pipeline argument the cfg axis sets (e.g. guidance_scale)")
        return self

    @model_serializer(mode="wrap")
    def _keyed(self, handler) -> dict[str, Any]:
        """``condition`` is left out at its default, so mappings (and cell keys) from before it existed keep
        their form; validating the dump gives the same mapping back."""
        return keyed_when_set(handler(self), {"condition": "prompt"})

    def as_dict(self) -> dict[str, Any]:
        return self.model_dump()


_TRUE = Guidance(kwarg="guidance_scale", kind="true_cfg")
# keyed by pipeline class name (diffusers 0.42); each entry checked against the pipeline's __call__ source
GUIDANCE: dict[str, Guidance] = {
    "StableDiffusion3Pipeline": _TRUE,                 # do_classifier_free_guidance = guidance_scale > 1
    "FluxPipeline": Guidance(kwarg="guidance_scale", kind="embedded", true_cfg_kwarg="true_cfg_scale",
                             true_cfg_negative=True),                               # distilled guidance input
    "StableDiffusionXLPipeline": _TRUE,                # > 1 (and no time_cond_proj_dim, i.e. not an LCM unet)
    "StableDiffusionPipeline": _TRUE,
    "PixArtAlphaPipeline": _TRUE,
    "PixArtSigmaPipeline": _TRUE,
    "SanaPipeline": _TRUE,
    "SanaSprintPipeline": Guidance(kwarg="guidance_scale", kind="embedded"),
    # LCM distilled UNets take w as an input (time_cond_proj_dim); do_classifier_free_guidance is never set
    "LatentConsistencyModelPipeline": Guidance(kwarg="guidance_scale", kind="embedded"),
    # class-conditional: DiT runs cond + null-class rows when guidance_scale > 1; consistency models have no CFG
    "DiTPipeline": Guidance(kwarg="guidance_scale", kind="true_cfg", condition="class"),
    "ConsistencyModelPipeline": Guidance(kind="none", condition="class"),
}

PAPER_PROMPT = "a photo of a {class_name}"

# The paper's SD3.5-Large and FLUX.1-dev: 1024 px, bf16, FlowMatch Euler, LANCZOS to 256, the CLIP-Score prompt.
# "weights" is the adapter's default weights; every other entry is the default of that model option (the preset
# adapters' Options models are built from these, see diffusers_options.preset_options); suite options override.
PRESETS: dict[str, dict[str, Any]] = {
    "sd3.5-large": {
        "weights": "stabilityai/stable-diffusion-3.5-large", "pipeline": "StableDiffusion3Pipeline",
        "resolution": 1024, "dtype": "bfloat16", "scheduler": "FlowMatchEulerDiscreteScheduler",
        "prompt": PAPER_PROMPT, "eval_size": 256, "resize": "lanczos",
    },
    "flux.1-dev": {
        "weights": "black-forest-labs/FLUX.1-dev", "pipeline": "FluxPipeline",
        "resolution": 1024, "dtype": "bfloat16", "scheduler": "FlowMatchEulerDiscreteScheduler",
        "prompt": PAPER_PROMPT, "eval_size": 256, "resize": "lanczos",
    },
}

# presets whose hub repository is gated (the licence is accepted on the hub page before a download works)
GATED = frozenset({"sd3.5-large", "sd3.5-large-turbo", "flux.1-dev"})

# The field's few-step checkpoints and their teachers (pure data, kept apart: bench/models/fewstep_presets.py)
from bench.models.fewstep_presets import FEW_STEP_PRESETS  # noqa: E402

PRESETS.update(FEW_STEP_PRESETS)
