"""The feature store: a cell's per-sample accumulator rows kept on disk, so its set metrics can be recomputed later
(`bench rescore`, paired bootstraps) without generating a sample again. Written for suites with
``keep_features: true`` (`bench.runner.Runner.finish_cell`).

Layout: ``<root>/<cell key>/<metric>.safetensors`` with ``root`` = ``<folder of the store>/features``. The cell key
is a content key (`bench.cell.Cell.key`), so the folder is content-addressed: equal keys mean equal rows.

One file holds a `PerSampleAccumulator`'s merged state, each row concatenated and ordered by sample id
(`PerSampleAccumulator.sorted_state`): tensors ``rows.<name>`` in the dtype they were accumulated in (float32
network features, float64 scores: exact, so a metric recomputed from them equals the stored value bit for bit),
``ids`` and ``labels`` (int64); the safetensors metadata ``stepbench`` is a JSON object (metric name,
version_key, options, dataset fingerprint, n, `FORMAT`).

Invariants: `save` is atomic (a temp file beside the target, then ``os.replace``): a reader sees the old file,
the new one or none, never a partial one. The runner saves before the cell's store transaction and `discard`s
the files when that transaction fails, so features never outlive a failed write; a process killed between the
rename and the commit leaves the file of a key not stored, which is the very content that key's re-run writes.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from safetensors import SafetensorError, safe_open

from bench.tempfiles import temp_name

FORMAT = "stepbench-features-1"
SUFFIX = ".safetensors"
ROW = "rows."


class FeaturesError(ValueError):
    """A features file that is missing or unreadable: one line naming it."""


def root_for(db: str | Path) -> Path:
    """The feature store of a result store: ``<folder of the store>/features``."""
    return Path(db).parent / "features"


def path_for(root: str | Path, key: str, metric: str) -> Path:
    """Where the features of ``metric`` in the cell ``key`` live."""
    if not key or "/" in key or key.startswith(".") or not metric or "/" in metric or metric.startswith("."):
        raise FeaturesError(f"not a cell key / metric name for the feature store: {key!r} / {metric!r}")
    return Path(root) / key / f"{metric}{SUFFIX}"


def save(root: str | Path, key: str, metric: str, state: dict[str, Any], meta: dict[str, Any]) -> Path:
    """Write one metric's sorted state (``{"rows": {name: Tensor}, "ids": Tensor, "labels": Tensor}``) and
    ``meta`` (JSON-able) atomically; returns the file's path. Replaces an earlier file of the same key."""
    path = path_for(root, key, metric)
    n = len(state["ids"])
    tensors = {ROW + name: t.detach().cpu().contiguous() for name, t in state["rows"].items()}
    for name, t in tensors.items():
        if len(t) != n:
            raise FeaturesError(f"{path}: row {name[len(ROW):]!r} has {len(t)} entries for {n} sample ids")
    tensors["ids"] = state["ids"].detach().cpu().long().contiguous()
    tensors["labels"] = state["labels"].detach().cpu().long().contiguous()
    info = {"format": FORMAT, "metric": metric, "n": n, **meta}
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = temp_name(path)
    try:
        from safetensors.torch import save_file  # torch only when writing: the report and merge stay light
        save_file(tensors, str(tmp), metadata={"stepbench": json.dumps(info, sort_keys=True, default=str)})
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
    return path


def load(root: str | Path, key: str, metric: str) -> tuple[dict[str, Any], dict[str, Any]]:
    """(state, meta) of a saved file: the state as `save` got it (rows by name, ids, labels)."""
    path = path_for(root, key, metric)
    if not path.is_file():
        raise FeaturesError(f"{path}: no kept features of {metric!r} for cell {key[:12]} (run the suite with "
                            f"keep_features: true)")
    try:
        from safetensors.torch import load_file
        tensors = load_file(str(path))
        with safe_open(str(path), framework="pt") as f:
            meta = json.loads((f.metadata() or {}).get("stepbench", "{}"))
    except (SafetensorError, OSError, ValueError) as e:
        raise FeaturesError(f"{path}: unreadable features file ({e})") from None
    if meta.get("format") != FORMAT or "ids" not in tensors or "labels" not in tensors:
        raise FeaturesError(f"{path}: not a stepbench features file of format {FORMAT}")
    rows = {name[len(ROW):]: t for name, t in tensors.items() if name.startswith(ROW)}
    return {"rows": rows, "ids": tensors["ids"], "labels": tensors["labels"]}, meta


def available(root: str | Path, key: str) -> list[str]:
    """The metric names with kept features for cell ``key`` (sorted; empty when none)."""
    folder = Path(root) / key
    if not key or not folder.is_dir():
        return []
    return sorted(p.name[:-len(SUFFIX)] for p in folder.iterdir()
                  if p.is_file() and p.name.endswith(SUFFIX) and not p.name.startswith("."))


def discard(root: str | Path, key: str, metrics) -> None:
    """Remove the files of ``metrics`` for ``key`` (and the key's folder once empty): a failed store write's."""
    for metric in metrics:
        path_for(root, key, metric).unlink(missing_ok=True)
    try:
        (Path(root) / key).rmdir()
    except OSError:
        pass                            # not empty (other metrics' files) or already gone


def as_add_state(state: dict[str, Any]) -> dict[str, Any]:
    """A loaded state in the shape `PerSampleAccumulator.add_state` takes (one tensor per list)."""
    return {"rows": {k: [v] for k, v in state["rows"].items()}, "ids": [state["ids"]], "labels": [state["labels"]]}


def nbytes(root: str | Path, key: str) -> int:
    """Bytes on disk of a cell's kept features (0 when none)."""
    return sum(path_for(root, key, m).stat().st_size for m in available(root, key))


__all__ = ["FORMAT", "FeaturesError", "as_add_state", "available", "discard", "load", "nbytes", "path_for",
           "root_for", "save"]
