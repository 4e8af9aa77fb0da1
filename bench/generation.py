"""Generating a cell's images in batches and streaming them into metric accumulators.

Invariants: images are checked (uint8 NHWC, one per label, one size per cell) before any metric sees them; on out
of memory the generation batch halves and the failed sub-batch is generated again (sample i depends only on
(seed, i), so the images are the same ones) with the NFE counted by the failed attempt taken back.
"""

from __future__ import annotations

import io
import time
from contextlib import nullcontext
from typing import Any, Callable

import torch
from PIL import Image
from tqdm import tqdm

from bench.cell import Cell
from bench.data.base import prompts_for
from bench.timing import NFECounter, sync

DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}


class CellError(RuntimeError):
    """A problem with one cell's generation or scoring (recorded; the sweep goes on)."""


def resolve_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    dev = torch.device(name)
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise RuntimeError(f"device {name!r} requested but CUDA is not available")
    return dev


def check_images(images: Any, n: int, where: str) -> torch.Tensor:
    if not torch.is_tensor(images):
        raise CellError(f"{where}: generator returned {type(images).__name__}, expected a uint8 tensor")
    if images.dtype != torch.uint8:
        raise CellError(f"{where}: generator returned dtype {images.dtype}, expected torch.uint8 NHWC")
    if images.dim() != 4 or images.shape[0] != n or images.shape[-1] != 3:
        raise CellError(f"{where}: generator returned shape {tuple(images.shape)}, expected ({n}, H, W, 3)")
    return images


def png_bytes(image: torch.Tensor) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(image.cpu().numpy()).save(buf, format="PNG")
    return buf.getvalue()


def generate(gen, cell: Cell, labels: torch.Tensor, sample_ids: torch.Tensor) -> Any:
    """The generator's call for a cell, under the suite's dtype (autocast unless float32): bulk pass and latency
    measurement go through here alike, so both time the same computation."""
    device_type = next((p.device.type for m in gen.networks() for p in m.parameters()), "cpu")
    ctx = torch.autocast(device_type, dtype=DTYPES[cell.dtype]) if cell.dtype != "float32" else nullcontext()
    with ctx:
        return gen.generate(labels, sample_ids, cell.settings())


def is_out_of_memory(err: BaseException) -> bool:
    """CUDA/MPS/CPU allocator failures: the ones a smaller batch can fix."""
    if isinstance(err, torch.OutOfMemoryError):
        return True
    msg = str(err).lower()
    return isinstance(err, RuntimeError) and ("out of memory" in msg or "can't allocate memory" in msg)


def _free_memory(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.empty_cache()


class BatchBackoff:
    """Generates a batch in sub-batches of the largest size that fits: on out-of-memory the size halves and the
    failed sub-batch is generated again (sample i depends only on (seed, i), so the images are the same ones), and
    the NFE counted by the failed attempt is taken back. The size never grows again within the cell."""

    def __init__(self, size: int, counter: NFECounter | None = None):
        self.size, self.counter, self.backoffs = size, counter, []

    def __call__(self, gen, cell: Cell, ys: torch.Tensor, ids: torch.Tensor, device: torch.device) -> torch.Tensor:
        where = f"model {cell.model.id!r}"
        parts, i = [], 0
        while i < len(ids):
            b = self.size
            rows = self.counter.rows if self.counter is not None else 0
            try:
                part = generate(gen, cell, ys[i:i + b], ids[i:i + b])
            except Exception as e:
                if not is_out_of_memory(e) or self.size == 1:
                    raise
                if self.counter is not None:
                    self.counter.rows = rows
                _free_memory(device)
                self.size = max(1, self.size // 2)
                self.backoffs.append(self.size)
                continue
            parts.append(check_images(part, len(ids[i:i + b]), where))
            i += b
        return parts[0] if len(parts) == 1 else torch.cat(parts)


def stream_cell(gen, cell: Cell, dataset, accumulators: list, labels: torch.Tensor, sample_ids: torch.Tensor,
                device: torch.device, keep: int = 0, bar: tqdm | None = None,
                after_first: Callable[[], None] | None = None) -> dict[str, Any]:
    """Generate ``sample_ids`` in batches and feed every accumulator; returns counts, NFE and kept samples.
    Generation backs off to smaller sub-batches on out-of-memory (see `BatchBackoff`). ``after_first`` is called once,
    when the first batch is generated and before any accumulator sees it (the runner waits there for the previous
    cell's statistics: only the first batch's generation, which bulk throughput leaves out, runs beside them; the
    wait is counted in neither generation nor scoring seconds)."""
    counter = NFECounter()
    backoff = BatchBackoff(cell.batch_size, counter)
    kept: list[tuple[int, int, bytes]] = []
    batch_times: list[tuple[int, float]] = []
    gen_s = score_s = 0.0
    with counter.watch(gen.networks()):
        for start in range(0, len(sample_ids), cell.batch_size):
            ids = sample_ids[start:start + cell.batch_size]
            ys = labels[start:start + cell.batch_size]
            t0 = time.perf_counter()
            images = backoff(gen, cell, ys, ids, device)
            sync(device)
            t1 = time.perf_counter()
            gen_s += t1 - t0
            batch_times.append((len(ids), t1 - t0))
            if start == 0 and after_first is not None:
                after_first()                          # not timed: neither generation nor scoring
                t1 = time.perf_counter()
            if start == 0:
                size = tuple(images.shape[1:3])
            elif tuple(images.shape[1:3]) != size:
                raise CellError(f"model {cell.model.id!r}: image size changed mid-cell from {size[0]}x{size[1]} "
                                f"to {images.shape[1]}x{images.shape[2]}")
            prompts = prompts_for(dataset, ys, ids)
            for acc in accumulators:
                acc.update(images, ys, prompts, ids)
            score_s += time.perf_counter() - t1
            for j in range(min(len(ids), max(0, keep - len(kept)))):
                kept.append((int(ids[j]), int(ys[j]), png_bytes(images[j])))
            if bar is not None:
                bar.update(len(ids))
    return {"nfe": counter.per_image(len(sample_ids)), "nfe_rows": counter.rows, "generate_s": gen_s,
            "score_s": score_s, "kept": kept,
            "batch_times": batch_times, "generation_batch": backoff.size, "backoffs": backoff.backoffs}
