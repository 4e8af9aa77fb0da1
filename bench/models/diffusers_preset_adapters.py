"""One adapter per few-step preset (bench/models/fewstep_presets.py): ``adapter: sdxl-turbo``, ``adapter:
dmd2-sdxl-4step``, ... are `DiffusersPipeline` with that preset's settings as option defaults, built the way
`bench.models.diffusers_pipe.SD35Large` is (``preset = name``, ``Options = preset_options(name, ...)``) and
``guidance`` = what the preset's note says ``cfg`` is and its NFE per step (`bench validate` prints it).

The classes are generated from `FEW_STEP_PRESETS` but have stable module-level names, `class_name(preset)`
(``sdxl-lightning-lora-4step`` -> ``SdxlLightningLora4step``; ``flux.1-schnell`` -> ``Flux1Schnell``), so registry
targets ``bench.models.diffusers_preset_adapters:<Name>`` resolve and pickle. A preset whose guidance kind
(declared, else its pipeline's table entry) is ``none`` (FLUX.1-schnell, the consistency models) has
``cfg_ignored`` set. Invariant: `ADAPTERS` maps every preset to its class and every class is a module attribute of
that name.
"""

from __future__ import annotations

import re

from bench.models.diffusers_options import preset_options
from bench.models.diffusers_pipe import DiffusersPipeline
from bench.models.diffusers_presets import GUIDANCE, PRESETS
from bench.models.fewstep_presets import FEW_STEP_PRESETS, PRESET_NOTES

__all__ = ["ADAPTERS", "class_name"]


def class_name(preset: str) -> str:
    """The adapter class name of a preset: its alphanumeric runs, each capitalised, joined."""
    return "".join(part[:1].upper() + part[1:] for part in re.split(r"[^0-9A-Za-z]+", preset) if part)


def _make(preset: str) -> type[DiffusersPipeline]:
    if preset not in PRESETS:      # diffusers_presets merges FEW_STEP_PRESETS into PRESETS at its import
        raise ImportError(f"preset {preset!r} is not in bench.models.diffusers_presets.PRESETS")
    name, note = class_name(preset), PRESET_NOTES[preset]
    options = preset_options(preset, f"{name}Options")
    options.__module__ = __name__
    globals()[options.__name__] = options
    declared = FEW_STEP_PRESETS[preset].get("guidance")       # else the table entry of its pipeline class
    kind = declared["kind"] if declared else GUIDANCE[FEW_STEP_PRESETS[preset]["pipeline"]].kind
    doc = (f"``adapter: {preset}``: `DiffusersPipeline` with the settings of {note['source']} "
           f"(base weights {PRESETS[preset]['weights']}). cfg -> {note['cfg']}.")
    cls = type(name, (DiffusersPipeline,), {
        "__module__": __name__, "__qualname__": name, "__doc__": doc, "preset": preset, "Options": options,
        "guidance": f"cfg -> {note['cfg']}; NFE: {note['nfe']}", "cfg_ignored": kind == "none"})
    globals()[name] = cls
    return cls


ADAPTERS: dict[str, type[DiffusersPipeline]] = {p: _make(p) for p in FEW_STEP_PRESETS}
