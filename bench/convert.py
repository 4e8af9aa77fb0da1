"""`bench convert meanflow SRC DST`: an official JAX/Flax MeanFlow checkpoint -> safetensors with our names.

The official MeanFlow checkpoint (Gsunshine/meanflow, e.g. the MF-B/4 release) is a Flax ``TrainState`` saved by
``flax.training.checkpoints``: a msgpack file (``checkpoint_<step>``, or the ``checkpoint`` file inside an orbax
step folder) holding ``{"params": {"net": ...}, "ema_params": {"net": ...}, "opt_state": ..., "step": ...}``.
The adapters load safetensors or weights-only torch files only, so the conversion is a separate, explicit step:

    bench convert meanflow /ckpts/mf-b4/checkpoint_1200000 weights/meanflow-b4.safetensors

What it does (documented mapping, checked against the reference network by the tests and in the closing note):

1. read the msgpack tree without JAX (flax's array encoding: ext type 1 = (shape, dtype, bytes); chunked
   arrays re-joined), or an ``.npz`` whose keys are '/'-joined Flax paths; an orbax (OCDBT) checkpoint folder,
   which recent flax writes, is read through ``flax.training.checkpoints.restore_checkpoint`` when JAX and flax
   are installed (they are not dependencies of stepbench; the error says so);
2. take the EMA weights (``ema_params/net``; ``--tree params`` for the raw ones) -- the reference evaluates EMA;
3. rename each Flax path to our PyTorch name: drop the ``_flax_linear`` / ``_flax_embedding`` wrapper level,
   ``layers_N`` (flax ``nn.Sequential`` children, and the ``blocks`` Sequential) -> ``N``, ``kernel`` ->
   ``weight``, ``embedding`` -> ``weight``, and join with '.';
4. transform values: Dense kernels (in, out) -> (out, in) (transpose); the patch-embedding Conv kernel
   (kh, kw, in, out) HWIO -> (out, in, kh, kw) OIHW; biases and the embedding table unchanged;
5. add ``pos_embed`` (the reference computes the fixed 2-D sin-cos table at run time; we store it);
6. check the result against MeanFlowDiT built for the inferred size (by hidden width and depth, or ``--arch``)
   -- every name and shape must match -- and write it with the architecture in the file's metadata.
"""

from __future__ import annotations

import json
from dataclasses import asdict, replace
from pathlib import Path
from typing import Any

import numpy as np
import torch

CHUNKED = "__msgpack_chunked_array__"


# ---------------------------------------------------------------------------------------------- reading
def _array_from_ext(data: bytes) -> np.ndarray:
    import msgpack
    shape, dtype_name, buffer = msgpack.unpackb(data, raw=True)
    name = dtype_name.decode() if isinstance(dtype_name, bytes) else str(dtype_name)
    if name == "bfloat16":   # numpy has no bfloat16: go through torch
        raw = np.frombuffer(buffer, dtype=np.uint16).reshape(shape)
        return torch.from_numpy(raw.copy()).view(torch.bfloat16).float().numpy()
    return np.frombuffer(buffer, dtype=np.dtype(name)).reshape(shape)


def _ext_hook(code: int, data: bytes):
    import msgpack
    if code in (1, 3):        # flax _MsgpackExtType.ndarray / npscalar
        return _array_from_ext(data)
    if code == 2:             # native complex
        re, im = msgpack.unpackb(data)
        return complex(re, im)
    return msgpack.ExtType(code, data)


def _unchunk(node: Any) -> Any:
    if isinstance(node, dict):
        if node.get(CHUNKED):
            chunks = node["chunks"]
            parts = [chunks[k] for k in sorted(chunks, key=int)] if isinstance(chunks, dict) else list(chunks)
            shape = node["shape"]
            shape = tuple(shape[k] for k in sorted(shape, key=int)) if isinstance(shape, dict) else tuple(shape)
            return np.concatenate([np.asarray(p).reshape(-1) for p in parts]).reshape(shape)
        return {k: _unchunk(v) for k, v in node.items()}
    return node


def read_msgpack(path: Path) -> dict[str, Any]:
    try:
        import msgpack
    except ImportError as e:  # pragma: no cover - msgpack is a dependency
        raise RuntimeError("bench convert needs the msgpack package (pip install msgpack)") from e
    try:
        tree = msgpack.unpackb(Path(path).read_bytes(), ext_hook=_ext_hook, raw=False, strict_map_key=False)
    except Exception as e:   # noqa: BLE001 - any decode failure is one message
        raise ValueError(f"{path}: not a Flax msgpack checkpoint ({type(e).__name__}: {e})") from e
    if not isinstance(tree, dict):
        raise ValueError(f"{path}: expected a Flax state tree (a mapping), got {type(tree).__name__}")
    return _unchunk(tree)


