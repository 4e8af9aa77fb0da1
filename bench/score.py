"""`bench score GENERATED --ref REFERENCE`: metrics of images you already have, as one cell of a suite.

Nothing here computes a metric. A score is an in-memory suite of one cell, parsed and validated like any suite file
(`bench.suite.Suite.parse`: a misspelt metric option is the same did-you-mean line): the ``samples`` adapter reads
GENERATED (a folder of images or an ADM ``.npz``), the reference is a registered dataset or, for a path, the
``imagefiles`` / ``npz`` / ``imagefolder`` source, and the driver's pieces run it: without a store, the runner's
engine (``run_shard`` + ``finish``); with one, `Runner.run` (keys, skip if stored, one transaction). So the values,
the reference-statistics cache and the provenance are a suite's.

What each metric needs: FID, IS, KID, precision/recall and FD-DINOv2 need no labels. CLIP Score and PickScore need
a prompt per image: ``prompts`` (a file, line i for sample i in the samples adapter's order: sorted file names, or
``.npz`` rows; the reference is wrapped by the ``prompted`` source) or ``labels`` (the class ids an ``.npz``
carries in ``arr_1`` / ``labels``, named by the reference's classes and prompt template).
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from bench import registry
from bench.data.base import DatasetError
from bench.data.decode import EXTS

PROMPT_METRICS = ("clip_score", "pickscore", "image_reward")
SOURCES = {"imagefiles": "bench.data.image_files:ImageFiles", "npz": "bench.data.image_files:NpzImages",
           "prompted": "bench.data.prompted:Prompted"}


class ScoreError(ValueError):
    """A request that cannot be scored as given (one line, exit code 2)."""


class ScoreFailed(RuntimeError):
    """Scoring started and failed (a metric's weights missing, an unreadable file, ...): one line, exit code 1."""


def register_sources() -> None:
    """The reference sources `bench score` opens paths with: built in (bench/registry.py), checked here."""
    for name in SOURCES:
        registry.DATASETS.check(name)


@dataclass(frozen=True)
class Request:
    generated: str                         # a folder of images or an .npz
    reference: str                         # a folder, an .npz or a registered dataset name
    metrics: tuple[str, ...] = ("fid_is_kid",)
    options: dict[str, dict[str, Any]] = field(default_factory=dict)   # metric name or "ref" -> options
    prompts: str | None = None
    labels: bool = False
    resolution: int | None = None          # decode folders at this size (default: as stored)
    batch_size: int = 64
    device: str = "auto"
    name: str | None = None                # the model id (default: GENERATED's name)


@dataclass
class Outcome:
    """What a score gave: the cell, its key, its values (name -> (value, Output)) and whether it was stored now
    (``"stored"``), found stored (``"already stored"``) or not stored (``None``, no store)."""
    cell: Any
    key: str
    values: dict[str, tuple[float, Any]]
    n: int
    reference_images: int
    stored: str | None = None


# -- GENERATED ------------------------------------------------------------------------------------------------
def generated_count(path: Path) -> tuple[int, Path | None]:
    """(images, the .npz when it carries labels) of GENERATED, counted as the samples adapter reads it (a folder's
    own files with an image extension; an .npz's arr_0 rows, from its header)."""
    if path.suffix == ".npz" and path.is_file():
        from bench.data.image_files import npz_header
        shape, _, names = npz_header(path)
        return (shape[0] if shape else 0), (path if {"arr_1", "labels"} & names else None)
    if path.is_dir():
        return sum(p.suffix.lower() in EXTS for p in path.iterdir()), None
    if path.exists():
        raise ScoreError(f"{path}: GENERATED must be a folder of images or an .npz file (arr_0: N x H x W x 3 uint8)")
    if path.name in registry.DATASETS:
        raise ScoreError(f"{path}: a registered dataset can be the --ref, not GENERATED (a folder of images or an "
                         ".npz)")
    raise ScoreError(f"{path}: no such folder or .npz file")


def stored_labels(path: Path):
    import numpy as np
    with np.load(path, allow_pickle=False) as z:
        return np.asarray(z["arr_1"] if "arr_1" in z else z["labels"])


# -- REFERENCE ------------------------------------------------------------------------------------------------
def reference_entry(ref: str, resolution: int | None, extra: dict[str, Any]) -> dict[str, Any]:
    """The suite's dataset entry for --ref: a registered name as it is, a folder as ``imagefiles`` (its own image
    files) or ``imagefolder`` (class sub-folders), an .npz as ``npz``."""
    p = Path(ref).expanduser()
    sized = {"resolution": resolution} if resolution is not None else {}
    if p.exists():
        ident = p.stem or "reference"
        if p.is_file() and p.suffix == ".npz":
            return {"id": ident, "source": "npz", "options": {"path": str(p.resolve()), **extra}}
        if p.is_dir():
            from bench.data.image_files import top_level_images
            if top_level_images(p):
                source = "imagefiles"
            elif any(d.is_dir() and top_level_images(d) for d in p.iterdir()):
                source, sized = "imagefolder", {"resolution": resolution}     # class folders: labelled
            else:
                raise ScoreError(f"--ref {ref}: no image files ({', '.join(sorted(EXTS))}) in the folder or in "
                                 f"class sub-folders")
            return {"id": ident, "source": source, "options": {"root": str(p.resolve()), **sized, **extra}}
        raise ScoreError(f"--ref {ref}: not a folder or an .npz file")
    if ref in registry.DATASETS and ref not in SOURCES:
        return {"id": ref, "source": ref, "options": {**sized, **extra}}
    names = [n for n in registry.DATASETS.names() if n not in SOURCES]
    raise ScoreError(f"--ref {ref}: no such folder or .npz file, and not a registered dataset "
                     f"({registry.hint(ref, names)})")


def _absolute(value: Any) -> Any:
    """An option value naming an existing file or folder, made absolute (suites refuse relative paths that climb)."""
    if isinstance(value, str) and value and Path(value).expanduser().exists():
        return str(Path(value).expanduser().resolve())
    return value


# -- the suite of one cell ------------------------------------------------------------------------------------
def suite_data(req: Request) -> tuple[dict[str, Any], int, Path | None]:
    """(the suite as data, images in GENERATED, the .npz whose labels are used)."""
    gen = Path(req.generated).expanduser()
    n, labelled = generated_count(gen)
    if n < 2:
        raise ScoreError(f"{gen}: {n} image(s); scoring needs at least 2")
    unknown = [k for k in req.options if k != "ref" and k not in req.metrics]
    if unknown:
        raise ScoreError(f"-o {unknown[0]}.KEY=VALUE: {unknown[0]!r} is neither 'ref' nor one of --metrics "
                         f"({', '.join(req.metrics)})")
    wants_prompts = [m for m in req.metrics if m in PROMPT_METRICS]
    if req.prompts and req.labels:
        raise ScoreError("--prompts and --labels are two ways to give prompts: choose one")
    if wants_prompts and not (req.prompts or req.labels):
        raise ScoreError(f"{', '.join(wants_prompts)} score each image against its prompt: give --prompts FILE (one "
                         f"line per image, in sorted file-name / .npz row order) or --labels (the class ids an .npz "
                         f"carries in arr_1, named by --ref's classes); FID, IS and KID need neither")
    if req.labels and labelled is None:
        raise ScoreError(f"--labels: {gen} carries no labels (an .npz with arr_1 or labels does); give --prompts FILE")
    if req.prompts and labelled is not None:
        raise ScoreError(f"--prompts: {gen} carries labels of its own (arr_1), which the samples adapter uses; score "
                         f"it with --labels, or save the images without them")
    ref = reference_entry(req.reference, req.resolution,
                          {k: _absolute(v) for k, v in req.options.get("ref", {}).items()})
    if req.labels and ref["source"] in SOURCES:
        raise ScoreError(f"--labels: --ref {req.reference} has no classes to name them; use a labelled reference "
                         f"(a registered dataset such as imagenet-val, or a folder of class folders)")
    plan = {"plan": "uniform", "n": n}
    if req.prompts:
        from bench.data.prompted import read_prompts
        lines, sha = read_prompts(req.prompts)
        if len(lines) != n:
            raise ScoreError(f"--prompts {req.prompts}: {len(lines)} prompts for {n} images (one line per image)")
        ref = {"id": ref["id"], "source": "prompted", "options": {
            "source": ref["source"], "options": ref["options"], "prompts": str(Path(req.prompts).resolve()),
            "prompts_sha256": sha}}
        plan = {"plan": "per_class", "n": 1}          # every prompt a class: sample i gets label i, prompt i
    metrics = {}
    for m in req.metrics:
        opts = {k: _absolute(v) for k, v in req.options.get(m, {}).items()}
        if req.prompts and m in PROMPT_METRICS:
            opts.setdefault("per_class", False)       # a "class" per prompt: no per-class rows
        metrics[m] = opts
    model = {"id": req.name or gen.stem or "generated", "adapter": "samples", "weights": str(gen.resolve()),
             "options": {"resolution": req.resolution} if req.resolution and gen.is_dir() else {}}
    data = {"suite": "score", "description": f"bench score {req.generated} --ref {req.reference}",
            "seed": 0, "batch_size": req.batch_size, "device": req.device, "samples": plan,
            "datasets": [ref], "metrics": metrics, "models": [model]}
    return data, n, labelled if req.labels else None


def build(req: Request):
    """The validated suite of one cell (raises `ScoreError` or `bench.suite.SuiteError`, one line per problem)."""
    from bench.suite import Suite
    register_sources()
    data, n, labelled = suite_data(req)
    return Suite.parse(json.dumps(data), "bench score"), n, labelled


def score(req: Request, db: str | Path | None = None, progress: bool = False) -> Outcome:
    """Score GENERATED against the reference: in memory, or (``db``) through the runner into the store."""
    from bench.cell import CellSpec
    from bench.runner import Runner
    suite, n, labelled = build(req)
    cell = suite.expand()[0]
    runner = Runner(suite, progress=progress, device=req.device, **({"db": db} if db else {}))
    adapter = registry.resolve("model adapter", cell.model.adapter)()
    weights = adapter.weights_id(cell.model)
    if labelled is not None:
        labels, classes = stored_labels(labelled), len(runner.engine.dataset(cell).class_names)
        if len(labels) and (labels.min() < 0 or labels.max() >= classes):
            raise ScoreError(f"--labels: {labelled} has labels {int(labels.min())}..{int(labels.max())}, but --ref "
                             f"{req.reference} has {classes} classes")
    try:
        key = runner.key(cell, adapter, weights)
        ref_n = len(runner.engine.dataset(cell))
        if db is None:
            cs = CellSpec(cell, key, weights)
            result = runner.engine.finish(cs, [runner.engine.run_shard(cs, 0, None, with_latency=False)])
            return Outcome(cell, key, {k: (v[0], v[4]) for k, v in result.values.items()}, result.n, ref_n)
    except (ScoreError, DatasetError, KeyboardInterrupt):     # bad input (a dataset not there): exit 2
        raise
    except Exception as e:         # what would fail the cell in a suite: one line
        raise ScoreFailed(f"{type(e).__name__}: {e}") from e
    summary = runner.run()
    if summary.failed:
        raise ScoreFailed(summary.failures[0].split(": ", 1)[-1] + f" (stored as a failed cell in {db})")
    import bench
    row = bench.load(db).set_index("key").loc[key]
    values = {}
    for m in cell.metrics:
        for o in registry.resolve("metric", m).outputs:
            if not o.name.endswith("/*") and o.name in row and not _missing(row[o.name]):
                values[o.name] = (float(row[o.name]), o)
    return Outcome(cell, key, values, int(row["n"]), ref_n, "stored" if summary.ran else "already stored")


def _missing(v) -> bool:
    try:
        return v is None or math.isnan(float(v))
    except (TypeError, ValueError):
        return True
