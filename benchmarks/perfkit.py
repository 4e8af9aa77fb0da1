"""Shared pieces of the `make perf` suite: the measured cell, the device it runs on, timing, the summary table.

Every figure is a ratio measured within one run (absolute seconds on a shared machine are noise). Each test adds
rows to :data:`SUMMARY`; ``conftest.py`` prints the table at the end and writes ``results/perf/summary.md``.
Targets are reported as met / not met; they fail the run only with ``STEPBENCH_PERF_STRICT=1`` (correctness checks,
such as identical metric values, always fail it).
"""

from __future__ import annotations

import os
import platform
import statistics
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import torch

from bench.runner import resolve_device

STRICT = os.environ.get("STEPBENCH_PERF_STRICT") == "1"
OUT_DIR = Path(os.environ.get("STEPBENCH_PERF_OUT", "results/perf"))
DEFAULT_N = 500                 # samples per cell in the default suite (suites/mini.yaml)
# Samples in the measured cell (the default suite's); a loaded machine can run the same ratios on fewer.
N = int(os.environ.get("STEPBENCH_PERF_N", str(DEFAULT_N)))


def batch_for(n: int) -> int:
    """The generation batch of a cell of ``n`` samples: the default suite's 250, or n / 2 for fewer than 500: two or
    more generation batches, so that throughput comes from the bulk pass (``throughput: bulk``) as in the default
    suite (with one batch the Runner times extra batches apart)."""
    return 250 if n >= 500 else max(1, n // 2)


BATCH = batch_for(N)
# Sample counts of the cached-usual-workflow ratios (first-class rows with a target, ``test_vs_usual_workflow``).
USUAL_NS = tuple(int(x) for x in os.environ.get("STEPBENCH_PERF_USUAL_NS", "250,500,2000").split(","))

# The measured cell: one cell of the default suite (suites/mini.yaml), mini-sit 4 Euler steps at CFG 1.5
# (2 network evaluations per step) on mini-val, 500 samples (STEPBENCH_PERF_N), with the default suite's metric options.
METRICS = """
metrics:
  fid_is_kid: {feature_extractor: mini-classifier, kid_subset_size: 250, kid_subsets: 50, batch_size: 500}
  clip_score: {backend: mini, model: clip, batch_size: 500}
  pickscore: {backend: mini, model: pick, batch_size: 500}
"""


def suite_text(n: int = N, size: int = 1000, seeds: list[int] | int = 42, steps: int = 4, cfg: float = 1.5,
               name: str = "perf", device: str = "auto", model: str = "mini-sit",
               datasets: tuple[str, ...] = ("mini-val",), latency: str = "per_setting",
               batch: int | None = None) -> str:
    """A suite of default-suite cells: ``model`` (a mini adapter) at one setting on ``datasets``; ``batch``: the
    generation batch (default `BATCH`, the one of the run's N)."""
    solver = ", solver: [euler]" if model == "mini-sit" else ""
    sets = ", ".join(f"{{id: {d}, options: {{size: {size}}}}}" for d in datasets)
    return f"""
suite: {name}
seed: {seeds}
batch_size: {BATCH if batch is None else batch}
device: {device}
samples: {{plan: per_reference, n: {n}}}
keep_samples: 8
timing: {{warmup: 1, repeats: 3, throughput: bulk, latency: {latency}}}
datasets: [{sets}]
{METRICS}
models: [{{id: {model}, adapter: {model}, steps: [{steps}], cfg: [{cfg}]{solver}}}]
"""


def device() -> torch.device:
    """What `make perf` runs on: the GPU when one is present (the suites' ``device: auto``)."""
    return resolve_device("auto")


def cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.lower().startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def device_label(dev: torch.device | None = None) -> str:
    """The device a figure is from: the GPU's name, or the CPU model with cores and torch threads."""
    dev = dev or device()
    if dev.type == "cuda":
        return torch.cuda.get_device_name(dev)
    return f"{cpu_model()} ({os.cpu_count()} cores, {torch.get_num_threads()} torch threads)"


def sync(dev: torch.device) -> None:
    if dev.type == "cuda":
        torch.cuda.synchronize(dev)


def timed(fn: Callable[[], object], dev: torch.device) -> float:
    sync(dev)
    t0 = time.perf_counter()
    fn()
    sync(dev)
    return time.perf_counter() - t0


def rounds_of(fns: dict[str, Callable[[], object]], rounds: int, dev: torch.device) -> dict[str, list[float]]:
    """Seconds of each function in each of ``rounds`` rounds, the functions interleaved round by round so that a
    noisy neighbour or a drifting clock slows the functions of one round alike; every other round runs them in the
    reverse order, so that no function always follows the same one (a warm cache or a slow drift would then favour
    one side of a ratio in every round)."""
    times: dict[str, list[float]] = {k: [] for k in fns}
    order = list(fns)
    for r in range(rounds):
        for k in (order if r % 2 == 0 else order[::-1]):
            times[k].append(timed(fns[k], dev))
    return times


def paired_ratio(times: dict[str, list[float]], num: str, den: str) -> float:
    """Median over rounds of ``num / den`` measured in the same round: on a machine whose speed drifts by 10-20%
    over seconds (a shared VM), a ratio of neighbours is steadier than a ratio of minima taken in different rounds."""
    return statistics.median(a / b for a, b in zip(times[num], times[den]))


@dataclass
class Row:
    section: str
    measure: str
    value: str
    target: str
    met: bool | None
    device: str
    note: str = ""


@dataclass
class Summary:
    rows: list[Row] = field(default_factory=list)

    def add(self, section: str, measure: str, value: float | str, target: str = "", met: bool | None = None,
            note: str = "", dev: torch.device | None = None) -> None:
        text = f"{value:.3g}" if isinstance(value, float) else str(value)
        self.rows.append(Row(section, measure, text, target, met, device_label(dev), note))

    def markdown(self) -> str:
        head = "| section | measure | value | target | met | device | note |\n|---|---|---|---|---|---|---|\n"
        flag = {True: "yes", False: "**no**", None: ""}
        return head + "".join(f"| {r.section} | {r.measure} | {r.value} | {r.target} | {flag[r.met]} | {r.device} | "
                              f"{r.note} |\n" for r in self.rows)


SUMMARY = Summary()


def target(ok: bool, what: str) -> None:
    """A performance target: reported in the summary; fails the test only in strict mode."""
    if STRICT:
        assert ok, f"performance target not met: {what}"
