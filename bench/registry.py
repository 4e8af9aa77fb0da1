"""Typed, lazy name registries for model adapters, metrics and datasets, open to plugins.

Each `Registry` maps a name to a ``"module:attr"`` target (or a class) and imports nothing until a name is
resolved, so `bench validate` stays fast and a missing optional dependency only matters to the suites that use it.

Invariants (tested in tests/test_registry.py):
- a resolved target is a subclass of the registry's base class (`bench.models.base.Generator`,
  `bench.metrics.base.Metric`, `bench.data.base.Dataset`), else a `RegistryError` names it;
- a name is registered once: registering another target under a taken name is a `RegistryError` (registering
  the same target again is a no-op, so a module that registers on import may be imported twice);
- third-party packages add names through Python entry points in the groups ``stepbench.adapters``,
  ``stepbench.metrics`` and ``stepbench.datasets`` (``name = "pkg.module:Class"``), found on first lookup;
- `include` imports a user module (a dotted name or a ``.py`` path) that registers names; `bench run --include`
  calls it in the driver and in every Ray worker alike.
"""

from __future__ import annotations

import importlib
import importlib.metadata
import importlib.util
import sys
from pathlib import Path
from typing import Any

from bench.options import suggest

__all__ = ["Registry", "RegistryError", "UnknownName", "MODELS", "METRICS", "DATASETS", "KINDS", "check", "resolve",
           "register", "suggest", "hint", "include", "included"]


class RegistryError(ValueError):
    """A registration or lookup that cannot stand: a duplicate name, a target that is not the right kind."""


class UnknownName(KeyError):
    def __init__(self, kind: str, name: str, known: list[str]):
        self.message = f"unknown {kind} {name!r}; {hint(name, known)}"
        super().__init__(self.message)

    def __str__(self) -> str:
        return self.message


def hint(name: str, known) -> str:
    s = suggest(name, list(known))
    return f"did you mean {s!r}?" if s else f"known: {', '.join(sorted(map(str, known)))}"


def _import_target(target: str) -> Any:
    module, _, attr = target.partition(":")
    if not attr:
        raise RegistryError(f"target {target!r} is not of the form 'package.module:Attribute'")
    obj = importlib.import_module(module)
    for part in attr.split("."):
        obj = getattr(obj, part)
    return obj


class Registry:
    """name -> target for one kind of component. ``base`` is the ``"module:Class"`` every target must subclass."""

    def __init__(self, kind: str, base: str, group: str, builtins: dict[str, str]):
        self.kind, self.base, self.group = kind, base, group
        self._targets: dict[str, str | type] = dict(builtins)
        self._origin: dict[str, str] = {n: "built in" for n in builtins}
        self._entry_points_loaded = False

    # -- discovery ----------------------------------------------------------------------------------------------
    def _load_entry_points(self) -> None:
        if self._entry_points_loaded:
            return
        self._entry_points_loaded = True
        try:
            eps = importlib.metadata.entry_points(group=self.group)
        except Exception:                 # a broken distribution's metadata must not break every lookup
            return
        for ep in eps:
            dist = getattr(getattr(ep, "dist", None), "name", None) or "an installed package"
            self.register(ep.name, ep.value, origin=f"entry point {self.group} of {dist}")

    def names(self) -> list[str]:
        self._load_entry_points()
        return list(self._targets)

    def __contains__(self, name: object) -> bool:
        self._load_entry_points()
        return name in self._targets

    def __iter__(self):
        return iter(self.names())

    def __len__(self) -> int:
        return len(self.names())

    def target(self, name: str) -> str | type:
        self.check(name)
        return self._targets[name]

    def origin(self, name: str) -> str:
        self.check(name)
        return self._origin.get(name, "registered at run time")

    # -- registration -------------------------------------------------------------------------------------------
    def register(self, name: str, target: str | type, *, origin: str | None = None, replace: bool = False) -> None:
        """Add ``name``. ``target`` is ``"module:Class"`` (imported when first resolved) or the class itself
        (checked now). A taken name with another target is refused unless ``replace``."""
        if not isinstance(name, str) or not name.strip():
            raise RegistryError(f"{self.kind} names must be non-empty strings, got {name!r}")
        if isinstance(target, str):
            if ":" not in target:
                raise RegistryError(f"{self.kind} {name!r}: target {target!r} is not 'package.module:Class'")
        else:
            self._check_class(name, target)
        old = self._targets.get(name)
        if old is not None and not replace and not _same(old, target):
            raise RegistryError(f"{self.kind} {name!r} is already registered ({_describe(old)}, from "
                                f"{self._origin.get(name, 'run time')}); refusing to replace it with "
                                f"{_describe(target)} (from {origin or 'run time'}); choose another name")
        self._targets[name] = target
        self._origin[name] = origin or self._origin.get(name) or "registered at run time"

    def _check_class(self, name: str, cls: Any) -> None:
        base = _import_target(self.base)
        if not (isinstance(cls, type) and issubclass(cls, base)):
            raise RegistryError(f"{self.kind} {name!r}: {_describe(cls)} is not a subclass of "
                                f"{base.__module__}.{base.__name__}")

    # -- lookup -------------------------------------------------------------------------------------------------
    def check(self, name: str) -> None:
        self._load_entry_points()
        if name not in self._targets:
            raise UnknownName(self.kind, name, list(self._targets))

    def resolve(self, name: str) -> type:
        """The class registered as ``name`` (imported on first use, checked against the base class)."""
        target = self.target(name)
        if isinstance(target, str):
            try:
                cls = _import_target(target)
            except AttributeError as e:
                raise RegistryError(f"{self.kind} {name!r}: {target!r} cannot be found ({e})") from None
            self._check_class(name, cls)
            return cls
        return target


