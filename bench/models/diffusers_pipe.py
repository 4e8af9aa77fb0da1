"""Any diffusers text-to-image pipeline as a class-conditional generator, set up by suite options alone.

``adapter: diffusers`` loads ``weights`` (a hub id or a local folder, via `bench.hub.resolve_weights`) with
``DiffusionPipeline.from_pretrained`` (safetensors only) or the class named by ``options.pipeline``.
``adapter: sd3.5-large`` and ``adapter: flux.1-dev`` are the same adapter with the paper's settings as defaults
(bench/models/diffusers_presets.py); suite options override them.

Per cell: the prompt of sample k is ``prompt`` (default: the dataset's template) filled with its class name; the
suite's ``steps`` is ``num_inference_steps``; ``cfg`` goes to the pipeline's guidance argument as declared in
diffusers_presets.GUIDANCE (or in ``options.guidance``); ``solver``, when swept, names a diffusers scheduler class.
Each sample has its own CPU ``torch.Generator`` seeded from bench.noise.sample_seed(seed, sample id), passed to the
pipeline as a list, so sample i depends only on (seed, i), not on the batch. Images are decoded at the pipeline's
native resolution (or ``resolution``), quantised as diffusers does (round(255 x)), then resized with PIL
(``resize``, default LANCZOS) to ``eval_size`` x ``eval_size`` (default 256; null keeps the native size).

Model options (all optional except where a pipeline needs them):
  pipeline          diffusers pipeline class name (default: the folder's model_index.json)
  dtype             float32 | bfloat16 | float16: the weights' dtype (the suite's dtype adds autocast on top)
  resolution        int or [height, width] (default: the pipeline's own)
  eval_size, resize see above; resize in lanczos | bicubic | bilinear | box | hamming | nearest
  prompt            template with {class_name}; negative_prompt: passed when given
  scheduler         scheduler class name, built from the pipeline's scheduler config (+ scheduler_config overrides)
  guidance          {kwarg, kind: true_cfg | embedded | none, true_cfg_kwarg, true_cfg_negative}
  true_cfg_scale    value of the declared separate true-CFG argument (FLUX); > 1 doubles the NFE
  call_kwargs       extra __call__ arguments (e.g. max_sequence_length); load_kwargs: extra from_pretrained ones
  cpu_offload       none | model | sequential (accelerate; needs a GPU)
  vae_tiling, vae_slicing   true to enable on the pipeline's VAE
  attention_backend a diffusers attention backend name (e.g. native, flash, _native_cudnn, sage, xformers)
  denoiser          the component hooked for NFE (default: transformer, else unet)
  check_nfe         true (default): every call checks counted denoiser rows == declared NFE x batch
"""

from __future__ import annotations

import math
import numbers
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image
from torch import nn

from bench import hub, noise, registry
from bench.hub import expand_env, resolve_weights
from bench.models.base import ModelSpec, SamplerSettings
from bench.models.diffusers_presets import GUIDANCE, PRESETS, Guidance
from bench.timing import NFECounter

STREAM = "diffusers/latents"
DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}
RESIZE = {"lanczos": Image.LANCZOS, "bicubic": Image.BICUBIC, "bilinear": Image.BILINEAR, "box": Image.BOX,
          "hamming": Image.HAMMING, "nearest": Image.NEAREST}
OFFLOAD = ("none", "model", "sequential")
DEFAULTS: dict[str, Any] = {
    "pipeline": None, "dtype": "float32", "resolution": None, "eval_size": 256, "resize": "lanczos",
    "prompt": None, "negative_prompt": None, "scheduler": None, "scheduler_config": {}, "guidance": None,
    "true_cfg_scale": None, "call_kwargs": {}, "load_kwargs": {}, "cpu_offload": "none", "vae_tiling": False,
    "vae_slicing": False, "attention_backend": None, "denoiser": None, "check_nfe": True,
}
# __call__ arguments the adapter sets itself; call_kwargs may not override them
RESERVED = {"prompt", "prompt_2", "prompt_3", "num_inference_steps", "generator", "output_type", "height", "width",
            "num_images_per_prompt", "latents", "return_dict"}


