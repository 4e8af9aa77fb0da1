"""Overhead against the floor: default-suite cells end to end through the Runner, against the sum of their
unavoidable forward passes on the same inputs.

The floor replays, on the same inputs, exactly the forward calls a cell needs: every generator network call the
cell made (recorded by a forward pre-hook: the counted NFEs, CFG's doubled rows included) plus one pass of each metric
network over the cell's images (the torch-fidelity extractor on the uint8 images; the CLIP and PickScore image towers
on their preprocessed inputs and their text towers on the distinct prompts). Everything else is overhead: model
loading, noise, pre-processing, statistics (KID subsets, precision/recall), bootstrap, batch-1 latency timing, kept
samples, provenance, the store write.

Two figures, both through a warm Runner (metric networks loaded, reference features in memory: every cell after the
first of a sweep), reference statistics excluded (a one-time cost, computed by an untimed first run):

- *one setting, as the default suite runs it*: mini-sit 4 Euler steps at CFG 1.5 on the suite's three datasets, one
  run: the generator loaded once, batch-1 latency timed once and shared by the other two cells (``latency:
  per_setting``, the default). The target (1.05x at n = 500, 1.10x at n = 250) is on this figure. The latency
  timing is a measurement the suite asks for, made of batch-1 forward calls: its seconds in the same round are
  reported as their own part of the floor (and its share of the run against the 5% target), so the ratio is the
  rest of the run's overhead; the ratio to the network passes alone is reported beside it.
- *one cell alone*: the same setting on mini-val only, with every per-cell cost on that one cell (generator load,
  its own latency measurement: ``latency: per_cell``); and the same cell through a fresh (cold) Runner, for
  information.
"""

from __future__ import annotations

import statistics

import torch
from breakdown import LATENCY, PER_RUN, Breakdown
from perfkit import DEFAULT_N, SUMMARY, N, device, paired_ratio, rounds_of, suite_text, target

from bench.data.base import plan_labels, prompts_for
from bench.metrics import remainder
from bench.metrics.clip_preprocess import preprocess_uint8
from bench.registry import resolve
from bench.runner import Runner
from bench.suite import Suite

# same-round ratios per figure: at n = 250 one round is half as long and the 2-core VM's speed swings (10-20% within
# seconds) weigh twice as much, so 9 rounds (5 gave medians of 1.09-1.16 for one unchanged checkout, 10 gave 1.09)
ROUNDS = 5 if N >= 500 else 9
SET_TARGET = 1.05 if N >= 500 else 1.10         # the targets: <= 1.05 x at n = 500, <= 1.10 x at n = 250


def _record_generator_calls(gen, cell, labels, ids):
    """Generate the cell's images in its batches, recording every network call's inputs (cloned)."""
    calls = []

    def hook(module, args, kwargs):
        calls.append((module, tuple(a.clone() if torch.is_tensor(a) else a for a in args),
                      {k: v.clone() if torch.is_tensor(v) else v for k, v in kwargs.items()}))

    handles = [m.register_forward_pre_hook(hook, with_kwargs=True) for m in gen.networks()]
    try:
        images = torch.cat([gen.generate(labels[i:i + cell.batch_size], ids[i:i + cell.batch_size], cell.settings())
                            for i in range(0, len(ids), cell.batch_size)])
    finally:
        for h in handles:
            h.remove()
    return calls, images


