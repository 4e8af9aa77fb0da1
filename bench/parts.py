"""A suite's cells cut into N disjoint parts of about equal declared cost: `bench run --part i/N`.

A part is what one independent job runs (a SLURM array task, one lab's machine) into its own store; `bench merge`
joins the stores afterwards. The partition is computed from the plan alone, so every job computes the same one.

Invariants (tested by ``tests/test_parts.py``):
- **a partition**: every cell of ``suite.expand()`` is in exactly one of the N parts (disjoint and covering),
  for any N >= 1; a part may be empty when N exceeds the number of cells;
- **deterministic**: the parts depend only on the expanded cells (the suite file) and N, never on the machine,
  the store, the weights or the data on disk: a cell's cost is its declared NFE per image (the unloaded
  adapter's ``nfe_per_image``; NaN, when only counting can tell, is taken as the step count) times its planned
  sample count (`planned_n`: the sample plan and the dataset's card);
- **balanced**: largest cost first, each cell to the part with the least cost so far (ties: the lowest index),
  Graham's LPT rule, so the heaviest part costs at most 4/3 of the best possible split, which is itself at least
  max(total / N, the costliest cell);
- **order kept**: `select` returns a part's cells in expansion order (the runner groups consecutive cells of a
  model, loading each model once per part).

A cell whose planned sample count only the copy on disk can tell (a dataset card without a size) costs as many
samples as the mean of the sized cells of the suite (1 when none is sized); a cell declaring 0 NFE (real images,
stored samples) costs 1 NFE per sample: its metric passes still cost about one network evaluation per image.
Parts are 0-based: ``i`` in 0..N-1, as SLURM's ``$SLURM_ARRAY_TASK_ID`` of ``--array=0-(N-1)``.
"""

from __future__ import annotations

import math
import re
from typing import Sequence

PART_RE = re.compile(r"^\s*(\d+)\s*/\s*(\d+)\s*$")


class PartError(ValueError):
    """A ``--part`` value that is not ``i/N`` with 0 <= i < N: one line, the CLI exits with code 2."""


def parse_part(text: str) -> tuple[int, int]:
    """``"3/16"`` -> (3, 16); anything but whole numbers with 0 <= i < N raises `PartError`."""
    m = PART_RE.match(str(text))
    if not m:
        raise PartError(f"--part {text!r}: expected i/N, e.g. 0/16 (i is 0-based: 0..N-1, as $SLURM_ARRAY_TASK_ID)")
    i, n = int(m.group(1)), int(m.group(2))
    if n < 1:
        raise PartError(f"--part {text!r}: N must be at least 1")
    if not 0 <= i < n:
        raise PartError(f"--part {text!r}: i must be in 0..{n - 1} (0-based, as $SLURM_ARRAY_TASK_ID of "
                        f"--array=0-{n - 1})")
    return i, n


def planned_n(cell) -> int | None:
    """Samples a cell will generate, from the plan and the dataset's card alone (None when only the copy on disk
    can tell)."""
    from bench import registry
    p = cell.plan
    ds = registry.resolve("dataset", cell.dataset_source)
    if p.kind == "per_class":
        card = ds.card(cell.dataset_source)
        return p.n * card.classes if card is not None and card.classes else None
    if p.kind == "uniform":
        return p.n
    size = ds.planned_size(cell.dataset_source, cell.dataset_options)
    if p.n is not None:
        return p.n if size is None else min(p.n, size)
    return size


def declared_nfe(cell, adapters: dict | None = None) -> float:
    """The adapter's declared NFE per image for this cell (NaN when it cannot say before loading)."""
    from bench import registry
    adapters = {} if adapters is None else adapters
    name = cell.model.adapter
    if name not in adapters:
        adapters[name] = registry.resolve("model adapter", name)()
    try:
        return float(adapters[name].nfe_per_image(cell.settings()))
    except Exception:       # some adapters know their NFE only once loaded (counted at run time anyway)
        return float("nan")


def costs(cells: Sequence) -> list[float]:
    """Each cell's declared cost, NFE x samples, with the stand-ins of the module docstring."""
    adapters: dict = {}
    ns = [planned_n(c) for c in cells]
    sized = [n for n in ns if n is not None]
    fill = sum(sized) / len(sized) if sized else 1.0
    out = []
    for c, n in zip(cells, ns):
        nfe = declared_nfe(c, adapters)
        if math.isnan(nfe):
            nfe = float(c.steps or 1)
        out.append(max(nfe, 1.0) * float(fill if n is None else n))
    return out


def partition(cells: Sequence, n: int, cell_costs: Sequence[float] | None = None) -> list[list[int]]:
    """The N parts as lists of indices into ``cells``, each ascending (LPT: see the module docstring)."""
    if n < 1:
        raise PartError(f"cannot cut a suite into {n} parts")
    cost = list(costs(cells) if cell_costs is None else cell_costs)
    loads = [0.0] * n
    parts: list[list[int]] = [[] for _ in range(n)]
    for idx in sorted(range(len(cost)), key=lambda j: (-cost[j], j)):    # ties: expansion order
        k = min(range(n), key=lambda p: (loads[p], p))
        parts[k].append(idx)
        loads[k] += cost[idx]
    return [sorted(p) for p in parts]


def select(cells: Sequence, i: int, n: int, cell_costs: Sequence[float] | None = None) -> list:
    """Part ``i`` of ``n`` (0-based) of ``cells``, in expansion order."""
    if not 0 <= i < n:
        raise PartError(f"part {i}/{n}: i must be in 0..{n - 1}")
    return [cells[j] for j in partition(cells, n, cell_costs)[i]]


__all__ = ["PartError", "parse_part", "planned_n", "declared_nfe", "costs", "partition", "select"]
