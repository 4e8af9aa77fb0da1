"""Loading and placing a diffusers pipeline for the diffusers adapter: diffusers classes by name, the hub
download limited to what the pipeline loads, dtype, offload / VAE tiling / attention backend, and the denoiser
module that is hooked for NFE. Every bad setting is a `DiffusersError` naming the option."""

from __future__ import annotations

import warnings
from pathlib import Path

import torch
from torch import nn

from bench import hub, registry
from bench.hub import resolve_weights
from bench.models.diffusers_compose import apply_loras, build_components
from bench.models.diffusers_options import DiffusersError, DiffusersOptions

__all__ = ["DTYPES", "DiffusersError", "check_loadable", "diffusers_class", "diffusers_version", "find_denoiser",
           "load_pipeline", "place"]

DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}


def diffusers_class(name: str, base: str, where: str) -> type:
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


def diffusers_version() -> str | None:
    try:
        import diffusers
        return diffusers.__version__
    except ImportError:
        return None


def check_loadable(o: DiffusersOptions, device: torch.device) -> None:
    """What can be refused before any weights are read: offload on a CPU-only run, an unknown scheduler class or
    attention backend."""
    if o.cpu_offload != "none" and device.type == "cpu":
        raise DiffusersError(f"options.cpu_offload: {o.cpu_offload!r} offload needs an accelerator device, "
                             f"the suite runs on cpu")
    if o.scheduler:
        diffusers_class(o.scheduler, "SchedulerMixin", "options.scheduler")
    if o.attention_backend:
        from diffusers.models.attention_dispatch import AttentionBackendName
        known = [b.value for b in AttentionBackendName]
        if o.attention_backend.lower() not in known:
            raise DiffusersError(f"options.attention_backend: unknown backend {o.attention_backend!r} "
                                 f"({registry.hint(o.attention_backend, known)})")


def load_pipeline(ref: str, model_id: str, o: DiffusersOptions):
    """The pipeline at ``ref`` (hub id or local folder), safetensors only, in ``o.dtype``, with the replacement
    ``components`` built before assembly and the ``lora`` entries applied after (bench.models.diffusers_compose);
    not yet placed. Returns (pipeline, the LoRAs applied)."""
    import diffusers

    revision = o.load_kwargs.get("revision")
    _prefetch(ref, revision, o.load_kwargs.get("variant"))
    path = resolve_weights(ref, what=f"model {model_id!r} (diffusers pipeline)", revision=revision)
    cls = diffusers_class(o.pipeline, "DiffusionPipeline", "options.pipeline") if o.pipeline else \
        diffusers.DiffusionPipeline
    load_kwargs = {k: v for k, v in o.load_kwargs.items() if k != "revision"}
    load_kwargs.update(build_components(o, path, model_id, DTYPES[o.dtype]))
    with warnings.catch_warnings():     # torch_dtype: understood by every diffusers 0.x (renamed dtype later)
        warnings.filterwarnings("ignore", message=".*torch_dtype.*", category=FutureWarning)
        pipe = cls.from_pretrained(str(path), torch_dtype=DTYPES[o.dtype], use_safetensors=True, **load_kwargs)
    return pipe, apply_loras(pipe, o, model_id)


def find_denoiser(pipe, name: str | None) -> nn.Module:
    """The module whose forward rows are the NFE: ``name`` (options.denoiser), else transformer, else unet."""
    names = [name] if name else ["transformer", "unet"]
    for n in names:
        m = getattr(pipe, n, None)
        if isinstance(m, nn.Module):
            return m
    raise DiffusersError(f"options.denoiser: {type(pipe).__name__} has no module {' or '.join(names)} to hook "
                         f"for NFE (components: {sorted(pipe.components)})")


def place(pipe, o: DiffusersOptions, device: torch.device) -> None:
    """Move (or offload) the pipeline to ``device`` and apply the VAE and attention options."""
    if o.cpu_offload == "model":
        pipe.enable_model_cpu_offload(device=device)
    elif o.cpu_offload == "sequential":
        pipe.enable_sequential_cpu_offload(device=device)
    else:
        pipe.to(device)
    vae = getattr(pipe, "vae", None)
    for key, method in (("vae_tiling", "enable_tiling"), ("vae_slicing", "enable_slicing")):
        if getattr(o, key):
            if vae is None or not hasattr(vae, method):
                raise DiffusersError(f"options.{key}: the pipeline's VAE ({type(vae).__name__}) does not support it")
            try:
                getattr(vae, method)()
            except NotImplementedError as err:
                raise DiffusersError(f"options.{key}: {err}") from None
    if o.attention_backend:
        try:
            find_denoiser(pipe, o.denoiser).set_attention_backend(o.attention_backend)
        except (ValueError, RuntimeError, ImportError) as err:
            raise DiffusersError(f"options.attention_backend: {err}") from None
    pipe.set_progress_bar_config(disable=True)


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
