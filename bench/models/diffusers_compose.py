"""Composing a diffusers pipeline from suite options: replacement components built before assembly, LoRAs loaded
(and fused) after, and what identifies those files in a cell's key.

``components.<name>``: the class (a diffusers ``ModelMixin`` subclass, e.g. UNet2DConditionModel) is built from
``weights`` with ``from_pretrained`` (a folder or hub repo, ``subfolder``), or, with ``file`` (or ``weights``
naming a .safetensors file), from the config at ``config`` (default: the base pipeline's ``<name>`` subfolder, as
the SDXL-Lightning and DMD2 cards do with ``UNet2DConditionModel.from_config(base, subfolder="unet")``) with the
file loaded ``strict=True``; then cast to the model's ``dtype``. The pipeline is then assembled with
``from_pretrained(base, <name>=component)``, so the base checkpoint's own copy is never read.

``lora``: each entry is ``load_lora_weights(folder, weight_name=..., adapter_name=...)`` (safetensors only, peft
as diffusers uses it) and the adapters are weighted with ``set_adapters(names, adapter_weights=scales)``. Entries
with ``fuse: true`` are loaded first, fused with ``fuse_lora`` and their LoRA layers unloaded (peft skips every
unmerged adapter of a layer once one is merged, so fused and live LoRAs cannot share the layers); the others are
loaded after and stay live.

Identity (`compose_identity`): a local file or folder by its content hash, a hub file by its reference (pin
``revision`` for reproducibility), exactly as the base pipeline's weights are identified.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from bench import hub, registry
from bench.hub import expand_env, resolve_weights
from bench.models.diffusers_options import Component, DiffusersError, DiffusersOptions


def _file_ref(ref: str, file: str | None) -> tuple[str, str | None]:
    """(location, file in it): ``weights`` naming a .safetensors file itself counts as that file."""
    if file is None and ref.endswith(".safetensors"):
        parsed = hub.parse_hub(ref)
        if parsed is not None and parsed[1]:
            return f"hf://{parsed[0]}", parsed[1]
        return ref, None
    return ref, file


def identity(ref: str, file: str | None, revision: str | None, what: str) -> str:
    """A local file's or folder's content hash (``sha256:...``), else the hub reference as given."""
    from bench.provenance import sha256_path

    loc, name = _file_ref(ref, file)
    local = Path(expand_env(loc, what)).expanduser()
    if local.exists():
        target = local / name if name and local.is_dir() else local
        if target.exists():
            return "sha256:" + sha256_path(target)
    return f"ref:{loc}" + (f"/{name}" if name else "") + (f"@{revision}" if revision else "")


def compose_identity(o: DiffusersOptions, model_id: str) -> dict[str, Any]:
    """What the LoRA and component files add to the model's weights identity ({} when neither is given)."""
    out: dict[str, Any] = {}
    if o.lora:
        out["lora"] = [identity(x.weights, x.weight_name, x.revision, f"model {model_id!r} options.lora[{i}]")
                       for i, x in enumerate(o.lora)]
    if o.components:
        comps = {}
        for name, c in sorted(o.components.items()):
            where = f"model {model_id!r} options.components.{name}"
            comps[name] = {"class": c.class_, "weights": identity(c.weights, c.file, c.revision, where),
                           "subfolder": c.subfolder}
            if c.config:
                comps[name]["config"] = identity(c.config, None, None, where + ".config")
        out["components"] = comps
    return out


def requirements(o: DiffusersOptions) -> list:
    """Pre-flight entries for every LoRA and component file, and peft when LoRAs are given."""
    from bench.preflight import package, weights

    reqs = []
    for i, x in enumerate(o.lora):
        loc, name = _file_ref(x.weights, x.weight_name)
        reqs.append(weights(loc, f"LoRA options.lora[{i}]", filename=name, revision=x.revision))
    for n, c in sorted(o.components.items()):
        loc, name = _file_ref(c.weights, c.file)
        reqs.append(weights(loc, f"component options.components.{n} ({c.class_})", filename=name,
                            revision=c.revision))
        if c.config:
            reqs.append(weights(c.config, f"config of options.components.{n}"))
    if o.lora:
        reqs.append(package("peft", "peft (LoRA loading)", "hf"))
    return reqs


