"""The paired bootstrap (bench.stats.paired) and set metrics under resampling (bench.stats.setstats), on synthetic
data whose true difference is known: nominal coverage, exact zeros for identical cells, the pairing's gain, and the
fast FID / IS paths equal to torch-fidelity's formulas."""

import numpy as np
import pytest
import torch
from torch_fidelity.metric_fid import fid_features_to_statistics, fid_statistics_to_metric
from torch_fidelity.metric_isc import isc_features_to_metric

from bench.metrics.base import PerSampleAccumulator
from bench.stats import paired, setstats


def pair(rng, n=200, delta=0.3, shared=2.0, noise=0.5):
    """Per-sample scores of two cells sharing a per-sample component (the same label and noise): the true
    difference of their means is ``delta``."""
    z = rng.normal(0.0, shared, n)
    return 1.0 + delta + z + rng.normal(0.0, noise, n), 1.0 + z + rng.normal(0.0, noise, n)


def test_the_interval_covers_the_true_difference_at_about_the_nominal_rate():
    covered = 0
    for seed in range(100):
        a, b = pair(np.random.default_rng(seed))
        r = paired.paired_bootstrap(paired.mean_statistic("s", a), paired.mean_statistic("s", b), len(a),
                                    resamples=400, seed=seed, higher_is_better=True)
        covered += r["ci_low"] <= 0.3 <= r["ci_high"]
    assert covered >= 90, covered


def test_identical_cells_give_exactly_zero_a_degenerate_interval_and_p_one():
    a = np.random.default_rng(1).normal(size=300)
    r = paired.paired_bootstrap(paired.mean_statistic("s", a), paired.mean_statistic("s", a.copy()), 300,
                                resamples=200, seed=3, higher_is_better=True)
    assert r["diff"] == 0.0 and r["ci_low"] == 0.0 and r["ci_high"] == 0.0
    assert r["p_value"] == 1.0 and r["verdict"] == "tie"
    feats, ref = np.random.default_rng(2).normal(size=(120, 8)), np.random.default_rng(3).normal(size=(200, 8))
    fa, fb = setstats.fd_statistic("fid", feats, ref), setstats.fd_statistic("fid", feats.copy(), ref)
    r = paired.paired_bootstrap(fa, fb, 120, resamples=50, seed=0, higher_is_better=False)
    assert (r["diff"], r["ci_low"], r["ci_high"], r["verdict"]) == (0.0, 0.0, 0.0, "tie")


def test_a_shuffled_pairing_gives_a_wider_interval_than_the_true_pairing():
    a, b = pair(np.random.default_rng(7), n=400)
    true = paired.paired_bootstrap(paired.mean_statistic("s", a), paired.mean_statistic("s", b), 400, 500, 11)
    shuffled = np.random.default_rng(8).permutation(b)
    broken = paired.paired_bootstrap(paired.mean_statistic("s", a), paired.mean_statistic("s", shuffled), 400, 500, 11)
    assert broken["diff"] == pytest.approx(true["diff"])            # the same means
    assert broken["ci_high"] - broken["ci_low"] > 2 * (true["ci_high"] - true["ci_low"])
    assert true["ci_low"] > 0 and broken["ci_low"] < 0               # the pairing is what resolves the difference


def test_p_value_definition_and_verdict_directions():
    a, b = pair(np.random.default_rng(0), n=300, delta=3.0)
    r = paired.paired_bootstrap(paired.mean_statistic("s", a), paired.mean_statistic("s", b), 300, 99, 5,
                                higher_is_better=False)
    assert r["p_value"] == pytest.approx(1 / 100)                    # no centred replicate reaches |d|
    assert r["verdict"] == "B better"                                # A is larger and lower is better
    assert (r["resamples"], r["seed"], r["n"]) == (99, 5, 300)
    reps = np.array([-1.0, 0.0, 0.5, 2.0])
    assert paired.p_value(1.0, reps) == (1 + 3) / 5                  # centred: -2, -1, -0.5, 1: three reach 1
    assert paired.verdict(-2.0, -1.0, -1.5, True) == "B better"
    assert paired.verdict(1.0, 2.0, 1.5, True) == "A better"
    assert paired.verdict(-1.0, 2.0, 0.5, True) == "tie"
    assert paired.verdict(1.0, 2.0, 1.5, None) == ""


