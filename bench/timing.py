"""NFE counting (forward hooks) and latency measurement (warm-up, device sync, median and IQR).

Batch-1 latency follows the robust rule of `bench.latency_rule` (`measure_stable`: timed until IQR / median
reaches a target, bounded in calls and seconds); throughput and the benchmarks use the fixed rule (`measure`).

NFE is counted, not assumed: every forward call of a generator's networks over B rows adds B evaluations,
so a batched cond+uncond CFG call counts 2 per image and an adaptive solver counts what it really did.
"""

from __future__ import annotations

import time
from contextlib import contextmanager
from typing import Callable, Iterator

import torch
from torch import nn

from bench.latency_rule import summarize, time_until_stable

__all__ = ["NFECounter", "sync", "summarize", "measure", "measure_stable"]


class NFECounter:
    def __init__(self) -> None:
        self.rows = 0

    def _hook(self, module, args, kwargs):
        x = args[0] if args else next((v for v in kwargs.values() if torch.is_tensor(v)), None)
        if x is not None and torch.is_tensor(x) and x.dim() > 0:
            self.rows += int(x.shape[0])

    @contextmanager
    def watch(self, modules: list[nn.Module]) -> Iterator["NFECounter"]:
        handles = [m.register_forward_pre_hook(self._hook, with_kwargs=True) for m in modules]
        try:
            yield self
        finally:
            for h in handles:
                h.remove()

    def per_image(self, images: int) -> float:
        return self.rows / images if images else 0.0


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def measure(fn: Callable[[int], None], batch: int, warmup: int, repeats: int, device: torch.device) -> dict[str, float]:
    """Time ``fn(batch)`` after ``warmup`` untimed calls; per-image seconds as median and IQR."""
    for _ in range(warmup):
        fn(batch)
    sync(device)
    per_image = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn(batch)
        sync(device)
        per_image.append((time.perf_counter() - t0) / batch)
    return summarize(per_image)


def measure_stable(fn: Callable[[int], None], batch: int, *, warmup: int, repeats: int, max_repeats: int,
                   target: float | None, max_seconds: float, device: torch.device,
                   clock: Callable[[], float] = time.perf_counter) -> dict[str, float]:
    """Time ``fn(batch)`` by `bench.latency_rule.time_until_stable`, with device synchronisation after every call;
    per-image seconds (median, IQR), the count of timed calls and whether the target was reached."""
    out = time_until_stable(lambda: fn(batch), warmup=warmup, repeats=repeats, max_repeats=max_repeats,
                            target=target, max_seconds=max_seconds, sync=lambda: sync(device), clock=clock)
    return {**out, "median_s": out["median_s"] / batch, "iqr_s": out["iqr_s"] / batch}