def _find_checkpoint_file(folder: Path) -> Path | None:
    """The msgpack file in a checkpoint folder: ``checkpoint`` (legacy flax / orbax aggregate) or the newest
    ``checkpoint_<step>`` (descending into a ``checkpoint_<step>`` folder); None for an orbax OCDBT folder."""
    direct = folder / "checkpoint"
    if direct.is_file():
        return direct
    steps = []
    for p in folder.iterdir():
        tail = p.name.removeprefix("checkpoint_")
        if p.name.startswith("checkpoint_") and tail.isdigit():
            steps.append((int(tail), p))
    if steps:
        newest = max(steps)[1]
        return newest if newest.is_file() else _find_checkpoint_file(newest)
    return None


def _restore_with_flax(folder: Path) -> dict[str, Any]:
    """An orbax (OCDBT / tensorstore) checkpoint folder needs orbax to read: use flax when it is installed."""
    try:
        from flax.training import checkpoints
    except ImportError:
        raise ValueError(f"{folder}: an orbax checkpoint folder (no msgpack 'checkpoint' file); reading it needs "
                         f"JAX and flax (`pip install jax flax`, CPU is enough), or export it elsewhere as .npz of "
                         f"'/'-joined Flax paths") from None
    tree = checkpoints.restore_checkpoint(str(folder.resolve()), target=None)
    if not isinstance(tree, dict):
        raise ValueError(f"{folder}: flax restored a {type(tree).__name__}, expected a state tree")
    return _to_numpy(tree)


def _to_numpy(node: Any) -> Any:
    if isinstance(node, dict):
        return {str(k): _to_numpy(v) for k, v in node.items()}
    if hasattr(node, "shape") and hasattr(node, "dtype"):
        return np.asarray(node)
    return node


def read_flax_tree(src: str | Path) -> dict[str, np.ndarray]:
    """Flat {'a/b/c': array} of a Flax checkpoint: a msgpack file, a checkpoint folder (msgpack inside, or orbax
    read through flax when installed), or an .npz of flat paths."""
    src = Path(src)
    if not src.exists():
        raise FileNotFoundError(f"{src}: no such file or folder")
    if src.suffix == ".npz":
        with np.load(src, allow_pickle=False) as z:
            return {k: z[k] for k in z.files}
    if src.is_dir():
        found = _find_checkpoint_file(src)
        tree = read_msgpack(found) if found is not None else None
        if tree is None or not flatten(tree):       # orbax: the arrays live in tensorstore files, not the msgpack
            orbax = found.parent if found is not None else src
            tree = _restore_with_flax(orbax)
        return flatten(tree)
    return flatten(read_msgpack(src))


def flatten(tree: dict[str, Any], prefix: str = "") -> dict[str, np.ndarray]:
    out: dict[str, np.ndarray] = {}
    for k, v in tree.items():
        key = f"{prefix}/{k}" if prefix else str(k)
        if isinstance(v, dict):
            out.update(flatten(v, key))
        elif isinstance(v, np.ndarray):
            out[key] = v
    return out


def network_params(flat: dict[str, np.ndarray], tree: str = "ema_params") -> dict[str, np.ndarray]:
    """The MeanFlow network's parameters: ``<tree>/net/...`` of a TrainState (``net/...`` or bare network paths
    of an exported tree are accepted too), with that prefix removed."""
    for prefix in (f"{tree}/net/", "net/"):
        sub = {k[len(prefix):]: v for k, v in flat.items() if k.startswith(prefix)}
        if sub:
            return sub
    if any(k.startswith("x_embedder/") for k in flat):
        return dict(flat)
    tops = sorted({k.split("/")[0] for k in flat})
    raise ValueError(f"no MeanFlow network parameters under '{tree}/net/' (top-level keys: {tops}; "
                     f"--tree picks another tree, e.g. params)")


# ---------------------------------------------------------------------------------------------- mapping
def torch_name(flax_path: str) -> str:
    """Flax path -> our parameter name (see the module doc, step 3)."""
    parts = [p for p in flax_path.split("/") if p not in ("_flax_linear", "_flax_embedding")]
    parts = [p.removeprefix("layers_") if p.startswith("layers_") and p[7:].isdigit() else p for p in parts]
    if parts and parts[-1] in ("kernel", "embedding", "scale"):
        parts[-1] = "weight"
    return ".".join(parts)