def test_one_draw_for_both_cells_and_reproducible_by_seed():
    idx = paired.draws(50, 30, seed=4)
    assert np.array_equal(idx, paired.draws(50, 30, seed=4)) and not np.array_equal(idx, paired.draws(50, 30, 5))
    seen = []
    s = paired.Statistic("s", lambda i: seen.append(i.copy()) or i.mean(axis=1).astype(float))
    paired.paired_bootstrap(s, s, 50, idx=idx)
    assert len(seen) == 4 and np.array_equal(seen[2], idx) and np.array_equal(seen[3], idx)   # A, B full; A, B reps


def test_the_per_sample_mean_is_vectorised_over_chunks_with_the_loop_values(monkeypatch):
    v = np.random.default_rng(0).normal(size=64)
    idx = paired.draws(64, 40, 1)
    monkeypatch.setattr(paired, "CHUNK_ELEMENTS", 64 * 7)            # several chunks
    got = paired.replicates(paired.mean_statistic("s", v), idx)
    assert np.allclose(got, [v[i].mean() for i in idx], rtol=0, atol=1e-12)


def test_fast_fid_equals_torch_fidelity_on_the_full_sample_and_on_replicates():
    rng = np.random.default_rng(0)
    x = rng.normal(size=(300, 16)).astype(np.float32)
    ref = (rng.normal(size=(500, 16)) * 1.2 + 0.3).astype(np.float32)
    st = setstats.fd_statistic("fid", x.astype(np.float64), ref.astype(np.float64))
    s_ref = fid_features_to_statistics(torch.tensor(ref).double())

    def tf(rows):
        return fid_statistics_to_metric(s_ref, fid_features_to_statistics(torch.tensor(rows).double()), False)[
            "frechet_inception_distance"]
    assert st.full(300) == pytest.approx(tf(x), rel=1e-9)
    idx = paired.draws(300, 5, 2)
    assert np.allclose(paired.replicates(st, idx), [tf(x[i]) for i in idx], rtol=1e-9)


def test_fast_is_equals_torch_fidelity_at_any_draw_size():
    lg = torch.tensor(np.random.default_rng(1).normal(size=(200, 10)) * 3, dtype=torch.float32)
    st = setstats.is_statistic("is", lg.double().numpy(), splits=10, seed=2020)
    ref = isc_features_to_metric(lg, splits=10, shuffle=True, rng_seed=2020)["inception_score_mean"]
    assert st.full(200) == pytest.approx(ref, rel=1e-12)
    idx = np.random.default_rng(2).integers(0, 200, size=(3, 120))        # a subset's draw (sample-size curves)
    want = [isc_features_to_metric(lg[torch.as_tensor(i)], 10, True, 2020)["inception_score_mean"] for i in idx]
    assert np.allclose(st(idx), want, rtol=1e-12)


def test_the_accumulator_path_renumbers_ids_and_matches_the_vectorised_mean():
    v = torch.tensor(np.random.default_rng(3).normal(size=40))
    state = {"rows": {"score": v}, "ids": torch.arange(100, 140), "labels": torch.zeros(40, dtype=torch.long)}

    def make():
        return PerSampleAccumulator(lambda *a: {}, lambda rows, labels: {"m": float(rows["score"].mean())})
    results = setstats.accumulator_results(make, state)
    slow = setstats.accumulator_statistic("m", "m", results)
    idx = paired.draws(40, 20, 0)                                          # repeats samples: ids renumbered
    assert np.allclose(paired.replicates(slow, idx), paired.replicates(paired.mean_statistic("m", v.numpy()), idx))
