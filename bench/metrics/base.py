"""The `Metric` base class, the Accumulator protocol and the per-sample accumulator every metric here streams into.

Accumulators are mergeable: shards of a cell combine exactly. Each keeps per-sample rows (features or scores)
tagged with their sample ids; ``result()`` orders rows by sample id before any statistic, so the numbers do
not depend on batch size, arrival order or shard split.

Networks on CPU and GPU give a row slightly different floats in a batch of another shape (BLAS and conv kernels
pick their blocking by shape), but the same bits in any batch of the same shape. So metric networks run on
batches of exactly one shape: `fixed_shape_forward` pads the last chunk, and `PerSampleAccumulator` with
``chunk`` buffers incoming images until a full chunk is there (little padding whatever the generator's batch).
Where a network's kernels give the padded batch's bits at a short chunk's own shape (checked once per shape on real
rows, `bench.metrics.remainder`), the last chunk skips its padding: same bits, less work.

Metric networks run in float32 exactly: `strict_numerics` turns TF32 off (cuDNN convolutions and CUDA matmuls,
float32 matmul precision 'highest') around every forward of `fixed_shape_forward` and `PerSampleAccumulator`, and
restores the caller's flags afterwards, so Inception / CLIP / DINOv2 features on an Ampere-or-newer GPU match the
float32 reference. Generation keeps the process's flags (recorded per run: `bench.provenance.environment`). A suite
with ``numerics: tf32`` opts out: its cells run under `numerics_mode("tf32")` (TF32 for metric forwards and
generation), carry ``numerics`` in their config and key, and their reference statistics are cached apart.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from contextlib import contextmanager
from contextvars import ContextVar
from pathlib import Path
from typing import Any, Callable, ClassVar, Iterator, Protocol

import torch
from pydantic import BaseModel

from bench.metrics import remainder
from bench.options import NoOptions, OptionsError, StrictOptions, parse, validated
from bench.outputs import Output, companion
from bench.outputs import find as find_output

__all__ = ["Accumulator", "Metric", "MetricError", "Output", "StrictOptions", "companion", "fixed_shape_forward",
           "PerSampleAccumulator", "STRICT_NUMERICS", "TF32_NUMERICS", "current_mode", "numerics_flags",
           "numerics_mode", "strict_numerics"]


class Accumulator(Protocol):
    """What a metric streams images into. ``state()`` / ``add_state()`` carry a shard's rows to the driver, where
    they merge exactly (rows are ordered by sample id before any statistic)."""

    def update(self, images: torch.Tensor, labels: torch.Tensor, prompts: list[str],
               sample_ids: torch.Tensor) -> None: ...

    def state(self) -> dict[str, Any]: ...

    def add_state(self, state: dict[str, Any]) -> None: ...

    def result(self) -> dict[str, float]: ...


class Metric(ABC):
    """Base class of every metric. Class attributes:

    - ``name`` (the registry name), ``version`` (code version: in every cell key);
    - ``Options``: a `bench.options.StrictOptions` model (unknown keys and wrong types refused at validate);
    - ``outputs``: the `bench.outputs.Output` of every value ``result()`` can return, declared once here and
      stored beside each value, so reports read names, directions, labels and units from the store;
    - ``per_sample``: accumulator row name -> the stored metric name of its per-sample value (one number per
      sample, e.g. clip_score's ``{"score": "clip_score"}``): those rows go to the store's ``sample_scores``
      table (`bench.persample`), so the metric's mean is the mean of its stored rows. Empty: no per-sample value;
    - ``needs_reference``: False for metrics that score each generated image on its own (CLIP Score, PickScore,
      ImageReward): they run on prompt-only sets (no reference images), where the others are left out of the cell.

    ``__init__`` receives options already validated (defaults filled in) as ``self.opt`` (a dict) and
    ``self.options`` (the typed object).
    """

    name: ClassVar[str] = ""
    version: ClassVar[str] = ""
    Options: ClassVar[type[BaseModel]] = NoOptions
    outputs: ClassVar[tuple[Output, ...]] = ()
    per_sample: ClassVar[dict[str, str]] = {}
    needs_reference: ClassVar[bool] = True

    def __init__(self, options: dict[str, Any] | None, device: torch.device, cache_dir: Path):
        try:
            self.options = parse(self.Options, options)
        except OptionsError as e:
            raise MetricError(f"{self.name}: {e}") from None
        self.opt: dict[str, Any] = self.options.model_dump(mode="python")
        self.device, self.cache_dir = device, Path(cache_dir)

    @classmethod
    def validate_options(cls, options: dict[str, Any] | None) -> dict[str, Any]:
        """Options with defaults filled in (raises `bench.options.OptionsError` naming every bad key)."""
        return validated(cls.Options, options)

    @classmethod
    def requirements(cls, options: dict[str, Any]) -> list:
        """What `bench run` checks is on this machine before it opens the store, for these validated options
        (`bench.preflight.Requirement`s: weights files, hub ids, optional packages). Default: nothing."""
        return []

    @classmethod
    def output(cls, value_name: str) -> Output:
        """The declared output of a value name; a value a metric did not declare is a bug in that metric."""
        out = find_output(cls.outputs, value_name)
        if out is None:
            raise MetricError(f"metric {cls.name!r} returned {value_name!r}, which its outputs do not declare")
        return out

    def describe(self) -> dict[str, Any]:
        """Implementation and options, stored with every row (extractor, weights hash, clamp, splits, ...)."""
        return {"code": self.version, **self.opt}

    def version_key(self) -> str:
        """Everything about this metric that changes its numbers, for cell keys (code version + weights hash)."""
        return self.version

    @abstractmethod
    def accumulator(self, dataset) -> Accumulator: ...


class MetricError(ValueError):
    pass


# What metric forwards run under: float32 exactly (no TF32 in matmuls or cuDNN convolutions).
STRICT_NUMERICS = {"matmul_allow_tf32": False, "cudnn_allow_tf32": False, "float32_matmul_precision": "highest"}
# What a suite with ``numerics: tf32`` runs metric forwards and generation under (Ampere-or-newer GPUs: faster;
# features drift from the float32 reference, so such cells and their reference statistics are keyed apart).
TF32_NUMERICS = {"matmul_allow_tf32": True, "cudnn_allow_tf32": True, "float32_matmul_precision": "high"}
MODES = {"strict": STRICT_NUMERICS, "tf32": TF32_NUMERICS}
_MODE: ContextVar[str] = ContextVar("stepbench_numerics", default="strict")


def current_mode() -> str:
    """The numerics mode of the cell being computed: "strict" unless inside ``numerics_mode("tf32")``."""
    return _MODE.get()


@contextmanager
def numerics_mode(mode: str | None) -> Iterator[None]:
    """Compute a cell under ``mode`` (None = "strict"): metric forwards (`strict_numerics`) use that mode's flags,
    and in "tf32" generation runs with them too; the caller's flags and mode are restored on exit."""
    mode = mode or "strict"
    if mode not in MODES:
        raise ValueError(f"numerics must be one of {sorted(MODES)}, got {mode!r}")
    token = _MODE.set(mode)
    before = numerics_flags()
    if mode != "strict":
        _set_flags(MODES[mode])
    try:
        yield
    finally:
        _set_flags(before)
        _MODE.reset(token)


def numerics_flags() -> dict[str, Any]:
    """This process's float32 precision flags now, named as in `STRICT_NUMERICS`."""
    return {"matmul_allow_tf32": bool(torch.backends.cuda.matmul.allow_tf32),
            "cudnn_allow_tf32": bool(torch.backends.cudnn.allow_tf32),
            "float32_matmul_precision": torch.get_float32_matmul_precision()}


def _set_flags(flags: dict[str, Any]) -> None:
    torch.set_float32_matmul_precision(flags["float32_matmul_precision"])   # sets matmul TF32 too: so first
    torch.backends.cuda.matmul.allow_tf32 = flags["matmul_allow_tf32"]
    torch.backends.cudnn.allow_tf32 = flags["cudnn_allow_tf32"]


@contextmanager
def strict_numerics() -> Iterator[None]:
    """`STRICT_NUMERICS` inside (`TF32_NUMERICS` when the cell's suite opted in: `numerics_mode`), the caller's
    flags restored on exit (also when the forward raises)."""
    before = numerics_flags()
    _set_flags(MODES[current_mode()])
    try:
        yield
    finally:
        _set_flags(before)


def fixed_shape_forward(fn: Callable[[torch.Tensor], Any], x: torch.Tensor, batch_size: int,
                        same_bits_key: Any = None) -> list[torch.Tensor]:
    """``fn`` over ``x`` in chunks of exactly ``batch_size`` (the last one zero-padded and the padding dropped), so
    each row's output does not depend on how many rows came with it. ``fn`` returns a tensor or a tuple of them;
    the result is a list with one concatenated tensor per output. ``same_bits_key``: a hashable identity of
    ``fn``'s computation (equal keys: the same function; a metric's ``forward_identity()``); given, a short last
    chunk runs without padding once its shape has been seen to give the padded batch's bits
    (`bench.metrics.remainder`: checked on real rows, the bits unchanged)."""
    with strict_numerics():                # float32 exactly: no TF32 (see the module docstring)
        return _fixed_shape_forward(fn, x, batch_size, same_bits_key)


def _fixed_shape_forward(fn, x: torch.Tensor, batch_size: int, key: Any = None) -> list[torch.Tensor]:
    outs: list[list[torch.Tensor]] = []
    for chunk in x.split(batch_size):
        if len(chunk) < batch_size:
            y = remainder.short_chunk(fn, chunk, batch_size, key, current_mode())
        else:
            y = remainder.as_list(fn(chunk))
        if not outs:
            outs = [[] for _ in y]
        for acc, t in zip(outs, y):
            acc.append(t[:len(chunk)])
    return [torch.cat(o) for o in outs]


class PerSampleAccumulator:
    """Collects named per-sample tensors (rows) on the CPU; ``finalize(rows_sorted, labels_sorted)`` makes the
    result. ``embed(images, labels, prompts)`` maps a batch to a dict of (B, ...) tensors. With ``chunk``, images
    are buffered and embedded ``chunk`` at a time (the rest at ``result()``), so the network sees full batches."""

    def __init__(self, embed: Callable[..., dict[str, torch.Tensor]],
                 finalize: Callable[[dict[str, torch.Tensor], torch.Tensor], dict[str, float]],
                 chunk: int | None = None):
        self._embed, self._finalize, self.chunk = embed, finalize, chunk
        self.rows: dict[str, list[torch.Tensor]] = {}
        self.ids: list[torch.Tensor] = []
        self.labels: list[torch.Tensor] = []
        self.pending: list[tuple[torch.Tensor, torch.Tensor, list[str], torch.Tensor]] = []

    def update(self, images, labels, prompts, sample_ids) -> None:
        if self.chunk is None:
            return self._add(images, labels, prompts, sample_ids)
        self.pending.append((images, labels.detach().cpu(), list(prompts), sample_ids.detach().cpu()))
        if sum(len(p[0]) for p in self.pending) >= self.chunk:
            self._flush(final=False)

    def _flush(self, final: bool) -> None:
        if not self.pending:
            return
        devs = {p[0].device for p in self.pending}
        dev = devs.pop() if len(devs) == 1 else torch.device("cpu")
        images = torch.cat([p[0].to(dev) for p in self.pending])
        labels = torch.cat([p[1] for p in self.pending])
        prompts = [q for p in self.pending for q in p[2]]
        ids = torch.cat([p[3] for p in self.pending])
        full = len(images) if final else len(images) // self.chunk * self.chunk
        if full:
            self._add(images[:full], labels[:full], prompts[:full], ids[:full])
        self.pending = [(images[full:], labels[full:], prompts[full:], ids[full:])] if full < len(images) else []

    def _add(self, images, labels, prompts, sample_ids) -> None:
        with strict_numerics():            # also for a plugin's embed that does not use fixed_shape_forward
            out = self._embed(images, labels, prompts)
        for k, v in out.items():
            if len(v) != len(sample_ids):
                raise MetricError(f"metric produced {len(v)} rows of {k!r} for {len(sample_ids)} images")
            self.rows.setdefault(k, []).append(v.detach().cpu())
        self.ids.append(sample_ids.detach().cpu().long())
        self.labels.append(labels.detach().cpu().long())

    def state(self) -> dict[str, Any]:
        """The accumulated rows only (CPU tensors, no networks): what a shard ships back to be merged.
        Buffered images are embedded first."""
        self._flush(final=True)
        return {"rows": self.rows, "ids": self.ids, "labels": self.labels}

    def add_state(self, state: dict[str, Any]) -> None:
        for k, v in state["rows"].items():
            self.rows.setdefault(k, []).extend(v)
        self.ids.extend(state["ids"])
        self.labels.extend(state["labels"])

    def merge(self, other: "PerSampleAccumulator") -> "PerSampleAccumulator":
        out = PerSampleAccumulator(self._embed, self._finalize)
        out.add_state(self.state())
        out.add_state(other.state())
        return out

    def sorted_state(self) -> dict[str, Any]:
        """The merged state with each row concatenated and ordered by sample id (the order ``result()`` computes
        in): {"rows": {name: Tensor}, "ids": Tensor, "labels": Tensor}, the tensors as accumulated (dtype kept).
        Buffered images are embedded first; duplicate ids are refused as in ``result()``. ``add_state`` of
        ``{"rows": {k: [v]}, "ids": [ids], "labels": [labels]}`` into a fresh accumulator gives the same result."""
        self._flush(final=True)
        if not self.ids:
            return {"rows": {k: torch.empty(0) for k in self.rows}, "ids": torch.empty(0, dtype=torch.long),
                    "labels": torch.empty(0, dtype=torch.long)}
        ids = torch.cat(self.ids)
        order = torch.argsort(ids, stable=True)
        if len(torch.unique(ids)) != len(ids):
            raise MetricError("duplicate sample ids: the same sample was accumulated twice (overlapping shards?)")
        return {"rows": {k: torch.cat(v)[order] for k, v in self.rows.items()}, "ids": ids[order],
                "labels": torch.cat(self.labels)[order]}

    def count(self) -> int:
        return int(sum(len(i) for i in self.ids) + sum(len(p[3]) for p in self.pending))

    def result(self) -> dict[str, float]:
        self._flush(final=True)
        if not self.ids:
            raise MetricError("no samples were accumulated")
        state = self.sorted_state()
        return self._finalize(state["rows"], state["labels"])
