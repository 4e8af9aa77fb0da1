"""Environment fingerprint and content hashes of weights, stored with every run and cell."""

from __future__ import annotations

import functools
import hashlib
import importlib.metadata
import json
import os
import platform
import subprocess
import sys
import threading
from pathlib import Path
from typing import Any

import torch

from bench import malloc
from bench.tempfiles import temp_name

PACKAGES = ("torch", "torchvision", "torch-fidelity", "open-clip-torch", "transformers", "diffusers", "numpy",
            "duckdb", "pillow", "stepbench")
_HASH_CACHE = Path(os.environ.get("STEPBENCH_HASH_CACHE", Path.home() / ".cache" / "stepbench" / "file-hashes.json"))
_lock = threading.Lock()


@functools.cache
def git_sha() -> str | None:
    """The checkout's commit (``-dirty`` with uncommitted changes to tracked files), read once per process: the code
    a process runs is the code it imported, whatever the checkout holds later (two ``git`` calls, ~20 ms, were
    paid on every run of a long-lived process: the ``make perf`` rounds, the Python API)."""
    try:
        root = Path(__file__).resolve().parent.parent
        out = subprocess.run(["git", "-C", str(root), "rev-parse", "HEAD"], capture_output=True, text=True, timeout=5)
        if out.returncode != 0:
            return None
        dirty = subprocess.run(["git", "-C", str(root), "status", "--porcelain", "--untracked-files=no"],
                               capture_output=True, text=True, timeout=5).stdout.strip()
        return out.stdout.strip() + ("-dirty" if dirty else "")
    except (OSError, subprocess.SubprocessError):
        return None


@functools.cache
def package_version(name: str) -> str | None:
    """The installed version of distribution ``name`` (None when it is not installed), read once per process: a
    process runs the libraries it imported, and the metadata lookup (~3 ms per name with this environment's
    packages) was paid on every run and, through `bench.metrics.refcache.library_versions`, on every cell."""
    try:
        return importlib.metadata.version(name)
    except importlib.metadata.PackageNotFoundError:
        return None


def versions() -> dict[str, str | None]:
    """Installed versions of `PACKAGES`."""
    return {p: package_version(p) for p in PACKAGES}


def device_name(device: torch.device) -> str:
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    cpu = platform.processor() or platform.machine()
    return f"cpu ({cpu}, {os.cpu_count()} cores, {torch.get_num_threads()} threads)"


def numerics(mode: str = "strict") -> dict[str, Any]:
    """The float32 matmul / convolution precision of generation and of metric networks. Strict (the default):
    generation keeps this process's flags, metric forwards run under `bench.metrics.base.STRICT_NUMERICS`; a
    suite's ``numerics: tf32`` runs both under `TF32_NUMERICS`."""
    from bench.metrics.base import MODES, numerics_flags
    flags = dict(MODES[mode])
    return {"mode": mode, "generation": numerics_flags() if mode == "strict" else flags, "metrics": flags}


def environment(device: torch.device, dtype: str, numerics_mode: str = "strict") -> dict[str, Any]:
    """What a run ran on, stored in its ``runs`` row (never in cell keys)."""
    return {
        "git_sha": git_sha(), "python": sys.version.split()[0], "platform": platform.platform(),
        "packages": versions(), "device": str(device), "device_name": device_name(device), "dtype": dtype,
        "cuda": torch.version.cuda, "cudnn": torch.backends.cudnn.version() if torch.cuda.is_available() else None,
        "numerics": numerics(numerics_mode), "malloc": malloc.state(),
    }


def sha256_file(path: str | Path) -> str:
    """sha256 of one file's bytes, streamed (no cache: see `sha256_path`)."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 22), b""):
            h.update(chunk)
    return h.hexdigest()


def sha256_path(path: str | Path) -> str:
    """sha256 of a file, or of a folder's files (relative names + contents); cached by path+size+mtime."""
    p = Path(path).resolve()
    if p.is_dir():
        h = hashlib.sha256(b"dir/1")
        for f in sorted(x for x in p.rglob("*") if x.is_file()):
            h.update(str(f.relative_to(p)).encode() + b"\0" + sha256_path(f).encode())
        return h.hexdigest()
    if p.exists() and not p.is_file():   # a device, FIFO or socket: /dev/zero would hash forever, a FIFO block
        raise ValueError(f"{path}: not a regular file or folder; refusing to hash it")
    st = p.stat()
    stamp = f"{st.st_size}:{st.st_mtime_ns}"
    with _lock:
        cache = _read_cache()
        hit = cache.get(str(p))
        if hit and hit[0] == stamp:
            return hit[1]
    digest = sha256_file(p)
    with _lock:
        cache = _read_cache()
        cache[str(p)] = [stamp, digest]
        _write_cache(cache)
    return digest


def _read_cache() -> dict:
    try:
        return json.loads(_HASH_CACHE.read_text())
    except (OSError, ValueError):
        return {}


def write_json_cache(path: Path, obj: Any) -> None:
    """Atomically replace a JSON cache file; failures are ignored (a cache is an optimisation only)."""
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = temp_name(path)
        tmp.write_text(json.dumps(obj))
        os.replace(tmp, path)
    except OSError:
        pass


def _write_cache(cache: dict) -> None:
    write_json_cache(_HASH_CACHE, cache)


def default_weights_id(spec) -> str:
    """A model's weights identity when its adapter has no better one: a local path's content hash, or the given
    string (a hub id, which should carry a revision to be reproducible)."""
    if spec.weights and Path(spec.weights).exists():
        return "sha256:" + sha256_path(spec.weights)
    return f"ref:{spec.weights}"


def weights_id(adapter: Any, spec) -> str:
    """What identifies a model's weights in cell keys: the adapter's answer (`Generator.weights_id`)."""
    return adapter.weights_id(spec)