def _same(a: str | type, b: str | type) -> bool:
    return _describe(a) == _describe(b)


def _describe(target: str | type) -> str:
    if isinstance(target, str):
        return target
    return f"{getattr(target, '__module__', '?')}:{getattr(target, '__qualname__', repr(target))}"


MODELS = Registry("model adapter", "bench.models.base:Generator", "stepbench.adapters", {
    "toy": "bench.models.toy:ToyFlow",
    "samples": "bench.models.samples:Samples",
    "real": "bench.models.real:RealImages",
    "mini-sit": "bench.models.mini:MiniSiT",
    "mini-meanflow": "bench.models.mini:MiniMeanFlow",
    "mini-distill": "bench.models.mini:MiniDistill",
    "mini-t2i-sit": "bench.models.mini_text:MiniText2ImageSiT",
    "mini-t2i-meanflow": "bench.models.mini_text:MiniText2ImageMeanFlow",
    "sit": "bench.models.sit:SiT",
    "meanflow": "bench.models.meanflow:MeanFlow",
    "imf": "bench.models.imf:IMF",
    "soflow": "bench.models.soflow:SoFlow",
    "diffusers": "bench.models.diffusers_pipe:DiffusersPipeline",
    "sd3.5-large": "bench.models.diffusers_pipe:SD35Large",
    "flux.1-dev": "bench.models.diffusers_pipe:Flux1Dev",
    # few-step presets and their teachers (bench/models/fewstep_presets.py)
    "sdxl-base": "bench.models.diffusers_preset_adapters:SdxlBase",
    "sdxl-turbo": "bench.models.diffusers_preset_adapters:SdxlTurbo",
    "sd-turbo": "bench.models.diffusers_preset_adapters:SdTurbo",
    "sdxl-lightning": "bench.models.diffusers_preset_adapters:SdxlLightning",
    "sdxl-lightning-1step": "bench.models.diffusers_preset_adapters:SdxlLightning1step",
    "sdxl-lightning-2step": "bench.models.diffusers_preset_adapters:SdxlLightning2step",
    "sdxl-lightning-4step": "bench.models.diffusers_preset_adapters:SdxlLightning4step",
    "sdxl-lightning-8step": "bench.models.diffusers_preset_adapters:SdxlLightning8step",
    "sdxl-lightning-lora-2step": "bench.models.diffusers_preset_adapters:SdxlLightningLora2step",
    "sdxl-lightning-lora-4step": "bench.models.diffusers_preset_adapters:SdxlLightningLora4step",
    "sdxl-lightning-lora-8step": "bench.models.diffusers_preset_adapters:SdxlLightningLora8step",
    "lcm-lora-sdxl": "bench.models.diffusers_preset_adapters:LcmLoraSdxl",
    "lcm-sdxl": "bench.models.diffusers_preset_adapters:LcmSdxl",
    "hyper-sdxl-1step": "bench.models.diffusers_preset_adapters:HyperSdxl1step",
    "hyper-sdxl-lora-1step": "bench.models.diffusers_preset_adapters:HyperSdxlLora1step",
    "hyper-sdxl-lora-2step": "bench.models.diffusers_preset_adapters:HyperSdxlLora2step",
    "hyper-sdxl-lora-4step": "bench.models.diffusers_preset_adapters:HyperSdxlLora4step",
    "hyper-sdxl-lora-8step": "bench.models.diffusers_preset_adapters:HyperSdxlLora8step",
    "tcd-sdxl": "bench.models.diffusers_preset_adapters:TcdSdxl",
    "dmd2-sdxl-1step": "bench.models.diffusers_preset_adapters:Dmd2Sdxl1step",
    "dmd2-sdxl-4step": "bench.models.diffusers_preset_adapters:Dmd2Sdxl4step",
    "dmd2-sdxl-lora-4step": "bench.models.diffusers_preset_adapters:Dmd2SdxlLora4step",
    "flux.1-schnell": "bench.models.diffusers_preset_adapters:Flux1Schnell",
    "sd3.5-large-turbo": "bench.models.diffusers_preset_adapters:Sd35LargeTurbo",
    "sana-sprint": "bench.models.diffusers_preset_adapters:SanaSprint",
    "sana-sprint-2step": "bench.models.diffusers_preset_adapters:SanaSprint2step",
    "dit-xl-2-256": "bench.models.diffusers_preset_adapters:DitXl2256",
    "cd-imagenet64-l2": "bench.models.diffusers_preset_adapters:CdImagenet64L2",
    "cd-imagenet64-lpips": "bench.models.diffusers_preset_adapters:CdImagenet64Lpips",
    "ct-imagenet64": "bench.models.diffusers_preset_adapters:CtImagenet64",
    "rae": "bench.models.rae:RAE",
    "scale-rae": "bench.models.scale_rae:ScaleRAE",
})

