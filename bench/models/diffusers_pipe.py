"""Any diffusers text-to-image or class-conditional pipeline as a class-conditional generator, set up by suite
options alone.

``adapter: diffusers`` loads ``weights`` (a hub id or a local folder, via `bench.hub.resolve_weights`) with
``DiffusionPipeline.from_pretrained`` (safetensors only) or the class named by ``options.pipeline``
(bench/models/diffusers_load.py). ``adapter: sd3.5-large`` and ``adapter: flux.1-dev`` are the same adapter with
the paper's settings as option defaults (diffusers_presets.PRESETS); suite options override them. The options
themselves, and what each means, are the `DiffusersOptions` model (bench/models/diffusers_options.py).

Per cell: the prompt of sample k is ``prompt`` (default: the dataset's template) filled with its class name, or,
for a class-conditional pipeline (``guidance.condition: class``: DiT, consistency models), its label is passed as
``class_labels`` (``batch_size`` too where the call takes it); the suite's ``steps`` is ``num_inference_steps``,
and an explicit schedule for that step count (``timesteps`` / ``sigmas``) goes to the call's argument of that name
(a consistency model gets ``num_inference_steps=None`` with it, as its documentation calls it); ``cfg`` goes to
the pipeline's guidance argument as declared in diffusers_presets.GUIDANCE (or in ``options.guidance``);
``solver``, when swept, names a diffusers scheduler class.
Each sample has its own CPU ``torch.Generator`` seeded from bench.noise.sample_seed(seed, sample id), passed to the
pipeline as a list, so sample i depends only on (seed, i), not on the batch. Images are decoded at the pipeline's
native resolution (or ``resolution``), quantised as diffusers does (round(255 x)), then resized with PIL
(``resize``, default LANCZOS) to ``eval_size`` x ``eval_size`` (default 256; null keeps the native size).

NFE: declared from the guidance mapping and the scheduler's order, before load too (``bench validate``), and
checked against the denoiser's counted rows on every call (``check_nfe``). Where the mapping comes from the table
(not declared in options), the loaded denoiser refines it: a UNet with ``time_cond_proj_dim`` (LCM-distilled,
guidance as an input) makes true CFG embedded, and a FLUX transformer without ``guidance_embeds`` (FLUX.1-schnell)
makes embedded none. Replacement ``components`` and ``lora`` files (bench/models/diffusers_compose.py) are part of
the weights identity and of the provenance.
"""

from __future__ import annotations

import inspect
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import torch
from PIL import Image
from torch import nn

from bench import noise
from bench.data.base import prompts_for
from bench.hub import expand_env
from bench.models.base import Generator, ModelSpec, SamplerSettings
from bench.models.checkpoint import check_settings
from bench.models.diffusers_compose import compose_identity
from bench.models.diffusers_compose import requirements as compose_requirements
from bench.models.diffusers_load import (
    DiffusersError,
    check_loadable,
    diffusers_class,
    diffusers_version,
    find_denoiser,
    load_pipeline,
    place,
)
from bench.models.diffusers_options import DiffusersOptions, Flux1DevOptions, SD35LargeOptions
from bench.models.diffusers_presets import GATED, GUIDANCE, PRESETS, Guidance
from bench.timing import NFECounter

__all__ = ["DiffusersError", "DiffusersPipeline", "Flux1Dev", "SD35Large"]

STREAM = "diffusers/latents"
RESIZE = {"lanczos": Image.LANCZOS, "bicubic": Image.BICUBIC, "bilinear": Image.BILINEAR, "box": Image.BOX,
          "hamming": Image.HAMMING, "nearest": Image.NEAREST}


