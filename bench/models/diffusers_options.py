"""The diffusers adapter's model options, as one strict pydantic model, and the preset adapters' variants of it.

Every option is optional; the pipeline may need some (``pipeline`` or ``guidance`` to declare the NFE before the
weights are loaded, ``call_kwargs`` for what its ``__call__`` requires):

  pipeline          diffusers pipeline class name (default: the folder's model_index.json)
  dtype             float32 | bfloat16 | float16: the weights' dtype (the suite's dtype adds autocast on top)
  resolution        int or [height, width] (default: the pipeline's own); validated to [height, width]
  eval_size         the evaluation size images are resized to (default 256; null keeps the native size)
  resize            lanczos | bicubic | bilinear | box | hamming | nearest: the PIL filter of that resize
  prompt            template with {class_name} (default: the dataset's); negative_prompt: passed when given
  scheduler         scheduler class name, built from the pipeline's scheduler config (+ scheduler_config overrides)
  guidance          {kwarg, kind: true_cfg | embedded | none, true_cfg_kwarg, true_cfg_negative}
                    (diffusers_presets.Guidance; default: the table entry of the pipeline class)
  true_cfg_scale    value of the declared separate true-CFG argument (FLUX); > 1 doubles the NFE
  call_kwargs       extra __call__ arguments (e.g. max_sequence_length), never the ones the adapter sets (RESERVED)
  load_kwargs       extra from_pretrained arguments (revision, variant, ...); use_safetensors cannot be turned off
  cpu_offload       none | model | sequential (accelerate; needs a GPU)
  vae_tiling, vae_slicing   true to enable on the pipeline's VAE
  attention_backend a diffusers attention backend name (e.g. native, flash, _native_cudnn, sage, xformers)
  denoiser          the component hooked for NFE (default: transformer, else unet)
  check_nfe         true (default): every call checks counted denoiser rows == declared NFE x batch

What needs diffusers itself (is the scheduler a scheduler class, is the backend known) is checked at load.
Invariant (bench.options): ``validated(DiffusersOptions, d)`` is idempotent, so a cell key does not depend on
which defaults a suite spelt out. Torch-free.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import Field, create_model, field_validator

from bench.models.diffusers_presets import PRESETS, Guidance
from bench.options import StrictOptions

Name = Annotated[str, Field(min_length=1)]
Dtype = Literal["float32", "bfloat16", "float16"]
Resize = Literal["lanczos", "bicubic", "bilinear", "box", "hamming", "nearest"]
Offload = Literal["none", "model", "sequential"]

# __call__ arguments the adapter sets itself; call_kwargs may not override them
RESERVED = {"prompt", "prompt_2", "prompt_3", "num_inference_steps", "generator", "output_type", "height", "width",
            "num_images_per_prompt", "latents", "return_dict"}


class DiffusersOptions(StrictOptions):
    """``adapter: diffusers`` model options (see the module doc)."""
    pipeline: Name | None = None
    dtype: Dtype = "float32"
    resolution: int | list[int] | None = None
    eval_size: Annotated[int, Field(ge=1)] | None = 256
    resize: Resize = "lanczos"
    prompt: Name | None = None
    negative_prompt: Name | None = None
    scheduler: Name | None = None
    scheduler_config: dict[str, Any] = {}
    guidance: Guidance | None = None
    true_cfg_scale: Annotated[float, Field(allow_inf_nan=False)] | None = None
    call_kwargs: dict[str, Any] = {}
    load_kwargs: dict[str, Any] = {}
    cpu_offload: Offload = "none"
    vae_tiling: bool = False
    vae_slicing: bool = False
    attention_backend: Name | None = None
    denoiser: Name | None = None
    check_nfe: bool = True

    @field_validator("resolution")
    @classmethod
    def _size(cls, r: int | list[int] | None) -> list[int] | None:
        if r is None:
            return None
        hw = [r, r] if isinstance(r, int) else r
        if len(hw) != 2 or any(x <= 0 for x in hw):
            raise ValueError(f"expected a size > 0 or [height, width], got {r!r}")
        return list(hw)

    @field_validator("prompt")
    @classmethod
    def _template(cls, p: str | None) -> str | None:
        if p is not None and "{class_name}" not in p:
            raise ValueError(f"the template must contain {{class_name}}, got {p!r}")
        return p

    @field_validator("call_kwargs")
    @classmethod
    def _not_reserved(cls, kw: dict[str, Any]) -> dict[str, Any]:
        clash = sorted(RESERVED & set(kw))
        if clash:
            raise ValueError(f"{clash[0]!r} is set by the adapter (steps, prompts, seeds, resolution come from the "
                             f"suite)")
        return kw

    @field_validator("load_kwargs")
    @classmethod
    def _safetensors(cls, kw: dict[str, Any]) -> dict[str, Any]:
        if kw.get("use_safetensors", True) is not True:
            raise ValueError("use_safetensors: weights load only from safetensors")
        return kw


def preset_options(preset: str, name: str) -> type[DiffusersOptions]:
    """`DiffusersOptions` with a preset's entries of ``PRESETS`` as its defaults (all but ``weights``). The
    defaults go through the same validation as given values (``resolution: 1024`` becomes [1024, 1024]); an entry
    that is not an option fails at import."""
    fields: dict[str, Any] = {}
    for key, value in PRESETS[preset].items():
        if key == "weights":
            continue
        info = DiffusersOptions.model_fields[key]
        ann = Annotated[(info.annotation, *info.metadata)] if info.metadata else info.annotation
        fields[key] = (ann, Field(default=value, validate_default=True))
    model = create_model(name, __base__=DiffusersOptions, __module__=__name__, **fields)
    model.__doc__ = f"``adapter: {preset}`` model options: `DiffusersOptions` with the paper's settings as defaults."
    return model


SD35LargeOptions = preset_options("sd3.5-large", "SD35LargeOptions")
Flux1DevOptions = preset_options("flux.1-dev", "Flux1DevOptions")
