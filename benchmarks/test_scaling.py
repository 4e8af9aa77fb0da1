"""Scaling: cell time against n and against the number of cells, and reference statistics computed once.

- n: the measured cell at n = 500, 1000, 2000 (N, 2N, 4N with STEPBENCH_PERF_N = N; mini-val of 4N images;
  reference statistics cached by an untimed first run); linear means the time per image at 4N is at most 1.10x
  the time per image at N.
- cells: 1, 2 and 4 cells (seeds 42..45, the same cost each) on an empty reference cache; linear means the time per
  cell at 4 cells is at most 1.10x the time per cell at 1 cell. The dataset's ``reference_batches`` is wrapped to
  count reference passes: exactly 1 per run whatever the number of cells (asserted).
"""

from __future__ import annotations

from perfkit import SUMMARY, N, device, suite_text, target, timed

from bench.runner import Runner
from bench.suite import Suite

NS = (N, 2 * N, 4 * N)
CELLS = (1, 2, 4)


def counting_runner(suite: Suite, db) -> tuple[Runner, list[int]]:
    """A Runner whose dataset counts the passes over its reference set."""
    runner = Runner(suite, db=db, overwrite="always", progress=False)
    cell = suite.expand()[0]
    ds = runner.dataset(cell)
    passes = [0]
    inner = ds.reference_batches

    def reference_batches(batch_size):
        passes[0] += 1
        yield from inner(batch_size)

    ds.reference_batches = reference_batches
    return runner, passes


def test_time_linear_in_n(benchmark, tmp_path):
    dev = device()
    db = tmp_path / "n.duckdb"
    Runner(Suite.parse(suite_text(n=NS[0], size=max(NS)), "n.yaml"), db=db, progress=False).run()   # ref stats
    times = {}
    for n in NS:
        runner = Runner(Suite.parse(suite_text(n=n, size=max(NS)), "n.yaml"), db=db, overwrite="always",
                        progress=False)
        times[n] = timed(lambda r=runner: r.run(), dev)
    benchmark.pedantic(lambda: None, rounds=1, iterations=1)
    benchmark.extra_info.update({f"n{n}_s": t for n, t in times.items()})
    ratio = (times[NS[-1]] / NS[-1]) / (times[NS[0]] / NS[0])
    sec = "4 scaling"
    SUMMARY.add(sec, "cell time at n = " + " / ".join(map(str, NS)) + " (s)",
                " / ".join(f"{times[n]:.3g}" for n in NS), note="fresh Runner each (all loads included)", dev=dev)
    SUMMARY.add(sec, f"per-image time n={NS[-1]} / n={NS[0]}", ratio, "<= 1.10", ratio <= 1.10, dev=dev)
    print(f"\ntimes by n: {times}; per-image ratio {ratio:.2f}")
    target(ratio <= 1.10, f"per-image time grows {ratio:.2f}x from n={NS[0]} to n={NS[-1]}")


def test_time_linear_in_cells_and_reference_once(benchmark, tmp_path):
    dev = device()
    times, passes_by_cells = {}, {}
    for k in CELLS:
        suite = Suite.parse(suite_text(seeds=list(range(42, 42 + k))), "cells.yaml")
        assert len(suite.expand()) == k
        runner, passes = counting_runner(suite, tmp_path / f"c{k}" / "b.duckdb")   # its own, empty cache
        summary = None

        def run(r=runner):
            nonlocal summary
            summary = r.run()

        times[k] = timed(run, dev)
        assert summary.ran == k and not summary.failures, summary.failures
        passes_by_cells[k] = passes[0]
    benchmark.pedantic(lambda: None, rounds=1, iterations=1)
    benchmark.extra_info.update(times=times, reference_passes=passes_by_cells)
    ratio = (times[CELLS[-1]] / CELLS[-1]) / (times[CELLS[0]] / CELLS[0])
    sec = "4 scaling"
    SUMMARY.add(sec, "run time with " + " / ".join(map(str, CELLS)) + " cells (s)",
                " / ".join(f"{times[k]:.3g}" for k in CELLS), note="empty reference cache each", dev=dev)
    SUMMARY.add(sec, f"per-cell time {CELLS[-1]} cells / {CELLS[0]} cell", ratio, "<= 1.10", ratio <= 1.10, dev=dev)
    SUMMARY.add(sec, "reference passes per run (1 / 2 / 4 cells)",
                " / ".join(str(passes_by_cells[k]) for k in CELLS), "1 each",
                all(v == 1 for v in passes_by_cells.values()), dev=dev)
    print(f"\ntimes by cells: {times}; per-cell ratio {ratio:.2f}; reference passes {passes_by_cells}")
    assert all(v == 1 for v in passes_by_cells.values()), f"reference passes by number of cells: {passes_by_cells}"
    target(ratio <= 1.10, f"per-cell time grows {ratio:.2f}x from 1 to {CELLS[-1]} cells")