class DiffusersPipeline(Generator):
    family = "diffusers"
    version = "diffusers-1"
    conditions = frozenset({"class", "caption"})
    Options = DiffusersOptions
    solvers = None        # the solver axis, when swept, names a diffusers scheduler class
    sweeps = True
    preset: ClassVar[str | None] = None          # the PRESETS entry giving the default weights
    guidance = ("cfg -> the pipeline's guidance argument as declared in bench/models/diffusers_presets.py or "
                "options.guidance: true CFG doubles the NFE when > 1, embedded guidance does not")

    def __init__(self) -> None:
        self.pipe = None
        self.opts: DiffusersOptions | None = None
        self.gmap: Guidance | None = None          # the declared guidance mapping in use (after load)
        self.device = torch.device("cpu")
        self.class_names: list[str] | None = None
        self.caption_set = None                     # the bound dataset when it is a caption set
        self.template: str | None = None
        self._schedulers: dict[str, Any] = {}
        self._base_config: Any = None
        self._default_scheduler = ""
        self._loaded = False
        self.meta: dict[str, Any] = {}
        self.num_classes: int | None = None        # a class-conditional denoiser's class count, when it says
        self._params: frozenset[str] = frozenset()  # the loaded pipeline's __call__ arguments

    # ------------------------------------------------------------------ weights
    def _weights_ref(self, spec: ModelSpec) -> str:
        ref = spec.weights or PRESETS.get(self.preset or "", {}).get("weights")
        if not ref:
            raise DiffusersError("weights: give the pipeline's Hugging Face id or local folder")
        return str(ref)

    def weights_id(self, spec: ModelSpec) -> str:
        """A local folder's content hash; a hub id as given (pin ``load_kwargs.revision`` for reproducibility).
        With ``lora`` or ``components``, the hash of the base's identity together with theirs (same rule: local
        files by content, hub files by reference)."""
        from bench.cell import canonical_json
        from bench.provenance import sha256_path
        ref = self._weights_ref(spec)
        o = self.parse_options(spec.options)
        local = Path(expand_env(ref, f"model {spec.id!r} weights")).expanduser()
        if local.exists():
            base = "sha256:" + sha256_path(local)
        else:
            rev = o.load_kwargs.get("revision")
            base = f"ref:{ref}" + (f"@{rev}" if rev else "")
        extra = compose_identity(o, spec.id)
        if not extra:
            return base
        import hashlib
        return "sha256:" + hashlib.sha256(canonical_json({"pipeline": base, **extra}).encode()).hexdigest()

    def requirements(self, spec: ModelSpec) -> list:
        """The pipeline folder or hub id (at ``load_kwargs.revision``), diffusers and transformers."""
        from bench.preflight import package, weights
        o = self.parse_options(spec.options)
        rev = o.load_kwargs.get("revision")
        get = "accept the model's licence on its hub page first (a gated repository)" if self.preset in GATED else ""
        return [weights(self._weights_ref(spec), "diffusers pipeline", revision=rev, get=get),
                *compose_requirements(o),
                package("diffusers", "diffusers", "hf"), package("transformers", "transformers", "hf")]

    # ------------------------------------------------------------------ loading
    def load(self, spec: ModelSpec, device: torch.device) -> None:
        self._loaded = False
        o = self.opts = self.parse_options(spec.options)
        self.device = torch.device(device)
        check_loadable(o, self.device)
        ref = self._weights_ref(spec)
        pipe, loras = load_pipeline(ref, spec.id, o)
        self.pipe = pipe
        name = type(pipe).__name__
        self._params = frozenset(inspect.signature(pipe.__call__).parameters)
        self.gmap = self._refined(o, self._declared(o, name), self._denoiser())
        self._check_call(name)
        if o.true_cfg_scale is not None and not self.gmap.true_cfg_kwarg:
            raise DiffusersError(f"options.true_cfg_scale: {name} declares no separate true-CFG argument "
                                 f"(guidance.true_cfg_kwarg)")
        self._schedulers, self._base_config = {}, pipe.scheduler.config
        if o.scheduler:
            pipe.scheduler = self._scheduler(o.scheduler)
        self._default_scheduler = type(pipe.scheduler).__name__
        self._schedulers = {self._default_scheduler: pipe.scheduler}
        place(pipe, o, self.device)
        self.meta = self.describe_loaded(ref)
        if loras:
            self.meta["lora"] = loras
        if o.components:
            self.meta["components"] = {n: {"class": c.class_, "weights": c.weights, "file": c.file}
                                       for n, c in sorted(o.components.items())}
        self._loaded = True

    def _scheduler(self, name: str):
        if name in self._schedulers:
            return self._schedulers[name]
        cls = diffusers_class(name, "SchedulerMixin", "scheduler")
        sched = cls.from_config(self._base_config, **self.opts.scheduler_config)   # the pipeline's own config
        self._schedulers[name] = sched
        return sched

    def _require(self):
        if self.pipe is None:
            raise RuntimeError("DiffusersPipeline: call load() before generating")
        return self.pipe

    def _denoiser(self) -> nn.Module:
        return find_denoiser(self._require(), self.opts.denoiser)

    def describe_loaded(self, ref: str) -> dict[str, Any]:
        pipe, o = self._require(), self.opts
        return {"pipeline": type(pipe).__name__, "weights": ref, "dtype": o.dtype,
                "resolution": o.resolution or "native", "eval_size": o.eval_size,
                "resize": o.resize, "scheduler": type(pipe.scheduler).__name__,
                "guidance": self.gmap.as_dict(), "cpu_offload": o.cpu_offload,
                "attention_backend": o.attention_backend, "diffusers": diffusers_version()}

    def describe(self) -> dict[str, Any]:
        """The resolved generation settings (pipeline, resize filter, guidance mapping, ...) for provenance."""
        return dict(self.meta)

    # ------------------------------------------------------------------ the contract
    def bind_dataset(self, dataset) -> None:
        self.class_names = list(dataset.class_names)
        self.template = dataset.prompt_template
        self.caption_set = dataset if getattr(dataset, "conditioning", "class") == "caption" else None

    def networks(self) -> list[nn.Module]:
        return [self._denoiser()]

    def _check(self, s: SamplerSettings) -> None:
        check_settings("diffusers", s, None)          # the solver is a scheduler class name, checked when built
        (self.opts if self._loaded else self.parse_options(s.options)).check_steps(int(s.steps))

    @classmethod
    def check_steps(cls, options: dict[str, Any], steps: int) -> str | None:
        """``trained_steps`` and the explicit schedules (``timesteps`` / ``sigmas``) must cover ``steps``."""
        try:
            cls.parse_options(options).check_steps(int(steps))
        except DiffusersError as err:
            return str(err)
        return None

    @classmethod
    def check_conditioning(cls, options: dict[str, Any], conditioning: str) -> str | None:
        """A text-to-image pipeline takes a class set (class name through the template) or a caption set (each
        sample's caption); a class-conditional one (``guidance.condition: class``: DiT, consistency models) only a
        class set. The mapping is the declared one or the table's entry for ``options.pipeline`` (unknown before
        loading: accepted here, checked by the pipeline's ``__call__`` when it runs)."""
        if conditioning != "caption":
            return None
        try:
            g = cls._declared(cls.parse_options(options), None)
        except DiffusersError:
            return None
        if g.condition == "class":
            return ("a class-conditional diffusers pipeline (guidance.condition: class) cannot be conditioned on "
                    "captions; use a text-to-image pipeline on this caption set")
        return None

    def _check_call(self, name: str) -> None:
        """What the loaded pipeline's ``__call__`` must take for the options given."""
        o, g, params = self.opts, self.gmap, self._params
        if g.condition == "class":
            if "class_labels" not in params:
                raise DiffusersError(f"options.guidance.condition: {name}.__call__ takes no class_labels; a "
                                     f"text-to-image pipeline is condition: prompt")
            cfg = self._denoiser().config
            n = getattr(cfg, "num_embeds_ada_norm", None) or getattr(cfg, "num_class_embeds", None)
            self.num_classes = int(n) if n else None
        elif "prompt" not in params:
            hint = " (it takes class_labels: declare guidance.condition: class)" if "class_labels" in params else ""
            raise DiffusersError(f"options.guidance: {name}.__call__ takes no prompt{hint}")
        for key in ("timesteps", "sigmas"):
            if getattr(o, key) and key not in params:
                raise DiffusersError(f"options.{key}: {name}.__call__ takes no {key}")
        if o.resolution and not {"height", "width"} <= params:
            raise DiffusersError(f"options.resolution: {name}.__call__ takes no height / width (its size is the "
                                 f"model's own); leave resolution unset")

    @staticmethod
    def _refined(o: DiffusersOptions, g: Guidance, denoiser: nn.Module) -> Guidance:
        """The table's mapping adjusted to the loaded denoiser (see the module doc); a declared one is kept."""
        if o.guidance is not None:
            return g
        cfg = getattr(denoiser, "config", None)
        if g.kind == "true_cfg" and getattr(cfg, "time_cond_proj_dim", None) is not None:
            return g.model_copy(update={"kind": "embedded"})
        if g.kind == "embedded" and getattr(cfg, "guidance_embeds", None) is False:
            return g.model_copy(update={"kind": "none", "kwarg": None})
        return g

    def nfe_per_image(self, s: SamplerSettings) -> int:
        """steps x (2 for true CFG > 1) x (2 for a separate true CFG > 1); a 2nd-order scheduler (Heun, KDPM2)
        evaluates 2N - 1 times. Before load() (``bench validate``) the options come from ``s.options`` (the cell's
        model options), the mapping from them or the preset, and the scheduler from ``solver`` /
        ``options.scheduler`` (else first order, like every default diffusers sampler)."""
        self._check(s)
        if self._loaded:
            o, g = self.opts, self.gmap
            sched = type(self._scheduler(s.solver or self._default_scheduler))
        else:
            o = self.parse_options(s.options)
            g = self._declared(o, None)
            name = s.solver or o.scheduler
            sched = diffusers_class(name, "SchedulerMixin", "solver" if s.solver else "options.scheduler") \
                if name else None
        order = int(getattr(sched, "order", 1))
        evals = s.steps if order == 1 else order * s.steps - (order - 1)
        per = 2 if (g.kind == "true_cfg" and float(s.cfg) > 1.0) else 1
        if g.true_cfg_kwarg and o.true_cfg_scale is not None and float(o.true_cfg_scale) > 1.0:
            per *= 2
        return evals * per

    @staticmethod
    def _declared(o: DiffusersOptions, loaded_class: str | None) -> Guidance:
        """The guidance mapping: options.guidance, else the table entry of the pipeline class."""
        if o.guidance is not None:
            return o.guidance
        name = loaded_class or o.pipeline
        if name in GUIDANCE:
            return GUIDANCE[name]
        if name is None:
            raise DiffusersError("options.pipeline: name the pipeline class (or declare options.guidance) so the NFE "
                                 "can be declared before the weights are loaded")
        raise DiffusersError(f"options.guidance: no declared guidance mapping for {name}; declare it, e.g. "
                             f"guidance: {{kwarg: guidance_scale, kind: true_cfg}} (true CFG, 2 NFE when > 1), "
                             f"kind: embedded (1 NFE) or kind: none")

    def _class_labels(self, labels: torch.Tensor) -> list[int]:
        out = [int(y) for y in labels.tolist()]
        k = self.num_classes
        bad = [y for y in out if y < 0 or (k is not None and y >= k)]
        if bad:
            raise DiffusersError(f"label {bad[0]} is outside the model's classes 0..{(k or 1) - 1} "
                                 f"({type(self.pipe).__name__}); the dataset's labels must be the model's class ids")
        return out

    def _prompts(self, labels: torch.Tensor, ids: torch.Tensor) -> list[str]:
        """Sample i's prompt: caption i on a caption set (as given, `options.prompt` is not applied), else its
        label's class name through ``options.prompt`` or the dataset's template."""
        if self.class_names is None:
            raise RuntimeError("DiffusersPipeline: no class names (the runner binds the dataset before generating)")
        if self.caption_set is not None:
            return prompts_for(self.caption_set, labels, ids)
        template = self.opts.prompt or self.template or "{class_name}"
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
        kwargs: dict[str, Any] = dict(o.call_kwargs)
        kwargs.update(num_inference_steps=int(s.steps), output_type="pt",
                      generator=[torch.Generator("cpu").manual_seed(noise.sample_seed(s.seed, i, STREAM))
                                 for i in ids.tolist()])
        if g.condition == "class":
            kwargs["class_labels"] = self._class_labels(labels)
            if "batch_size" in self._params:
                kwargs["batch_size"] = len(ids)
        else:
            kwargs["prompt"] = self._prompts(labels, ids)
        schedule = o.schedule(int(s.steps))
        if schedule is not None:
            kwargs[schedule[0]] = schedule[1]
            if type(pipe).__name__ == "ConsistencyModelPipeline":
                kwargs["num_inference_steps"] = None
        if o.resolution:
            kwargs["height"], kwargs["width"] = o.resolution
        if g.kind != "none":
            kwargs[g.kwarg] = float(s.cfg)
        if o.negative_prompt is not None:
            kwargs["negative_prompt"] = [o.negative_prompt] * len(ids)
        if g.true_cfg_kwarg and o.true_cfg_scale is not None:
            kwargs[g.true_cfg_kwarg] = float(o.true_cfg_scale)
            if g.true_cfg_negative and "negative_prompt" not in kwargs:
                kwargs["negative_prompt"] = [""] * len(ids)
        counter = NFECounter()      # the runner's own counter, on the same module
        with counter.watch([self._denoiser()]), torch.inference_mode():
            out = pipe(**kwargs)
        if o.check_nfe:
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
        size = self.opts.eval_size
        if size is None or tuple(x.shape[1:3]) == (size, size):
            return x
        resample = RESIZE[self.opts.resize]
        out = [np.asarray(Image.fromarray(im.numpy()).resize((size, size), resample=resample)) for im in x]
        return torch.from_numpy(np.stack(out))


class SD35Large(DiffusersPipeline):
    """The paper's SD3.5-Large: stabilityai/stable-diffusion-3.5-large, 1024 px, bf16, FlowMatch Euler, true CFG."""
    preset = "sd3.5-large"
    Options = SD35LargeOptions
    guidance = "cfg -> guidance_scale, true CFG: 2 NFE per step when > 1, 1 when <= 1"


class Flux1Dev(DiffusersPipeline):
    """The paper's FLUX.1-dev: black-forest-labs/FLUX.1-dev, 1024 px, bf16, embedded guidance (1 NFE)."""
    preset = "flux.1-dev"
    Options = Flux1DevOptions
    guidance = ("cfg -> guidance_scale, FLUX.1-dev's distilled guidance embedding: 1 NFE per step for every value; "
                "options.true_cfg_scale > 1 adds true CFG with an empty negative prompt (2 NFE per step)")
