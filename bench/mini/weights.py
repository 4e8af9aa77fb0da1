"""Shipped weights of the miniature world: safetensors files plus a manifest, verified on load.

``manifest.json`` maps a weights name to {file, sha256, config, seed, steps, losses, dtype, train_seconds, torch,
cpu}: the last two say where it was trained (a bit-for-bit rerun needs the same torch build and CPU kind).
Loading checks the sha256 before reading a single tensor and never unpickles anything.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import platform
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load_file, save_file

from bench.provenance import sha256_file

WEIGHTS_DIR = Path(__file__).with_name("weights")
MANIFEST = "manifest.json"


class WeightsError(RuntimeError):
    pass


def read_manifest(directory: Path = WEIGHTS_DIR) -> dict[str, Any]:
    path = directory / MANIFEST
    if not path.exists():
        return {}
    try:
        manifest = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, ValueError) as e:
        raise WeightsError(f"{path}: unreadable weights manifest ({e})") from None
    if not isinstance(manifest, dict):
        raise WeightsError(f"{path}: a weights manifest must be a JSON object, got {type(manifest).__name__}")
    return manifest


def save(name: str, state_dict: dict[str, torch.Tensor], config: dict[str, Any], *, seed: int, steps: int,
         losses: dict[str, float], train_seconds: float, half: bool = True,
         directory: Path = WEIGHTS_DIR) -> Path:
    """Write ``name.safetensors`` (fp16 floats when ``half``) and its manifest entry atomically."""
    directory.mkdir(parents=True, exist_ok=True)
    tensors = {}
    for k, v in state_dict.items():
        v = v.detach().cpu().contiguous()
        if half and v.is_floating_point():
            v = v.to(torch.float16)
        tensors[k] = v
    path = directory / f"{name}.safetensors"
    tmp = path.with_suffix(".tmp")
    save_file(tensors, str(tmp))
    os.replace(tmp, path)
    with _manifest_lock(directory):
        _update_manifest(directory, name, path, config, seed, steps, losses, train_seconds, half)
    return path


@contextlib.contextmanager
def _manifest_lock(directory: Path):
    """Serialise read-modify-write of the manifest between concurrent trainers."""
    with open(directory / ".manifest.lock", "w") as f:
        fcntl.flock(f, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(f, fcntl.LOCK_UN)


def _update_manifest(directory, name, path, config, seed, steps, losses, train_seconds, half) -> None:
    manifest = read_manifest(directory)
    manifest[name] = {
        "file": path.name, "sha256": sha256_file(path), "config": config, "seed": seed, "steps": steps,
        "losses": {k: float(v) for k, v in losses.items()}, "dtype": "float16" if half else "float32",
        "train_seconds": round(float(train_seconds), 1), "torch": torch.__version__, "cpu": cpu(),
    }
    tmp_m = directory / (MANIFEST + ".tmp")
    tmp_m.write_text(json.dumps(manifest, indent=2, sort_keys=True) + "\n")
    os.replace(tmp_m, directory / MANIFEST)


def cpu() -> str:
    """The CPU kind a training ran on ('<model name> / <torch's vector ISA>'): float kernels of another kind may
    round differently, so a recipe reproduces its files bit for bit only on the same kind (mini_training.check)."""
    model = platform.processor() or platform.machine()
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    return f"{model} / {torch.backends.cpu.get_cpu_capability()}"


def looks_like_path(name: str) -> bool:
    """A weights reference that is a path (a separator, a suffix or an existing file), not a manifest name."""
    return "/" in name or os.sep in name or bool(Path(name).suffix) or Path(name).exists()


def entry(name: str, directory: Path = WEIGHTS_DIR) -> dict[str, Any]:
    """The manifest entry of ``name``; a path that is not a manifest name is refused saying what a path must be."""
    manifest = read_manifest(directory)
    if name not in manifest and looks_like_path(name):
        raise WeightsError(f"weights {name!r} is a path, not a manifest name: a path must be a .safetensors file "
                           f"with its config beside it (<name>.json or config.json); manifest names: "
                           f"{sorted(manifest)}")
    if name not in manifest:
        raise WeightsError(f"{directory / MANIFEST}: no entry {name!r} (have: {sorted(manifest)}); "
                           f"run `make mini-weights` to train the miniature world")
    return manifest[name]


def load(name: str, directory: Path = WEIGHTS_DIR) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    """(float32 state dict, config) for ``name``, after checking the file's sha256 against the manifest."""
    e = entry(name, directory)
    if not isinstance(e, dict) or not all(isinstance(e.get(k), str) for k in ("file", "sha256")):
        raise WeightsError(f"{directory / MANIFEST}: entry {name!r} needs 'file' and 'sha256' strings")
    path = directory / e["file"]
    if Path(e["file"]).name != e["file"]:
        raise WeightsError(f"{directory / MANIFEST}: entry {name!r}: file {e['file']!r} must be a plain file name "
                           f"inside {directory}")
    if not path.is_file():
        raise WeightsError(f"{path}: missing weights file for {name!r}")
    digest = sha256_file(path)
    if digest != e["sha256"]:
        raise WeightsError(f"{path}: sha256 {digest} does not match the manifest ({e['sha256']}); refusing to load")
    try:
        tensors = load_file(str(path))      # safetensors: a JSON header and raw tensor bytes, nothing executable
    except Exception as err:  # safetensors raises its own error types for a file that is not safetensors
        raise WeightsError(f"{path}: not a safetensors file ({err}); refusing to load") from None
    sd = {k: (v.float() if v.is_floating_point() else v) for k, v in tensors.items()}
    return sd, e["config"]