class DiffusersError(ValueError):
    """A bad model option or an inconsistent pipeline; the message names the option."""


def _is_number(v: Any) -> bool:
    return isinstance(v, numbers.Real) and not isinstance(v, bool) and math.isfinite(v)


class DiffusersPipeline:
    family = "diffusers"
    version = "diffusers-1"
    solvers = None        # the solver axis, when swept, names a diffusers scheduler class
    sweeps = True
    preset: str | None = None
    guidance = ("cfg -> the pipeline's guidance argument as declared in bench/models/diffusers_presets.py or "
                "options.guidance: true CFG doubles the NFE when > 1, embedded guidance does not")

    def __init__(self) -> None:
        self.pipe = None
        self.opts: dict[str, Any] = {}
        self.gmap: Guidance | None = None          # the declared guidance mapping in use (after load)
        self.device = torch.device("cpu")
        self.class_names: list[str] | None = None
        self.template: str | None = None
        self._schedulers: dict[str, Any] = {}
        self._base_config: Any = None
        self._default_scheduler = ""
        self._loaded = False
        self.meta: dict[str, Any] = {}

    # ------------------------------------------------------------------ options
    @classmethod
    def options(cls, spec_options: dict[str, Any]) -> dict[str, Any]:
        """Adapter defaults < preset < suite options, validated; a bad one is a DiffusersError naming it."""
        preset = {k: v for k, v in PRESETS.get(cls.preset or "", {}).items() if k != "weights"}
        given = dict(spec_options or {})
        unknown = sorted(set(given) - set(DEFAULTS))
        if unknown:
            raise DiffusersError(f"options.{unknown[0]}: unknown option for adapter "
                                 f"{cls.preset or 'diffusers'!r} ({registry.hint(unknown[0], list(DEFAULTS))})")
        o = {**DEFAULTS, **preset, **given}
        if o["dtype"] not in DTYPES:
            raise DiffusersError(f"options.dtype: expected one of {list(DTYPES)}, got {o['dtype']!r}")
        if o["resize"] not in RESIZE:
            raise DiffusersError(f"options.resize: expected one of {list(RESIZE)}, got {o['resize']!r}")
        if o["cpu_offload"] not in OFFLOAD:
            raise DiffusersError(f"options.cpu_offload: expected one of {list(OFFLOAD)}, got {o['cpu_offload']!r}")
        r = o["resolution"]
        if r is not None:
            hw = [r, r] if isinstance(r, int) and not isinstance(r, bool) else r
            if not (isinstance(hw, list) and len(hw) == 2 and all(isinstance(x, int) and not isinstance(x, bool)
                                                                  and x > 0 for x in hw)):
                raise DiffusersError(f"options.resolution: expected a size > 0 or [height, width], got {r!r}")
            o["resolution"] = hw
        e = o["eval_size"]
        if e is not None and (not isinstance(e, int) or isinstance(e, bool) or e < 1):
            raise DiffusersError(f"options.eval_size: expected a size >= 1 or null (keep the native size), got {e!r}")
        for key in ("call_kwargs", "load_kwargs", "scheduler_config"):
            if not isinstance(o[key], dict):
                raise DiffusersError(f"options.{key}: expected a mapping, got {o[key]!r}")
        clash = sorted(RESERVED & set(o["call_kwargs"]))
        if clash:
            raise DiffusersError(f"options.call_kwargs.{clash[0]}: set by the adapter (steps, prompts, seeds, "
                                 f"resolution come from the suite)")
        if o["load_kwargs"].get("use_safetensors", True) is not True:
            raise DiffusersError("options.load_kwargs.use_safetensors: weights load only from safetensors")
        for key in ("vae_tiling", "vae_slicing", "check_nfe"):
            if not isinstance(o[key], bool):
                raise DiffusersError(f"options.{key}: expected true or false, got {o[key]!r}")
        for key in ("pipeline", "scheduler", "attention_backend", "denoiser", "prompt", "negative_prompt"):
            if o[key] is not None and not (isinstance(o[key], str) and o[key]):
                raise DiffusersError(f"options.{key}: expected a non-empty string, got {o[key]!r}")
        if o["prompt"] is not None and "{class_name}" not in o["prompt"]:
            raise DiffusersError(f"options.prompt: the template must contain {{class_name}}, got {o['prompt']!r}")
        if o["true_cfg_scale"] is not None and not _is_number(o["true_cfg_scale"]):
            raise DiffusersError(f"options.true_cfg_scale: expected a number, got {o['true_cfg_scale']!r}")
        if o["guidance"] is not None:
            try:
                Guidance.parse(o["guidance"], "options.guidance")
            except ValueError as err:
                raise DiffusersError(str(err)) from None
        return o

    @classmethod
    def check_options(cls, spec_options: dict[str, Any]) -> dict[str, Any]:
        return cls.options(spec_options)

    def _weights_ref(self, spec: ModelSpec) -> str:
        ref = spec.weights or PRESETS.get(self.preset or "", {}).get("weights")
        if not ref:
            raise DiffusersError("weights: give the pipeline's Hugging Face id or local folder")
        return str(ref)

    def weights_id(self, spec: ModelSpec) -> str:
        """A local folder's content hash; a hub id as given (pin ``load_kwargs.revision`` for reproducibility)."""
        from bench.provenance import sha256_path
        ref = self._weights_ref(spec)
        local = Path(expand_env(ref, f"model {spec.id!r} weights")).expanduser()
        if local.exists():
            return "sha256:" + sha256_path(local)
        rev = self.options(spec.options)["load_kwargs"].get("revision")
        return f"ref:{ref}" + (f"@{rev}" if rev else "")

    # ------------------------------------------------------------------ loading
    def load(self, spec: ModelSpec, device: torch.device) -> None:
        import diffusers

        self._loaded = False
        o = self.opts = self.options(spec.options)
        self.device = torch.device(device)
        if o["cpu_offload"] != "none" and self.device.type == "cpu":
            raise DiffusersError(f"options.cpu_offload: {o['cpu_offload']!r} offload needs an accelerator device, "
                                 f"the suite runs on cpu")
        if o["scheduler"]:
            _class(o["scheduler"], "SchedulerMixin", "options.scheduler")
        if o["attention_backend"]:
            from diffusers.models.attention_dispatch import AttentionBackendName
            known = [b.value for b in AttentionBackendName]
            if o["attention_backend"].lower() not in known:
                raise DiffusersError(f"options.attention_backend: unknown backend {o['attention_backend']!r} "
                                     f"({registry.hint(o['attention_backend'], known)})")
        ref = self._weights_ref(spec)
        _prefetch(ref, o["load_kwargs"].get("revision"), o["load_kwargs"].get("variant"))
        path = resolve_weights(ref, what=f"model {spec.id!r} (diffusers pipeline)",
                               revision=o["load_kwargs"].get("revision"))
        cls = _class(o["pipeline"], "DiffusionPipeline", "options.pipeline") if o["pipeline"] else \
            diffusers.DiffusionPipeline
        load_kwargs = {k: v for k, v in o["load_kwargs"].items() if k != "revision"}
        with warnings.catch_warnings():     # torch_dtype: understood by every diffusers 0.x (renamed dtype later)
            warnings.filterwarnings("ignore", message=".*torch_dtype.*", category=FutureWarning)
            pipe = cls.from_pretrained(str(path), torch_dtype=DTYPES[o["dtype"]], use_safetensors=True, **load_kwargs)
        self.pipe = pipe
        name = type(pipe).__name__
        self.gmap = self._declared(o, name)
        self._denoiser()      # fails early when there is none
        if o["true_cfg_scale"] is not None and not self.gmap.true_cfg_kwarg:
            raise DiffusersError(f"options.true_cfg_scale: {name} declares no separate true-CFG argument "
                                 f"(guidance.true_cfg_kwarg)")
        self._schedulers, self._base_config = {}, pipe.scheduler.config
        if o["scheduler"]:
            pipe.scheduler = self._scheduler(o["scheduler"])
        self._default_scheduler = type(pipe.scheduler).__name__
        self._schedulers = {self._default_scheduler: pipe.scheduler}
        self._place(pipe)
        self.meta = self.describe_loaded(ref)
        self._loaded = True

    def _place(self, pipe) -> None:
        o = self.opts
        if o["cpu_offload"] != "none":
            if o["cpu_offload"] == "model":
                pipe.enable_model_cpu_offload(device=self.device)
            else:
                pipe.enable_sequential_cpu_offload(device=self.device)
        else:
            pipe.to(self.device)
        vae = getattr(pipe, "vae", None)
        for key, method in (("vae_tiling", "enable_tiling"), ("vae_slicing", "enable_slicing")):
            if o[key]:
                if vae is None or not hasattr(vae, method):
                    raise DiffusersError(f"options.{key}: the pipeline's VAE ({type(vae).__name__}) does not "
                                         f"support it")
                try:
                    getattr(vae, method)()
                except NotImplementedError as err:
                    raise DiffusersError(f"options.{key}: {err}") from None
        if o["attention_backend"]:
            try:
                self._denoiser().set_attention_backend(o["attention_backend"])
            except (ValueError, RuntimeError, ImportError) as err:
                raise DiffusersError(f"options.attention_backend: {err}") from None
        pipe.set_progress_bar_config(disable=True)

    def _scheduler(self, name: str):
        if name in self._schedulers:
            return self._schedulers[name]
        cls = _class(name, "SchedulerMixin", "scheduler")
        sched = cls.from_config(self._base_config, **self.opts["scheduler_config"])   # the pipeline's own config
        self._schedulers[name] = sched
        return sched

    def _require(self):
        if self.pipe is None:
            raise RuntimeError("DiffusersPipeline: call load() before generating")
        return self.pipe

    def _denoiser(self) -> nn.Module:
        pipe = self._require()
        names = [self.opts["denoiser"]] if self.opts.get("denoiser") else ["transformer", "unet"]
        for n in names:
            m = getattr(pipe, n, None)
            if isinstance(m, nn.Module):
                return m
        raise DiffusersError(f"options.denoiser: {type(pipe).__name__} has no module {' or '.join(names)} to hook "
                             f"for NFE (components: {sorted(pipe.components)})")

    def describe_loaded(self, ref: str) -> dict[str, Any]:
        pipe = self._require()
        return {"pipeline": type(pipe).__name__, "weights": ref, "dtype": self.opts["dtype"],
                "resolution": self.opts["resolution"] or "native", "eval_size": self.opts["eval_size"],
                "resize": self.opts["resize"], "scheduler": type(pipe.scheduler).__name__,
                "guidance": self.gmap.as_dict(), "cpu_offload": self.opts["cpu_offload"],
                "attention_backend": self.opts["attention_backend"], "diffusers": _version()}

    def describe(self) -> dict[str, Any]:
        """The resolved generation settings (pipeline, resize filter, guidance mapping, ...) for provenance."""
        return dict(self.meta)

    # ------------------------------------------------------------------ protocol
    def bind_dataset(self, dataset) -> None:
        self.class_names = list(dataset.class_names)
        self.template = dataset.prompt_template

    def networks(self) -> list[nn.Module]:
        return [self._denoiser()]

    def _check(self, s: SamplerSettings) -> None:
        if isinstance(s.steps, bool) or not isinstance(s.steps, numbers.Integral) or s.steps < 1:
            raise ValueError(f"diffusers: steps must be an integer >= 1, got {s.steps!r}")
        if not _is_number(s.cfg) or s.cfg < 0:
            raise ValueError(f"diffusers: cfg must be a finite number >= 0, got {s.cfg!r}")

    def nfe_per_image(self, s: SamplerSettings) -> int:
        """steps x (2 for true CFG > 1) x (2 for a separate true CFG > 1); a 2nd-order scheduler (Heun, KDPM2)
        evaluates 2N - 1 times. Before load() (``bench validate``) the mapping comes from the options or preset and the
        scheduler from ``solver`` / ``options.scheduler`` (else first order, like every default diffusers sampler)."""
        self._check(s)
        if self._loaded:
            o, g = self.opts, self.gmap
            sched = type(self._scheduler(s.solver or self._default_scheduler))
        else:
            o = self.options(s.options)
            g = self._declared(o, None)
            name = s.solver or o["scheduler"]
            sched = _class(name, "SchedulerMixin", "solver" if s.solver else "options.scheduler") if name else None
        order = int(getattr(sched, "order", 1))
        evals = s.steps if order == 1 else order * s.steps - (order - 1)
        per = 2 if (g.kind == "true_cfg" and float(s.cfg) > 1.0) else 1
        if g.true_cfg_kwarg and o["true_cfg_scale"] is not None and float(o["true_cfg_scale"]) > 1.0:
            per *= 2
        return evals * per

    @staticmethod
    def _declared(o: dict[str, Any], loaded_class: str | None) -> Guidance:
        """The guidance mapping: options.guidance, else the table entry of the pipeline class."""
        if o["guidance"] is not None:
            return Guidance.parse(o["guidance"], "options.guidance")
        name = loaded_class or o["pipeline"]
        if name in GUIDANCE:
            return GUIDANCE[name]
        if name is None:
            raise DiffusersError("options.pipeline: name the pipeline class (or declare options.guidance) so the NFE "
                                 "can be declared before the weights are loaded")
        raise DiffusersError(f"options.guidance: no declared guidance mapping for {name}; declare it, e.g. "
                             f"guidance: {{kwarg: guidance_scale, kind: true_cfg}} (true CFG, 2 NFE when > 1), "
                             f"kind: embedded (1 NFE) or kind: none")

    def _prompts(self, labels: torch.Tensor) -> list[str]:
        if self.class_names is None:
            raise RuntimeError("DiffusersPipeline: no class names (the runner binds the dataset before generating)")
        template = self.opts["prompt"] or self.template or "{class_name}"
        k = len(self.class_names)
        out = []
        for y in labels.tolist():
            if not 0 <= int(y) < k:
                raise ValueError(f"label {y} outside 0..{k - 1}")
            out.append(template.format(class_name=self.class_names[int(y)]))
        return out

    def generate(self, labels: torch.Tensor, sample_ids: torch.Tensor, s: SamplerSettings) -> torch.Tensor:
        self._check(s)
        pipe, o, g = self._require(), self.opts, self.gmap
        labels = torch.as_tensor(labels).reshape(-1).cpu()
        ids = torch.as_tensor(sample_ids).reshape(-1).cpu()
        if len(labels) != len(ids):
            raise ValueError(f"{len(labels)} labels but {len(ids)} sample ids")
        pipe.scheduler = self._scheduler(s.solver or self._default_scheduler)
        kwargs: dict[str, Any] = dict(o["call_kwargs"])
        kwargs.update(prompt=self._prompts(labels), num_inference_steps=int(s.steps), output_type="pt",
                      generator=[torch.Generator("cpu").manual_seed(noise.sample_seed(s.seed, i, STREAM))
                                 for i in ids.tolist()])
        if o["resolution"]:
            kwargs["height"], kwargs["width"] = o["resolution"]
        if g.kind != "none":
            kwargs[g.kwarg] = float(s.cfg)
        if o["negative_prompt"] is not None:
            kwargs["negative_prompt"] = [o["negative_prompt"]] * len(ids)
        if g.true_cfg_kwarg and o["true_cfg_scale"] is not None:
            kwargs[g.true_cfg_kwarg] = float(o["true_cfg_scale"])
            if g.true_cfg_negative and "negative_prompt" not in kwargs:
                kwargs["negative_prompt"] = [""] * len(ids)
        counter = NFECounter()      # the runner's own counter, on the same module
        with counter.watch([self._denoiser()]), torch.inference_mode():
            out = pipe(**kwargs)
        if o["check_nfe"]:
            declared = self.nfe_per_image(s) * len(ids)
            if counter.rows != declared:
                raise DiffusersError(f"NFE check: {type(pipe).__name__} ran its denoiser on {counter.rows} rows for "
                                     f"{len(ids)} images, the declared mapping {g.as_dict()} gives {declared}; fix "
                                     f"options.guidance (or set check_nfe: false)")
        images = out.images if hasattr(out, "images") else out[0]
        return self._to_uint8(images)

    def _to_uint8(self, images: Any) -> torch.Tensor:
        """Float [0, 1] NCHW -> uint8 (round(255 x), as diffusers' PIL output) -> PIL resize to eval_size, NHWC."""
        x = torch.as_tensor(images).detach().float().cpu()
        if x.dim() != 4 or x.shape[1] not in (1, 3):
            raise DiffusersError(f"pipeline returned images of shape {tuple(x.shape)}, expected (N, 3, H, W)")
        x = (x.clamp(0, 1) * 255).round().to(torch.uint8).permute(0, 2, 3, 1).contiguous()
        if x.shape[-1] == 1:
            x = x.expand(-1, -1, -1, 3).contiguous()
        size = self.opts["eval_size"]
        if size is None or tuple(x.shape[1:3]) == (size, size):
            return x
        resample = RESIZE[self.opts["resize"]]
        out = [np.asarray(Image.fromarray(im.numpy()).resize((size, size), resample=resample)) for im in x]
        return torch.from_numpy(np.stack(out))


