"""Shared adapter plumbing: reading checkpoints, strict state-dict loading, the sampler-settings and class-input
checks, and the typed option pieces (intervals, network-config mappings) the published-model adapters declare.

Invariants:
- `read_checkpoint` never unpickles code: ``.safetensors`` through safetensors, anything else through
  ``torch.load(weights_only=True)`` with exactly `TRAIN_PY_GLOBALS` (``argparse.Namespace``: a train.py
  checkpoint's ``args``) allowed besides torch's own weights-only types; a training checkpoint's EMA weights win
  over its raw ones (the entry names the references use, in this order: "ema_model" (SoFlow), "ema" (DiT/SiT/RAE
  train.py), "model", "state_dict"); DDP (``module.``) and ``torch.compile`` (``_orig_mod.``) key prefixes are
  dropped; every value is a tensor.
- `load_strict` loads only when the file has exactly the network's names and shapes (extra entries allowed only
  where the reference itself loads non-strictly), and says in one line what is missing, unexpected or reshaped.
  Values are copied into the network's float32 parameters (``load_state_dict``), so a half-precision file loads
  exactly as ``.float()`` would.
- `check_settings` is the one check of a cell's (steps, cfg, solver) every adapter makes before sampling.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import math
import numbers
import typing
from pathlib import Path
from typing import Annotated, Any, Callable, Sequence

import torch
from pydantic import AfterValidator, ValidationError, create_model
from torch import nn

from bench.options import StrictOptions, problems

EMA_FIRST = ("ema_model", "ema", "model", "state_dict")
# The one non-tensor type the references' train.py checkpoints hold ({"model", "ema", "opt", "args"}, args an
# argparse.Namespace of plain values): allowed to the weights-only unpickler, nothing more.
TRAIN_PY_GLOBALS = (argparse.Namespace,)
WRAPPER_PREFIXES = ("module.", "_orig_mod.")


# ---------------------------------------------------------------------------------------------- checkpoints
def _first_line(err: BaseException) -> str:
    text = str(err).strip()
    return f"{type(err).__name__}: {text.splitlines()[0]}" if text else type(err).__name__


def state_dict_of(obj: Any, what: str) -> dict[str, torch.Tensor]:
    """A checkpoint object's model state dict: its EMA / "model" / "state_dict" entry (see `EMA_FIRST`) or the
    object itself, prefixes of wrapped modules dropped; refuses anything that is not a mapping of tensors."""
    if not isinstance(obj, dict):
        raise ValueError(f"{what}: expected a state dict (a mapping of tensors), got {type(obj).__name__}")
    entry = next((k for k in EMA_FIRST if isinstance(obj.get(k), dict)), None)
    sd = obj[entry] if entry else obj
    bad = [k for k, v in sd.items() if not torch.is_tensor(v)]
    if bad:
        raise ValueError(f"{what}: entry {bad[0]!r} is not a tensor; not a model state dict")
    out = {}
    for k, v in sd.items():
        for p in WRAPPER_PREFIXES:
            k = k.removeprefix(p)
        out[k] = v
    return out


def read_checkpoint(path: str | Path, what: str = "checkpoint") -> dict[str, torch.Tensor]:
    """The model state dict in ``path`` (see the module doc); ``what`` (e.g. "SoFlow weights") starts every error
    message, which also names the file."""
    path = Path(path)
    if path.is_dir():
        raise ValueError(f"{what}: {str(path)!r} is a folder; give the checkpoint file inside it")
    if path.suffix == ".safetensors":
        from safetensors.torch import load_file
        try:
            obj = load_file(str(path))
        except Exception as e:   # noqa: BLE001 - a corrupt or mislabelled file: one message naming it
            raise ValueError(f"{what}: cannot read {str(path)!r} as a safetensors file ({_first_line(e)})") from e
    else:
        try:
            with torch.serialization.safe_globals(list(TRAIN_PY_GLOBALS)):
                obj = torch.load(str(path), map_location="cpu", weights_only=True)
        except Exception as e:   # noqa: BLE001 - pickled objects, truncated files: one message
            raise ValueError(f"{what}: cannot read {str(path)!r} as a safetensors file or a weights-only torch "
                             f"checkpoint ({_first_line(e)})") from e
    return state_dict_of(obj, f"{what}: {str(path)!r}")


def safetensors_metadata(path: str | Path) -> dict[str, str]:
    """The string metadata of a ``.safetensors`` file (bench convert records the architecture there); {} else."""
    if Path(path).suffix != ".safetensors":
        return {}
    from safetensors import safe_open
    with safe_open(str(path), framework="pt") as f:
        return dict(f.metadata() or {})


def check_fits(own: dict[str, torch.Tensor], sd: dict[str, torch.Tensor], what: str,
               allow_extra: bool = False) -> None:
    """Raise one readable line unless ``sd`` has exactly the names and shapes of ``own`` (a network's state dict,
    meta tensors are fine); ``allow_extra``: entries the network does not have are ignored."""
    missing = [k for k in own if k not in sd]
    extra = [] if allow_extra else [k for k in sd if k not in own]
    shape = [k for k in own if k in sd and tuple(sd[k].shape) != tuple(own[k].shape)]
    if missing or extra or shape:
        parts = []
        if missing:
            parts.append(f"{len(missing)} missing (first {missing[0]!r})")
        if extra:
            parts.append(f"{len(extra)} unexpected (first {extra[0]!r})")
        if shape:
            k = shape[0]
            parts.append(f"{len(shape)} with other shapes (first {k!r}: file {tuple(sd[k].shape)}, "
                         f"network {tuple(own[k].shape)})")
        raise ValueError(f"{what} does not fit the network: " + "; ".join(parts)
                         + " (a wrong arch option, or another model's or an unconverted checkpoint?)")


def load_strict(net: nn.Module, sd: dict[str, torch.Tensor], what: str, allow_extra: bool = False) -> None:
    """``net.load_state_dict(strict=True)`` after `check_fits` (``allow_extra``: as the reference's non-strict
    decoder loading, extra file entries are ignored, missing ones are not)."""
    own = net.state_dict()
    check_fits(own, sd, what, allow_extra)
    net.load_state_dict({k: sd[k] for k in own}, strict=True)


# ---------------------------------------------------------------------------------------------- settings, inputs
def check_settings(name: str, s, solvers: Sequence[str] | None, min_steps: int = 1) -> None:
    """A cell's settings (a `bench.models.base.SamplerSettings`): ``steps`` an integer >= ``min_steps``, ``cfg``
    a finite number >= 0, ``solver`` None (the adapter's default, ``solvers[0]``) or one of ``solvers`` (None: no
    solver check). Raises ValueError starting with ``name``."""
    if isinstance(s.steps, bool) or not isinstance(s.steps, numbers.Integral) or s.steps < min_steps:
        raise ValueError(f"{name}: steps must be an integer >= {min_steps}, got {s.steps!r}")
    if isinstance(s.cfg, bool) or not isinstance(s.cfg, numbers.Real) or not math.isfinite(s.cfg) or s.cfg < 0:
        raise ValueError(f"{name}: cfg must be a finite number >= 0 (1 = no guidance), got {s.cfg!r}")
    if s.solver is not None and solvers is not None and s.solver not in solvers:
        default = f" (or none for the default {solvers[0]!r})" if solvers else ""
        raise ValueError(f"{name}: unknown solver {s.solver!r}; expected one of {list(solvers)}{default}")


def class_inputs(name: str, labels, sample_ids, num_classes: int,
                 device: torch.device | str) -> tuple[torch.Tensor, torch.Tensor]:
    """(labels as a long vector on ``device``, sample ids as a CPU vector), checked: one id per label, every label
    in 0..num_classes - 1."""
    labels = torch.as_tensor(labels).reshape(-1).to(device=device, dtype=torch.long)
    ids = torch.as_tensor(sample_ids).reshape(-1).cpu()
    if labels.shape[0] != ids.shape[0]:
        raise ValueError(f"{name}: {labels.shape[0]} labels but {ids.shape[0]} sample ids")
    if labels.numel() and (int(labels.min()) < 0 or int(labels.max()) >= num_classes):
        raise ValueError(f"{name}: labels must be in 0..{num_classes - 1}, got {int(labels.min())}.."
                         f"{int(labels.max())}")
    return labels, ids


# ---------------------------------------------------------------------------------------------- typed options
def check_interval(v, what: str = "", within: tuple[float, float] | None = None,
                   point_ok: bool = False) -> tuple[float, float]:
    """[t_min, t_max] as two floats with t_min < t_max (<= with ``point_ok``), inside ``within`` when given."""
    head = f"{what}: " if what else ""
    lo_op = "<=" if point_ok else "<"
    cond = f"t_min {lo_op} t_max" if within is None else f"{within[0]:g} <= t_min {lo_op} t_max <= {within[1]:g}"
    try:
        lo, hi = (float(x) for x in v)
    except (TypeError, ValueError) as err:
        raise ValueError(f"{head}must be [t_min, t_max] with {cond}, got {v!r}") from err
    ok = lo <= hi if point_ok else lo < hi
    if within is not None:
        ok = ok and within[0] <= lo and hi <= within[1]
    if not ok:
        raise ValueError(f"{head}must be [t_min, t_max] with {cond}, got {list(v)!r}")
    return lo, hi


def interval_option(within: tuple[float, float] | None = None, point_ok: bool = False):
    """The type of an interval option: a list of two numbers, checked by `check_interval` at validation."""
    def check(v: list[float]) -> list[float]:
        return list(check_interval(v, "", within, point_ok))
    return Annotated[list[float], AfterValidator(check)]


def config_options(cls: type, types: dict[str, Any] | None = None, **defaults) -> type[StrictOptions]:
    """A `StrictOptions` model of the dataclass ``cls``'s fields, for an option that spells a network config out:
    the field types (tuples as lists, or ``types[name]``) and defaults (``defaults[name]`` overriding), so a
    misspelt or wrongly typed field is refused at validation like any option."""
    hints = typing.get_type_hints(cls)
    spec: dict[str, Any] = {}
    for f in dataclasses.fields(cls):
        t = (types or {}).get(f.name, hints[f.name])
        if typing.get_origin(t) is tuple:
            t = list[typing.get_args(t)[0]]
        d = defaults.get(f.name, f.default)
        spec[f.name] = (t, list(d) if isinstance(d, tuple) else d)
    return create_model(f"{cls.__name__}Options", __base__=StrictOptions, **spec)


def config_option(model: type[StrictOptions], build: Callable[[Any], Any], names: bool = True):
    """The type of an ``arch``-style option, checked at validation: None (the adapter's default), a mapping of
    ``model``'s fields (validated strictly, did-you-mean on a misspelt field, kept with its defaults filled in, so
    equal configs give equal options) or, with ``names``, a size name (a JSON object in a string is read as the
    mapping: bench convert's metadata form). ``build(value)`` must accept the value (an unknown size fails here,
    not at load)."""
    def check(v):
        if v is None:
            return None
        if isinstance(v, str) and v.lstrip().startswith("{"):
            v = json.loads(v)
        if isinstance(v, dict):
            try:
                v = model.model_validate(v).model_dump(mode="python")
            except ValidationError as e:
                raise ValueError("; ".join(f"{k}: {m}" for k, m in problems(model, e))) from None
        build(v)
        return v
    base = (str | dict[str, Any] | None) if names else (dict[str, Any] | None)
    return Annotated[base, AfterValidator(check)]
