"""Where a cell's time goes: a warm and a cold default-suite cell at n = 250, one summary row per component, as a
share of the cell's wall time (`breakdown.Breakdown`: exclusive time per component, ``other`` the rest).

The cell: mini-sit 4 Euler steps at CFG 1.5 on mini-val, n = 250 (generation batch 125, so throughput comes from the
bulk pass as in the default suite), its own batch-1 latency measurement (``latency: per_cell``: what the first cell
of each setting pays; the suite's other datasets share it). *Warm*: a Runner that has run the cell once (metric
networks loaded, reference features in memory; the generator is loaded by every run, as for a model's first cell).
*Cold*: a fresh Runner (every network loaded, reference features from the disk cache). ``ROUNDS`` of each,
alternated, seconds summed over the rounds.
"""

from __future__ import annotations

from breakdown import Breakdown
from perfkit import SUMMARY, device, suite_text, timed

from bench.runner import Runner
from bench.suite import Suite

ROUNDS = 3
N_CELL = 250


def test_cell_time_breakdown(benchmark, tmp_path):
    dev = device()
    suite = Suite.parse(suite_text(n=N_CELL, batch=N_CELL // 2, latency="per_cell"), "perf-breakdown.yaml")
    db = tmp_path / "b.duckdb"
    warm = Runner(suite, db=db, overwrite="always", progress=False)
    assert warm.run().ran == 1                        # reference statistics (cached on disk) and first loads
    parts = {"warm": Breakdown(), "cold": Breakdown()}
    wall = {"warm": 0.0, "cold": 0.0}
    for _ in range(ROUNDS):
        for kind in ("warm", "cold"):
            runner = warm if kind == "warm" else Runner(suite, db=db, overwrite="always", progress=False)
            with parts[kind]:
                wall[kind] += timed(runner.run, dev)
    benchmark.pedantic(lambda: None, rounds=1, iterations=1)
    shares = {k: parts[k].shares(wall[k]) for k in parts}
    assert not parts["warm"].unmeasured, f"components without a function to time (renamed?): {parts['warm'].unmeasured}"
    sec = f"5 where a cell's time goes (n {N_CELL}, warm / cold)"
    SUMMARY.add(sec, "cell wall time, warm / cold (s)", f"{wall['warm'] / ROUNDS:.3g} / {wall['cold'] / ROUNDS:.3g}",
                note=f"mean of {ROUNDS}; mini-sit 4 steps cfg 1.5, mini-val, own latency measurement", dev=dev)
    for (label, s_w, sh_w, c_w), (_, s_c, sh_c, c_c) in zip(shares["warm"], shares["cold"]):
        SUMMARY.add(sec, label, f"{100 * sh_w:.1f}% / {100 * sh_c:.1f}%",
                    note=f"{s_w / ROUNDS:.3g} s / {s_c / ROUNDS:.3g} s per cell; calls per cell "
                         f"{c_w // ROUNDS} / {c_c // ROUNDS}", dev=dev)
    benchmark.extra_info.update(wall=wall, shares={k: [list(r) for r in v] for k, v in shares.items()})
    print("\n" + "\n".join(f"{label:48s} warm {100 * a:5.1f}%  cold {100 * b[2]:5.1f}%"
                           for (label, _, a, _), b in zip(shares["warm"], shares["cold"])))
    # the components are exclusive: together they cannot exceed the wall time (beyond timer resolution)
    assert all(r[1] >= 0 for v in shares.values() for r in v[:-1]) and all(v[-1][1] > -1e-3 for v in shares.values())
