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
  lora              [{weights, weight_name, adapter_name, scale, fuse, revision}]: LoRAs loaded with
                    load_lora_weights, weighted with set_adapters, fused (fuse_lora) where ``fuse`` (`Lora`)
  components        {name: {class, weights, file, subfolder, config, revision}}: a component replaced before the
                    pipeline is assembled, e.g. a distilled UNet (`Component`; safetensors, strict loading)
  timesteps, sigmas {steps: [...]}: the explicit schedule of each step count, passed to ``__call__``; every list
                    has exactly ``steps`` entries and every swept step count needs one
  trained_steps     the step counts the weights were distilled for; another step count is refused

The composition options (lora, components, timesteps, sigmas, trained_steps) are left out of the validated dict
at their defaults, so cell keys from before they existed do not change.

What needs diffusers itself (is the scheduler a scheduler class, is the backend known) is checked at load.
Invariant (bench.options): ``validated(DiffusersOptions, d)`` is idempotent, so a cell key does not depend on
which defaults a suite spelt out. Torch-free.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import Field, create_model, field_validator, model_serializer, model_validator

from bench.models.diffusers_presets import PRESETS, Guidance
from bench.options import StrictOptions, keyed_when_set

Name = Annotated[str, Field(min_length=1)]
Dtype = Literal["float32", "bfloat16", "float16"]
Resize = Literal["lanczos", "bicubic", "bilinear", "box", "hamming", "nearest"]
Offload = Literal["none", "model", "sequential"]

# __call__ arguments the adapter sets itself; call_kwargs may not override them
RESERVED = {"prompt", "prompt_2", "prompt_3", "num_inference_steps", "generator", "output_type", "height", "width",
            "num_images_per_prompt", "latents", "return_dict", "class_labels", "batch_size", "timesteps", "sigmas"}




class DiffusersError(ValueError):
    """A bad model option or an inconsistent pipeline; the message names the option."""


Ref = Annotated[str, Field(min_length=1)]
Scale = Annotated[float, Field(allow_inf_nan=False)]


class Lora(StrictOptions):
    """One LoRA: ``weights`` is a hub id (``weight_name`` the file in it), ``hf://org/name/file``, a local file or
    folder, or ``$VAR/...``; ``adapter_name`` defaults to lora<i> (its place in the list)."""
    weights: Ref
    weight_name: Name | None = None
    adapter_name: Name | None = None
    scale: Scale = 1.0
    fuse: bool = False
    revision: Name | None = None


class Component(StrictOptions):
    """A pipeline component built before assembly. With ``file`` (a .safetensors file in ``weights``, a hub repo or
    a local folder; or ``weights`` is the file itself when it ends in .safetensors) the class is built from the
    config at ``config`` (default: the base pipeline's own subfolder of that component) and the file loaded with
    strict=True; else ``class.from_pretrained(weights, subfolder=subfolder)``."""
    class_: Name = Field(alias="class")
    weights: Ref
    file: Name | None = None
    subfolder: Name | None = None
    config: Ref | None = None
    revision: Name | None = None

    @field_validator("file")
    @classmethod
    def _safetensors(cls, f: str | None) -> str | None:
        if f is not None and not f.endswith(".safetensors"):
            raise ValueError(f"components load safetensors only, got {f!r} (convert it: safetensors.torch.save_file "
                             f"of the state dict)")
        return f

    @model_serializer(mode="wrap")
    def _by_alias(self, handler) -> dict[str, Any]:
        out = handler(self)
        out["class"] = out.pop("class_", out.get("class"))
        return out


def _step_keys(value: Any) -> Any:
    """``{1: [...]}`` from YAML, or ``{"1": [...]}`` from a stored JSON config: step counts as ints."""
    if isinstance(value, dict):
        out = {}
        for k, v in value.items():
            if isinstance(k, str) and k.strip().isdigit():
                k = int(k)
            out[k] = v
        return out
    return value


# left out of the validated dict while at these defaults (cell keys from before the options existed stay)
_KEYED_WHEN_SET: dict[str, Any] = {"lora": [], "components": {}, "timesteps": {}, "sigmas": {}, "trained_steps": None}


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
    lora: list[Lora] = []
    components: dict[Name, Component] = {}
    timesteps: dict[Annotated[int, Field(ge=1)], list[Annotated[int, Field(ge=0)]]] = {}
    sigmas: dict[Annotated[int, Field(ge=1)], list[Annotated[float, Field(ge=0, allow_inf_nan=False)]]] = {}
    trained_steps: list[Annotated[int, Field(ge=1)]] | None = None

    @field_validator("timesteps", "sigmas", mode="before")
    @classmethod
    def _int_steps(cls, v: Any) -> Any:
        return _step_keys(v)

    @field_validator("timesteps", "sigmas")
    @classmethod
    def _lengths(cls, v: dict[int, list]) -> dict[int, list]:
        for steps, values in v.items():
            if len(values) != steps:
                raise ValueError(f"{steps}: the list for {steps} steps has {len(values)} entries, expected {steps}")
        return v

    @field_validator("lora")
    @classmethod
    def _names(cls, v: list[Lora]) -> list[Lora]:
        names = [x.adapter_name or f"lora{i}" for i, x in enumerate(v)]
        dup = sorted({n for n in names if names.count(n) > 1})
        if dup:
            raise ValueError(f"adapter_name {dup[0]!r} is given to two LoRAs")
        return v

    @model_validator(mode="after")
    def _one_schedule(self) -> "DiffusersOptions":
        both = sorted(set(self.timesteps) & set(self.sigmas))
        if both:
            raise ValueError(f"timesteps and sigmas both give {both[0]} steps; give one schedule per step count")
        return self

    @model_serializer(mode="wrap")
    def _keyed(self, handler) -> dict[str, Any]:
        return keyed_when_set(handler(self), _KEYED_WHEN_SET)

    def schedule(self, steps: int) -> tuple[str, list] | None:
        """("timesteps" | "sigmas", the list) for ``steps`` when explicit schedules are given, else None; a step
        count the schedules do not cover is a `DiffusersError` naming the option."""
        if not self.timesteps and not self.sigmas:
            return None
        for name in ("timesteps", "sigmas"):
            table = getattr(self, name)
            if steps in table:
                return name, list(table[steps])
        given = sorted({*self.timesteps, *self.sigmas})
        raise DiffusersError(f"options.timesteps / options.sigmas: no schedule for {steps} steps (given for {given})")

    def check_steps(self, steps: int) -> None:
        """Refuse a step count the weights were not distilled for, or one without its explicit schedule."""
        if self.trained_steps is not None and steps not in self.trained_steps:
            raise DiffusersError(f"options.trained_steps: these weights are distilled for {self.trained_steps} "
                                 f"steps, the cell asks for {steps}")
        self.schedule(steps)

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