def model_class(name: str, where: str) -> type:
    """The diffusers model class ``name`` (a ModelMixin subclass), else a DiffusersError naming ``where``."""
    import diffusers

    cls = getattr(diffusers, name, None)
    if isinstance(cls, type) and issubclass(cls, diffusers.ModelMixin):
        return cls
    known = [n for n in dir(diffusers) if isinstance(getattr(diffusers, n, None), type)
             and issubclass(getattr(diffusers, n), diffusers.ModelMixin)]
    raise DiffusersError(f"{where}.class: {name!r} is not a diffusers model class ({registry.hint(name, known)})")


def build_components(o: DiffusersOptions, base: Path, model_id: str, dtype) -> dict[str, Any]:
    """Every ``components`` entry built and cast to ``dtype``, keyed by its pipeline component name."""
    return {name: _build(name, c, base, model_id, dtype) for name, c in o.components.items()}


def _build(name: str, c: Component, base: Path, model_id: str, dtype):
    import safetensors.torch

    where = f"options.components.{name}"
    cls = model_class(c.class_, where)
    loc, file = _file_ref(c.weights, c.file)
    what = f"model {model_id!r} {where}"
    if file is None and not str(loc).endswith(".safetensors"):
        path = resolve_weights(loc, what=what, revision=c.revision)
        try:
            return cls.from_pretrained(str(path), subfolder=c.subfolder, torch_dtype=dtype, use_safetensors=True)
        except (OSError, ValueError, EnvironmentError) as err:
            raise DiffusersError(f"{where}: {cls.__name__}.from_pretrained({str(path)!r}) failed: {err}") from None
    weights_file = resolve_weights(loc, what=what, filename=file, revision=c.revision)
    if c.config:
        cfg_dir = resolve_weights(c.config, what=what + ".config")
        subfolder = c.subfolder
    else:
        cfg_dir, subfolder = base, name
    try:
        config = cls.load_config(str(cfg_dir), subfolder=subfolder)
    except (OSError, ValueError, EnvironmentError) as err:
        raise DiffusersError(f"{where}: no {cls.__name__} config at {str(cfg_dir)!r} (subfolder {subfolder!r}): "
                           f"{err}") from None
    module = cls.from_config(config)
    state = safetensors.torch.load_file(str(weights_file))
    try:
        module.load_state_dict(state, strict=True)
    except RuntimeError as err:
        first = str(err).splitlines()[:3]
        raise DiffusersError(f"{where}: {Path(weights_file).name} does not fit {cls.__name__} built from its config "
                           f"(strict loading): {' '.join(first)}") from None
    return module.to(dtype).eval()


def apply_loras(pipe, o: DiffusersOptions, model_id: str) -> list[dict[str, Any]]:
    """Load, weight and fuse the ``lora`` entries on ``pipe``; returns what was applied, for provenance."""
    if not o.lora:
        return []
    try:
        import peft  # noqa: F401
    except ImportError:
        raise DiffusersError("options.lora: LoRAs load with peft: pip install 'stepbench[hf]' (or pip install "
                           "peft)") from None
    if not hasattr(pipe, "load_lora_weights"):
        raise DiffusersError(f"options.lora: {type(pipe).__name__} cannot load LoRAs (no load_lora_weights)")
    entries = [(x.adapter_name or f"lora{i}", i, x) for i, x in enumerate(o.lora)]
    fused = [e for e in entries if e[2].fuse]
    live = [e for e in entries if not e[2].fuse]
    if fused:
        _load(pipe, fused, model_id)
        pipe.fuse_lora(adapter_names=[n for n, _, _ in fused], lora_scale=1.0)
        pipe.unload_lora_weights()
    if live:
        _load(pipe, live, model_id)
    return [{"adapter_name": n, "weights": x.weights, "weight_name": x.weight_name, "scale": x.scale,
             "fused": x.fuse} for n, _, x in entries]


def _load(pipe, entries, model_id: str) -> None:
    for name, i, x in entries:
        loc, file = _file_ref(x.weights, x.weight_name)
        where = f"options.lora[{i}]"
        path = resolve_weights(loc, what=f"model {model_id!r} {where}", filename=file, revision=x.revision)
        folder, weight_name = (path.parent, path.name) if path.is_file() else (path, None)
        if weight_name is not None and not weight_name.endswith(".safetensors"):
            raise DiffusersError(f"{where}: LoRAs load from safetensors only, got {weight_name!r}")
        try:
            pipe.load_lora_weights(str(folder), weight_name=weight_name, adapter_name=name, use_safetensors=True)
        except (OSError, ValueError, KeyError) as err:
            raise DiffusersError(f"{where}: {type(pipe).__name__}.load_lora_weights failed: {err}") from None
    pipe.set_adapters([n for n, _, _ in entries], adapter_weights=[x.scale for _, _, x in entries])
