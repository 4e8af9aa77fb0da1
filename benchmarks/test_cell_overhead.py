"""`make perf`: one mini cell end to end against the floor of its unavoidable forward passes.

The floor is the generator's network evaluations plus one pass of each metric network over the same images.
Reported as a ratio measured in one run (absolute times on a shared machine are noise).
"""

from __future__ import annotations

import time

import torch

from bench.data.base import plan_labels
from bench.runner import Runner, stream_cell
from bench.suite import Suite

SUITE = """
suite: perf
batch_size: 250
samples: {plan: per_reference, n: 500}
datasets: [{id: mini-val, options: {size: 1000}}]
metrics:
  fid_is_kid: {feature_extractor: mini-classifier, kid_subset_size: 250, kid_subsets: 50, batch_size: 500}
  clip_score: {backend: mini, model: clip, batch_size: 500}
  pickscore: {backend: mini, model: pick, batch_size: 500}
models: [{id: mini-sit, adapter: mini-sit, steps: [4], cfg: [1.0]}]
"""


def _best(fn, rounds=3):
    times = []
    for _ in range(rounds):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return min(times)


def test_cell_overhead_against_floor(benchmark, tmp_path):
    from bench.models.mini import MiniSiT
    suite = Suite.parse(SUITE, "perf.yaml")
    cell = suite.expand()[0]
    runner = Runner(suite, db=tmp_path / "b.duckdb", progress=False)
    ds, metrics = runner.dataset(cell), runner.metrics(cell)
    gen = MiniSiT()
    gen.load(cell.model, runner.device)
    labels, ids = plan_labels(ds, cell.plan, cell.seed)
    for m in metrics.values():
        m.accumulator(ds)                                        # reference statistics outside the timing
    images = torch.cat([gen.generate(labels[i:i + 250], ids[i:i + 250], cell.settings()) for i in (0, 250)])
    prompts = [ds.prompt_template.format(class_name=ds.class_names[int(y)]) for y in labels]

    def floor():
        with torch.inference_mode():
            net = gen.networks()[0]
            x = torch.randn(250, 3, 16, 16)
            for _ in range(2 * cell.steps):
                net(x, torch.full((250,), 0.5), labels[:250])
            metrics["fid_is_kid"].features(images)
            for name in ("clip_score", "pickscore"):
                metrics[name].scores(images, prompts)

    def cell_run():
        accs = [m.accumulator(ds) for m in metrics.values()]
        stream_cell(gen, cell, ds, accs, labels, ids, runner.device)
        return [a.result() for a in accs]

    t_floor = _best(floor)
    t_cell = benchmark.pedantic(cell_run, rounds=3, iterations=1) and min(benchmark.stats.stats.data)
    ratio = t_cell / t_floor
    benchmark.extra_info.update({"floor_s": t_floor, "cell_s": t_cell, "overhead_ratio": ratio})
    print(f"\ncell {t_cell:.2f} s, floor {t_floor:.2f} s, overhead ratio {ratio:.2f} (target <= 1.10)")
    assert ratio > 0