METRICS = Registry("metric", "bench.metrics.base:Metric", "stepbench.metrics", {
    "fid_is_kid": "bench.metrics.fid_is_kid:FidIsKid",
    "clip_score": "bench.metrics.clip_score:ClipScore",
    "pickscore": "bench.metrics.clip_score:PickScore",
    "fd_dinov2": "bench.metrics.fd_dinov2:FdDinov2",
    "fd_dinov2_dgm": "bench.metrics.fd_dinov2_dgm:FdDinov2Dgm",
    "cmmd": "bench.metrics.cmmd:Cmmd",
    "image_reward": "bench.metrics.image_reward:ImageReward",
})

DATASETS = Registry("dataset", "bench.data.base:Dataset", "stepbench.datasets", {
    "mini-val": "bench.data.mini:MiniDataset",
    "mini-v2": "bench.data.mini:MiniDataset",
    "mini-ood": "bench.data.mini:MiniDataset",
    "mini-captions": "bench.data.mini_captions:MiniCaptions",
    "imagefolder": "bench.data.imagefolder:ImageFolder",
    "imagenet-val": "bench.data.imagenet:ImageNetVal",
    "imagenet-v2": "bench.data.imagenet:ImageNetV2",
    "relaionet": "bench.data.imagenet:ReLAIONet",
    "hf": "bench.data.hf:HFDataset",
    "imagefiles": "bench.data.image_files:ImageFiles",       # a flat folder of images (bench score --ref DIR)
    "npz": "bench.data.image_files:NpzImages",                # an ADM-style .npz of images and labels
    "prompted": "bench.data.prompted:Prompted",               # any source with a prompts file per image
    # caption sets and prompt-only sets (issue 21)
    "coco": "bench.data.coco:Coco",                           # MS-COCO captions (COCO-30k)
    "captions": "bench.data.captions:CaptionsFile",           # a JSONL / CSV / TSV of captions (+ images)
    "partiprompts": "bench.data.prompt_sets:PromptSet",
    "drawbench": "bench.data.prompt_sets:PromptSet",
    "geneval": "bench.data.prompt_sets:PromptSet",
})

KINDS: dict[str, Registry] = {"model adapter": MODELS, "metric": METRICS, "dataset": DATASETS}


def check(kind: str, name: str) -> None:
    KINDS[kind].check(name)


def resolve(kind: str, name: str) -> Any:
    return KINDS[kind].resolve(name)


def register(kind: str, name: str, target: str | type, *, replace: bool = False) -> None:
    """Add a third-party entry, e.g. register("model adapter", "my-model", "my_pkg.adapter:MyGen")."""
    KINDS[kind].register(name, target, replace=replace)


# -- user modules (--include) ---------------------------------------------------------------------------------
_INCLUDED: list[str] = []


def include(ref: str) -> None:
    """Import a user module that registers adapters, metrics or datasets: a dotted module name, or a path to a
    ``.py`` file (imported under a name derived from its path). Raises `RegistryError` with one line on failure."""
    if ref in _INCLUDED:
        return
    path = Path(ref).expanduser()
    try:
        if ref.endswith(".py") or path.is_file():
            if not path.is_file():
                raise RegistryError(f"--include {ref}: no such file")
            name = "stepbench_include_" + "".join(c if c.isalnum() else "_" for c in str(path.resolve()))
            if name not in sys.modules:
                spec = importlib.util.spec_from_file_location(name, path)
                if spec is None or spec.loader is None:
                    raise RegistryError(f"--include {ref}: cannot be imported as a Python module")
                module = importlib.util.module_from_spec(spec)
                sys.modules[name] = module
                try:
                    spec.loader.exec_module(module)
                except BaseException:
                    sys.modules.pop(name, None)
                    raise
        else:
            importlib.import_module(ref)
    except RegistryError:
        raise
    except ModuleNotFoundError as e:
        raise RegistryError(f"--include {ref}: no module named {e.name!r} (give a module on sys.path or a .py "
                            f"file)") from None
    except Exception as e:
        raise RegistryError(f"--include {ref}: importing it failed: {type(e).__name__}: {e}") from None
    _INCLUDED.append(ref)


def included() -> tuple[str, ...]:
    """The --include references imported in this process, in order (Ray workers import the same list)."""
    return tuple(_INCLUDED)


def runtime_registrations() -> dict[str, dict[str, str]]:
    """Names registered by string target at run time (not built in, not from entry points): what a worker process
    must register again to see the same names. Class targets are reached through their modules' --include."""
    out: dict[str, dict[str, str]] = {}
    for kind, reg in KINDS.items():
        for name in reg.names():
            t = reg._targets[name]
            if isinstance(t, str) and reg._origin.get(name) == "registered at run time":
                out.setdefault(kind, {})[name] = t
    return out
