"""Lazy name -> "module:attr" registries for model adapters, metrics and datasets.

Nothing heavy is imported until a name is resolved, so `bench validate` stays fast and a missing optional
dependency only matters to the suites that use it.
"""

from __future__ import annotations

import difflib
import importlib
from typing import Any

MODELS: dict[str, str] = {
    "toy": "bench.models.toy:ToyFlow",
    "samples": "bench.models.samples:Samples",
    "real": "bench.models.real:RealImages",
    "mini-sit": "bench.models.mini:MiniSiT",
    "mini-meanflow": "bench.models.mini:MiniMeanFlow",
    "mini-distill": "bench.models.mini:MiniDistill",
    "sit": "bench.models.sit:SiT",
    "meanflow": "bench.models.meanflow:MeanFlow",
    "imf": "bench.models.imf:IMF",
    "soflow": "bench.models.soflow:SoFlow",
    "diffusers": "bench.models.diffusers_pipe:DiffusersPipeline",
    "sd3.5-large": "bench.models.diffusers_pipe:SD35Large",
    "flux.1-dev": "bench.models.diffusers_pipe:Flux1Dev",
    "rae": "bench.models.rae:RAE",
    "scale-rae": "bench.models.scale_rae:ScaleRAE",
}

METRICS: dict[str, str] = {
    "fid_is_kid": "bench.metrics.fid_is_kid:FidIsKid",
    "clip_score": "bench.metrics.clip_score:ClipScore",
    "pickscore": "bench.metrics.clip_score:PickScore",
    "fd_dinov2": "bench.metrics.fd_dinov2:FdDinov2",
}

DATASETS: dict[str, str] = {
    "mini-val": "bench.data.mini:MiniDataset",
    "mini-v2": "bench.data.mini:MiniDataset",
    "mini-ood": "bench.data.mini:MiniDataset",
    "imagefolder": "bench.data.imagefolder:ImageFolder",
    "imagenet-val": "bench.data.imagenet:ImageNetVal",
    "imagenet-v2": "bench.data.imagenet:ImageNetV2",
    "relaionet": "bench.data.imagenet:ReLAIONet",
    "hf": "bench.data.hf:HFDataset",
}

KINDS = {"model adapter": MODELS, "metric": METRICS, "dataset": DATASETS}


def suggest(name: str, known: list[str] | tuple[str, ...]) -> str | None:
    """The closest known name to a misspelt one (edit distance, then shared prefix), or None."""
    close = difflib.get_close_matches(name, list(known), n=1)
    if close:
        return close[0]
    pref = [k for k in known if k.startswith(name) or name.startswith(k)]
    return pref[0] if pref else None


def hint(name: str, known) -> str:
    s = suggest(name, known)
    return f"did you mean {s!r}?" if s else f"known: {', '.join(sorted(known))}"


class UnknownName(KeyError):
    def __init__(self, kind: str, name: str, known: list[str]):
        hint_ = "; " + hint(name, known)
        self.message = f"unknown {kind} {name!r}{hint_}"
        super().__init__(self.message)

    def __str__(self) -> str:
        return self.message


def check(kind: str, name: str) -> None:
    table = KINDS[kind]
    if name not in table:
        raise UnknownName(kind, name, list(table))


def resolve(kind: str, name: str) -> Any:
    check(kind, name)
    module, attr = KINDS[kind][name].split(":")
    return getattr(importlib.import_module(module), attr)


def register(kind: str, name: str, target: str) -> None:
    """Add a third-party entry, e.g. register("model adapter", "my-model", "my_pkg.adapter:MyGen")."""
    KINDS[kind][name] = target