class SD35Large(DiffusersPipeline):
    """The paper's SD3.5-Large: stabilityai/stable-diffusion-3.5-large, 1024 px, bf16, FlowMatch Euler, true CFG."""
    preset = "sd3.5-large"
    guidance = "cfg -> guidance_scale, true CFG: 2 NFE per step when > 1, 1 when <= 1"


class Flux1Dev(DiffusersPipeline):
    """The paper's FLUX.1-dev: black-forest-labs/FLUX.1-dev, 1024 px, bf16, embedded guidance (1 NFE)."""
    preset = "flux.1-dev"
    guidance = ("cfg -> guidance_scale, FLUX.1-dev's distilled guidance embedding: 1 NFE per step for every value; "
                "options.true_cfg_scale > 1 adds true CFG with an empty negative prompt (2 NFE per step)")


def _prefetch(ref: str, revision: str | None, variant: str | None) -> None:
    """For a hub id that is not cached yet: download only the files the pipeline loads (diffusers' own filter, not
    the repository's single-file checkpoints), so that resolve_weights then finds the snapshot in the cache. Any
    failure is left to resolve_weights, which reports it (offline, gated, missing) in the project's one message."""
    if Path(ref).expanduser().exists() or "$" in ref or hub._offline():
        return
    parsed = hub.parse_hub(ref)
    if parsed is None or parsed[1] is not None:
        return
    import huggingface_hub

    try:
        huggingface_hub.snapshot_download(parsed[0], revision=revision, local_files_only=True)
        return
    except Exception:   # noqa: BLE001 - not cached
        pass
    try:
        import diffusers
        diffusers.DiffusionPipeline.download(parsed[0], revision=revision, variant=variant, use_safetensors=True)
    except Exception:   # noqa: BLE001 - reported by resolve_weights
        pass


def _class(name: str, base: str, where: str) -> type:
    """The diffusers class ``name``, which must subclass diffusers.<base>; else a DiffusersError naming ``where``."""
    import diffusers

    parent = getattr(diffusers, base)
    try:
        cls = getattr(diffusers, name, None)
    except Exception:   # noqa: BLE001 - diffusers' lazy import of a class whose backend is missing
        cls = None
    if isinstance(cls, type) and issubclass(cls, parent):
        return cls
    suffix = "Pipeline" if base == "DiffusionPipeline" else "Scheduler"
    known = [n for n in dir(diffusers) if n.endswith(suffix)]
    raise DiffusersError(f"{where}: {name!r} is not a diffusers {suffix.lower()} class ({registry.hint(name, known)})")


def _version() -> str | None:
    try:
        import diffusers
        return diffusers.__version__
    except ImportError:
        return None
