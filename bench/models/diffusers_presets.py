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

The adapter hooks the denoiser and checks the counted evaluations against this declaration on every call, so a
wrong entry here (or in a suite's ``guidance:`` option) fails the cell instead of mislabelling its NFE.
A pipeline missing from this table is declared in the suite: ``options: {guidance: {kwarg: ..., kind: ...}}``.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

KINDS = ("true_cfg", "embedded", "none")


@dataclass(frozen=True)
class Guidance:
    kwarg: str | None = "guidance_scale"     # the __call__ argument the cfg axis sets (None for kind "none")
    kind: str = "true_cfg"                   # true_cfg | embedded | none (see the module doc)
    true_cfg_kwarg: str | None = None        # a separate true-CFG argument (FLUX: true_cfg_scale)
    true_cfg_negative: bool = False          # that knob is only active with a negative prompt (FLUX)

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def parse(cls, value: Any, where: str) -> "Guidance":
        if not isinstance(value, dict):
            raise ValueError(f"{where}: expected a mapping such as {{kwarg: guidance_scale, kind: true_cfg}}, "
                             f"got {value!r}")
        known = {"kwarg", "kind", "true_cfg_kwarg", "true_cfg_negative"}
        extra = sorted(set(value) - known)
        if extra:
            raise ValueError(f"{where}.{extra[0]}: unknown key (known: {', '.join(sorted(known))})")
        kind = value.get("kind", "true_cfg")
        if kind not in KINDS:
            raise ValueError(f"{where}.kind: expected one of {list(KINDS)}, got {kind!r}")
        kwarg = value.get("kwarg", None if kind == "none" else "guidance_scale")
        if kind != "none" and not (isinstance(kwarg, str) and kwarg):
            raise ValueError(f"{where}.kwarg: the pipeline argument the cfg axis sets, got {kwarg!r}")
        tk = value.get("true_cfg_kwarg")
        if tk is not None and not (isinstance(tk, str) and tk):
            raise ValueError(f"{where}.true_cfg_kwarg: expected an argument name, got {tk!r}")
        neg = value.get("true_cfg_negative", False)
        if not isinstance(neg, bool):
            raise ValueError(f"{where}.true_cfg_negative: expected true or false, got {neg!r}")
        return cls(kwarg=kwarg if kind != "none" else None, kind=kind, true_cfg_kwarg=tk, true_cfg_negative=neg)


_TRUE = Guidance("guidance_scale", "true_cfg")
# keyed by pipeline class name (diffusers 0.42); each entry checked against the pipeline's __call__ source
GUIDANCE: dict[str, Guidance] = {
    "StableDiffusion3Pipeline": _TRUE,                 # do_classifier_free_guidance = guidance_scale > 1
    "FluxPipeline": Guidance("guidance_scale", "embedded", "true_cfg_scale", True),   # distilled guidance input
    "StableDiffusionXLPipeline": _TRUE,                # > 1 (and no time_cond_proj_dim, i.e. not an LCM unet)
    "StableDiffusionPipeline": _TRUE,
    "PixArtAlphaPipeline": _TRUE,
    "PixArtSigmaPipeline": _TRUE,
    "SanaPipeline": _TRUE,
    "SanaSprintPipeline": Guidance("guidance_scale", "embedded"),
}

PAPER_PROMPT = "a photo of a {class_name}"

# The paper's SD3.5-Large and FLUX.1-dev: 1024 px, bf16, FlowMatch Euler, LANCZOS to 256, the CLIP-Score prompt.
# Suite options override any of these.
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