def make_floor(runner: Runner, cell):
    """(floor function, facts) for ``cell``: the generator's recorded calls and one pass of each metric net."""
    dev = runner.device
    ds, metrics = runner.dataset(cell), runner.metrics(cell)
    gen = resolve("model adapter", cell.model.adapter)()
    gen.load(cell.model, dev)
    labels, ids = plan_labels(ds, cell.plan, cell.seed)
    calls, images = _record_generator_calls(gen, cell, labels, ids)
    nfe = sum(int(a[0].shape[0]) for _, a, _ in calls) / len(ids)

    fik = metrics["fid_is_kid"]
    ext, fbs = fik.extractor, fik.opt["batch_size"]
    nchw = images.to(dev).permute(0, 3, 1, 2).contiguous()
    towers = []
    prompts = sorted(set(prompts_for(ds, labels)))
    for name in ("clip_score", "pickscore"):
        b = metrics[name].backend
        pre = preprocess_uint8(images.to(dev), b.image_size, b.mean, b.std)
        towers.append((b.model, pre, b.tokenizer(prompts).to(dev), metrics[name].opt["batch_size"]))

    @torch.inference_mode()
    def floor():
        for module, args, kwargs in calls:
            module(*args, **kwargs)
        for chunk in nchw.split(fbs):
            ext(chunk)
        for model, pre, tokens, bs in towers:
            for chunk in pre.split(bs):
                model.encode_image(chunk)
            model.encode_text(tokens)

    return floor, {"nfe_per_image": nfe, "generator_calls": len(calls), "images": len(ids)}


DATASETS = ("mini-val", "mini-v2", "mini-ood")