def torch_shape(flax_path: str, shape: tuple[int, ...]) -> tuple[int, ...]:
    """The shape a Flax value of ``shape`` has after `torch_value` (see the module doc, step 4)."""
    shape = tuple(int(n) for n in shape)
    if flax_path.endswith("kernel"):
        if len(shape) == 2:
            return shape[::-1]
        if len(shape) == 4:
            return (shape[3], shape[2], shape[0], shape[1])
        raise ValueError(f"{flax_path}: unexpected kernel of rank {len(shape)}")
    return shape


def torch_value(flax_path: str, value: np.ndarray) -> torch.Tensor:
    """Flax value -> our layout: Dense kernels transposed, the Conv kernel HWIO -> OIHW, the rest unchanged."""
    t = torch.from_numpy(np.array(value, dtype=np.float32 if value.dtype.kind == "f" else value.dtype))
    if flax_path.endswith("kernel"):
        t = t.t() if t.ndim == 2 else t.permute(3, 2, 0, 1) if t.ndim == 4 else t
    out = t.contiguous()
    if tuple(out.shape) != torch_shape(flax_path, value.shape):
        raise ValueError(f"{flax_path}: unexpected kernel of rank {t.ndim}")
    return out


def infer_meanflow_arch(sd: dict[str, torch.Tensor], input_size: int = 32):
    """MeanFlow DiTConfig from converted weights: width and patch from the patch conv, depth from the blocks,
    heads from the reference's size table (B: 12, M/L/XL: 16)."""
    from bench.nets import dit
    from bench.nets.meanflow import MF_SHAPES
    w = sd.get("x_embedder.proj.weight")
    if w is None or w.ndim != 4:
        raise ValueError("converted weights have no x_embedder.proj.weight (not a MeanFlow DiT checkpoint?)")
    hidden, in_ch, patch = int(w.shape[0]), int(w.shape[1]), int(w.shape[2])
    depth = len({k.split(".")[1] for k in sd if k.startswith("blocks.")})
    heads = next((h for d, hid, h in MF_SHAPES.values() if d == depth and hid == hidden), None)
    if heads is None:
        raise ValueError(f"width {hidden} and depth {depth} match no MeanFlow size {sorted(MF_SHAPES)}; "
                         f"give --arch")
    n_cls = int(sd["y_embedder.embedding_table.weight"].shape[0]) - 1
    out_ch = int(sd["final_layer.linear.weight"].shape[0]) // (patch * patch)
    return dit.DiTConfig(input_size=input_size, patch_size=patch, in_channels=in_ch, hidden_size=hidden,
                         depth=depth, num_heads=heads, num_classes=n_cls, learn_sigma=out_ch == 2 * in_ch)


def convert_meanflow_params(params: dict[str, np.ndarray], arch: str | None = None,
                            input_size: int = 32) -> tuple[dict[str, torch.Tensor], Any]:
    """Flat Flax network params -> (our state dict, DiTConfig), checked name for name against MeanFlowDiT."""
    from bench.models.checkpoint import check_fits
    from bench.nets.dit import config_from_option, sincos_pos_embed_2d
    from bench.nets.meanflow import MF_SHAPES, MeanFlowDiT
    sd: dict[str, torch.Tensor] = {}
    for path, value in params.items():
        name = torch_name(path)
        if name in sd:
            raise ValueError(f"two Flax parameters map to {name!r} (second: {path!r})")
        sd[name] = torch_value(path, value)
    if arch:
        cfg = replace(config_from_option(arch, MF_SHAPES, "bench convert --arch"), input_size=input_size)
    else:
        cfg = infer_meanflow_arch(sd, input_size)
    with torch.device("meta"):
        ref = MeanFlowDiT(cfg).state_dict()
    sd["pos_embed"] = sincos_pos_embed_2d(cfg.hidden_size, cfg.input_size // cfg.patch_size)[None]
    check_fits(ref, sd, "bench convert: converted weights")
    return sd, cfg


def convert_meanflow(src: str | Path, dst: str | Path, arch: str | None = None, input_size: int = 32,
                     tree: str = "ema_params") -> Path:
    """Convert ``src`` (Flax checkpoint) to ``dst`` (.safetensors); returns dst."""
    from safetensors.torch import save_file
    dst = Path(dst)
    if dst.suffix != ".safetensors":
        raise ValueError(f"{dst}: the output must be a .safetensors file")
    params = network_params(read_flax_tree(src), tree)
    sd, cfg = convert_meanflow_params(params, arch, input_size)
    dst.parent.mkdir(parents=True, exist_ok=True)
    meta = {"format": "stepbench-meanflow/1", "arch": json.dumps(asdict(cfg)), "source": Path(src).name,
            "tree": tree}
    save_file(sd, str(dst), metadata=meta)
    return dst