def test_cell_overhead_against_floor(benchmark, tmp_path):
    dev = device()
    setting = Suite.parse(suite_text(datasets=DATASETS), "perf-setting.yaml")
    alone = Suite.parse(suite_text(latency="per_cell"), "perf-cell.yaml")
    (cell,) = alone.expand()
    r_set = Runner(setting, db=tmp_path / "setting.duckdb", overwrite="always", progress=False)
    r_one = Runner(alone, db=tmp_path / "cell.duckdb", overwrite="always", progress=False)
    for r, cells in ((r_set, 3), (r_one, 1)):       # reference statistics + first loads, untimed
        first = r.run()
        assert first.ran == cells and not first.failures, first.failures
    floors = [make_floor(r_set, c) for c in setting.expand()]
    floor_one, facts = make_floor(r_one, cell)
    assert facts["nfe_per_image"] == 2 * cell.steps  # CFG 1.5: cond + uncond rows per step

    def floor_set():
        for f, _ in floors:
            f()

    def cold():
        r = Runner(alone, db=tmp_path / "cell.duckdb", overwrite="always", progress=False).run()
        assert r.ran == 1, r.failures

    latency_s: list[float] = []                      # per round: the setting run's batch-1 latency timing
    per_run_s: list[float] = []                      # per round: its store open/close and generator load

    def setting():
        with Breakdown() as b:                       # wrappers: microseconds per call, tens of calls per run
            summary = r_set.run()
        assert summary.ran == 3 and not summary.failures, summary.failures
        latency_s.append(b.seconds.get(LATENCY, 0.0))
        per_run_s.append(sum(b.seconds.get(k, 0.0) for k in PER_RUN))

    times = rounds_of({"floor_set": floor_set, "setting": setting, "floor": floor_one, "cell": r_one.run,
                       "cold": cold}, ROUNDS, dev)
    t = {k: min(v) for k, v in times.items()}
    # the benchmark fixture records the setting's run (its JSON goes to results/perf/); one more round, timed by it
    benchmark.pedantic(r_set.run, rounds=1, iterations=1)
    t_set = min(t["setting"], benchmark.stats.stats.min)
    # the batch-1 latency timing is a measurement the suite asks for, made of forward calls: it is reported as its
    # own part of the floor (its seconds in the same round), so the target ratio is the rest of the run's overhead
    set_ratio = statistics.median(a / (f + lat) for a, lat, f in
                                  zip(times["setting"], latency_s, times["floor_set"]))
    set_ratio_nets = paired_ratio(times, "setting", "floor_set")
    lat_share = statistics.median(a / b for a, b in zip(latency_s, times["setting"]))
    per_run_share = statistics.median(a / b for a, b in zip(per_run_s, times["setting"]))
    cell_ratio, cold_ratio = paired_ratio(times, "cell", "floor"), paired_ratio(times, "cold", "floor")
    benchmark.extra_info.update(floor_setting_s=t["floor_set"], setting_s=t_set, floor_cell_s=t["floor"],
                                cell_s=t["cell"], cold_cell_s=t["cold"], setting_ratio=set_ratio,
                                cell_ratio=cell_ratio, cold_ratio=cold_ratio, device=str(dev), **facts)
    sec = "1 overhead vs floor"
    what = f"mini-sit 4 steps cfg 1.5, n {facts['images']} per cell"
    fik = r_one.metrics(cell)["fid_is_kid"]
    fbs, n_img = fik.opt["batch_size"], facts["images"]
    short = n_img % fbs
    alone = [same for sig, same in remainder.verdicts(fik.forward_identity()).items() if sig[:2] == (fbs, short)]
    batches = (f"fixed-shape batches of {fbs}" + (
        "" if not short else f", the short {short}-row chunk " + (
            "run alone (its shape checked to give the padded bits)" if alone and alone[0]
            else f"padded to {fbs} (for batch-independent bits)")))
    SUMMARY.add(sec, "floor: generator calls + 1 pass of 3 metric nets, 3 datasets (s)", t["floor_set"],
                note=f"{what}; {facts['generator_calls']} generator calls per cell; metric nets on the cell's "
                     f"{n_img} rows, where stepbench runs {batches}", dev=dev)
    SUMMARY.add(sec, "floor: batch-1 latency timing, its own part (s)", statistics.median(latency_s), "(info)", None,
                "the setting run's latency measurement (warm-up + timed batch-1 calls), measured in each round",
                dev=dev)
    SUMMARY.add(sec, "one setting on 3 datasets, as the default suite runs it / floor", set_ratio,
                f"<= {SET_TARGET:.2f}", set_ratio <= SET_TARGET,
                f"median of {ROUNDS} same-round ratios, floor = network passes + the round's latency timing; "
                f"{t_set:.3g} s; one run: generator loaded once, latency timed once and shared",
                dev=dev)
    default_n = N == DEFAULT_N                       # the 5% is of a cell in the default suite
    SUMMARY.add(sec, "batch-1 latency timing: share of the setting's run", f"{100 * lat_share:.3g}%",
                "<= 5%" if default_n else "(info)", lat_share <= 0.05 if default_n else None,
                f"median of {ROUNDS}; measured once (first dataset), shared by the other two cells"
                + ("" if default_n else f"; the 5% target is at the default suite's n {DEFAULT_N}: a fixed cost, "
                   "its share grows as n shrinks, and it is its own part of the floor above"), dev=dev)
    SUMMARY.add(sec, "per-run costs inside the setting's run: share", f"{100 * per_run_share:.3g}%", "(info)", None,
                f"median of {ROUNDS}; store open, run record and close, generator load: counted as the setting's "
                f"overhead here, paid once per run (store) and once per model (load) in a suite", dev=dev)
    SUMMARY.add(sec, "one setting on 3 datasets / network passes alone", set_ratio_nets, "(info)", None,
                f"the same runs, the latency timing counted as overhead (min/min {t_set / t['floor_set']:.3g})",
                dev=dev)
    SUMMARY.add(sec, "one cell alone, warm Runner / floor", cell_ratio, "(info)", None,
                f"{t['cell']:.3g} s vs {t['floor']:.3g} s; generator load and its own latency timing on the cell",
                dev=dev)
    SUMMARY.add(sec, "one cell alone, cold Runner / floor", cold_ratio, "(info)", None,
                f"{t['cold']:.3g} s; all loads, reference stats from disk cache", dev=dev)
    print(f"\nsetting: floor {t['floor_set']:.3f} s, run {t_set:.3f} s ({set_ratio:.2f}x); one cell: floor "
          f"{t['floor']:.3f} s, warm {t['cell']:.3f} s ({cell_ratio:.2f}x), cold {t['cold']:.3f} s ({cold_ratio:.2f}x)")
    assert t["floor_set"] > 0 and set_ratio > 1.0 / 3   # a floor far above the run would mean a broken floor
    target(set_ratio <= SET_TARGET, f"one setting's run / floor = {set_ratio:.2f} > {SET_TARGET:.2f}")
