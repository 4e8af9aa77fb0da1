"""Density / coverage and FD-infinity: the project's code against independent transcriptions of the references
written here (clovaai prdc ``prdc/prdc.py``; dgm-eval ``dgm_eval/metrics/fd.py`` ``compute_FD_infinity`` and
``compute_efficient_FD_with_reps``; mchong6 ``score_infinity.py``), to 1e-6 relative; the edge cases (identical
sets cover fully, too small a reference set, a line recovered exactly); through FidIsKid (toy extractor) and
FdDinov2 (tiny random DINOv2): batch-size and shard independence, the real radii computed once per dataset x
extractor x k, and the default options giving the previous validated dict and values."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from scipy import linalg

from bench.data.mini import MiniDataset
from bench.metrics import fd_infinity, prdc
from bench.metrics.base import MetricError
from bench.metrics.fd_dinov2 import FdDinov2
from bench.metrics.fd_extras import fd_outputs
from bench.metrics.fid_is_kid import FidIsKid
from bench.metrics.refcache import RefCache
from bench.options import OptionsError
from tests.test_metrics_fid_extras import _feed, _gen
from tests.test_values_unchanged import ref_fid_is_kid
from tests.tiny_models import save_tiny_dinov2

CPU = torch.device("cpu")
TOY = {"feature_extractor": "toy-extractor", "kid_subset_size": 40, "kid_subsets": 10, "batch_size": 16}
EXTRAS_ON = {"density_coverage": True, "fid_inf": True}
# fid_is_kid's and fd_dinov2's validated options before the extras (as stored in every cell key)
FID_KEYS = ["feature_extractor", "feature_extractor_weights_path", "feature_layer_fid", "feature_layer_isc",
            "isc_splits", "isc_seed", "kid_subsets", "kid_subset_size", "kid_seed", "kid_kernel_poly_degree",
            "kid_kernel_poly_gamma", "kid_kernel_poly_coef0", "batch_size", "prc", "prc_neighborhood",
            "prc_batch_size", "bootstrap", "bootstrap_seed", "bootstrap_level"]
FID_VALUES = {"fid", "is", "is_std", "kid", "kid_std", "precision", "recall"}


# -- independent transcriptions of the references -------------------------------------------------------------------
def ref_prdc(real: np.ndarray, fake: np.ndarray, k: int) -> dict[str, float]:
    """clovaai prdc's compute_prdc (density, coverage): Euclidean distances, radii = (k+1)-th smallest real-real
    distance of each real row (its own zero counted), strict comparisons."""
    real, fake = real.astype(np.float64), fake.astype(np.float64)
    d_rr = np.sqrt(((real[:, None, :] - real[None, :, :]) ** 2).sum(-1))
    d_rf = np.sqrt(((real[:, None, :] - fake[None, :, :]) ** 2).sum(-1))      # real x fake
    radii = np.sort(d_rr, axis=1)[:, k]
    density = (1.0 / k) * (d_rf < radii[:, None]).sum(axis=0).mean()
    coverage = (d_rf.min(axis=1) < radii).mean()
    return {"radii": radii, "density": float(density), "coverage": float(coverage)}


def ref_fd(reps1: np.ndarray, reps2: np.ndarray) -> float:
    """dgm-eval's compute_efficient_FD_with_reps."""
    mu1, s1 = reps1.mean(axis=0), np.cov(reps1, rowvar=False)
    mu2, s2 = reps2.mean(axis=0), np.cov(reps2, rowvar=False)
    sqrt_trace = np.real(linalg.eigvals(s1 @ s2) ** 0.5).sum()
    return float(((mu1 - mu2) ** 2).sum() + s1.trace() + s2.trace() - 2 * sqrt_trace)


def ref_schedule(n: int, points: int = 15) -> np.ndarray:
    """dgm-eval's fd_batches."""
    return np.linspace(min(5000, max(n // 10, 2)), n, points).astype("int32")


def ref_line(sizes, fds) -> tuple[float, float, float]:
    """LinearRegression of FD_N on 1/N (intercept, slope) and the fit's root-mean-square residual."""
    x, y = 1.0 / np.asarray(sizes, dtype=np.float64), np.asarray(fds, dtype=np.float64)
    a = np.stack([np.ones_like(x), x], axis=1)
    (intercept, slope), *_ = np.linalg.lstsq(a, y, rcond=None)
    return float(intercept), float(slope), float(np.sqrt(np.mean((y - a @ np.array([intercept, slope])) ** 2)))


def ref_fd_infinity(real: np.ndarray, fake: np.ndarray, points: int, seed: int) -> tuple[float, float, float]:
    """dgm-eval's compute_FD_infinity with its generator seeded: fresh subsets without replacement per size."""
    real, fake = real.astype(np.float64), fake.astype(np.float64)
    sizes = ref_schedule(len(fake), points)
    rng = np.random.default_rng(seed)
    return ref_line(sizes, [ref_fd(real, rng.choice(fake, s, replace=False)) for s in sizes])


def feats(n, d, seed, shift=0.0):
    g = torch.Generator().manual_seed(seed)
    return (torch.randn(n, d, generator=g) * (0.5 + torch.rand(d, generator=g)) + shift).float()


# -- density and coverage ------------------------------------------------------------------------------------------
@pytest.mark.parametrize("n_real,n_fake,d,k,block", [(120, 90, 8, 5, 2048), (200, 150, 32, 3, 37),
                                                     (60, 300, 4, 1, 16), (50, 7, 16, 5, 2048)])
def test_density_coverage_equal_prdc(monkeypatch, n_real, n_fake, d, k, block):
    monkeypatch.setattr(prdc, "BLOCK", block)                 # small blocks: the blocked loops are exercised
    real, fake = feats(n_real, d, 1), feats(n_fake, d, 2, shift=0.3)
    want = ref_prdc(real.numpy(), fake.numpy(), k)
    radii = prdc.radii(real, k)
    assert radii.dtype == torch.float64
    np.testing.assert_allclose(radii.numpy(), want["radii"], rtol=1e-9)
    density, coverage = prdc.density_coverage(fake, real, radii, k)
    assert density == pytest.approx(want["density"], rel=1e-6)
    assert coverage == pytest.approx(want["coverage"], rel=1e-6)
    assert 0 <= coverage <= 1 and density >= 0


def test_identical_sets_cover_fully_and_too_small_a_reference_is_a_clear_error():
    real = feats(40, 12, 3)
    assert prdc.density_coverage(real.clone(), real, prdc.radii(real, 5), 5)[1] == 1.0
    prdc.radii(real[:6], 5)                                   # k + 1 samples: the k-th neighbour exists
    with pytest.raises(MetricError, match="dc_neighborhood 5 needs at least 6 reference samples, got 5"):
        prdc.radii(real[:5], 5)


# -- FD-infinity ---------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("n", [3, 24, 90, 1000, 49999, 50000, 123457])
def test_subset_sizes_are_dgm_evals(n):
    assert np.array_equal(fd_infinity.schedule(n, 15), ref_schedule(n))
    assert fd_infinity.schedule(n, 15).dtype == np.int32
    if n == 50000:          # mchong6's schedule at its default 50k images: linspace(5000, 50000, 15)
        assert np.array_equal(fd_infinity.schedule(n, 15), np.linspace(5000, 50000, 15).astype("int32"))


def test_exactly_linear_fd_recovers_intercept_and_slope_and_draws_dgm_evals_subsets():
    x = feats(500, 3, 4)
    seen = []

    def linear(sub):
        seen.append(sub.clone())
        return 2.5 + 400.0 / len(sub)

    inf, slope, residual = fd_infinity.fd_infinity(x, linear, 15, seed=7)
    assert inf == pytest.approx(2.5, rel=1e-9) and slope == pytest.approx(400.0, rel=1e-9) and residual < 1e-9
    rng = np.random.default_rng(7)                          # dgm-eval's draws: rng.choice(reps, N, replace=False)
    for sub, size in zip(seen, ref_schedule(500)):
        assert torch.equal(sub, torch.from_numpy(rng.choice(x.numpy(), size, replace=False)))
        assert len(torch.unique(sub, dim=0)) == size        # without replacement
    noisy = [3.0 + 50.0 / s + 0.01 * np.sin(s) for s in ref_schedule(500)]
    assert fd_infinity.fit(ref_schedule(500), noisy) == pytest.approx(ref_line(ref_schedule(500), noisy), rel=1e-6)
    with pytest.raises(MetricError, match="my_fd: needs at least 3 generated samples"):
        fd_infinity.fd_infinity(x[:2], linear, 15, 0, "my_fd")


# -- through FidIsKid ----------------------------------------------------------------------------------------------
def _batch_and_shard_results(m, ref, images, labels):
    out = [_feed(m.accumulator(ref), images, labels, step).result() for step in (5, 64)]
    perm = torch.randperm(len(images), generator=torch.Generator().manual_seed(1))
    shards = [_feed(m.accumulator(ref), images[idx], labels[idx], 9, idx) for idx in perm.split(len(images) // 2 + 1)]
    merged = m.accumulator(ref)
    for s in shards:
        merged.add_state(s.state())
    out.append(merged.result())
    return out


class _Count:
    """Counts `bench.metrics.prdc.radii` calls (the real k-NN radii), passing them on."""

    def __init__(self, monkeypatch):
        self.n, inner = 0, prdc.radii

        def counted(*a, **k):
            self.n += 1
            return inner(*a, **k)

        monkeypatch.setattr(prdc, "radii", counted)


def test_fid_is_kid_extras_equal_the_references_at_any_batch_size_and_shard_split(tmp_path):
    ref = MiniDataset("mini-val", 70)
    images, labels = _gen(90)
    m = FidIsKid({**TOY, **EXTRAS_ON}, CPU, tmp_path)
    results = _batch_and_shard_results(m, ref, images, labels)
    assert all(r == results[0] for r in results[1:]), "values differ across batch sizes / shards"
    got = results[0]
    gen_fid = m.features(images)[0].numpy()
    ref_fid = m.reference_features(ref).numpy()
    want = ref_prdc(ref_fid, gen_fid, 5)
    assert got["density"] == pytest.approx(want["density"], rel=1e-6)
    assert got["coverage"] == pytest.approx(want["coverage"], rel=1e-6)
    inf, slope, residual = ref_fd_infinity(ref_fid, gen_fid, 15, 2020)
    assert got["fid_inf"] == pytest.approx(inf, rel=1e-6) and got["fid_inf_slope"] == pytest.approx(slope, rel=1e-6)
    assert got["fid_inf_residual"] == pytest.approx(residual, rel=1e-6)
    assert got["fid_inf"] < got["fid"] and got["fid_inf_slope"] > 0 and 0 < got["coverage"] <= 1
    for v in got:
        assert m.output(v).matches(v)
    directions = [m.output(v).higher_is_better for v in ("density", "coverage", "fid_inf", "fid_inf_slope")]
    assert directions == [True, True, False, None]
    d = m.describe()
    assert d["density_coverage"] is True and d["dc_neighborhood"] == 5 and d["fid_inf_points"] == 15


def test_fid_is_kid_defaults_keep_the_validated_dict_keys_and_values(tmp_path):
    assert FidIsKid.version == "fid_is_kid-2"
    default = FidIsKid.validate_options({})
    assert list(default) == FID_KEYS
    spelt = {**default, "density_coverage": False, "dc_neighborhood": 5, "fid_inf": False, "fid_inf_points": 15,
             "fid_inf_seed": 2020}
    assert FidIsKid.validate_options(spelt) == default        # defaults spelt out: the same key
    on = FidIsKid.validate_options({"fid_inf": True, "dc_neighborhood": 7})
    assert on == {**default, "dc_neighborhood": 7, "fid_inf": True} and FidIsKid.validate_options(on) == on
    for bad in ({"dc_neighborhood": 0}, {"fid_inf_points": 1}, {"density_coverage": 1}):
        with pytest.raises(OptionsError, match=next(iter(bad))):
            FidIsKid.validate_options(bad)

    ref = MiniDataset("mini-val", 60)
    images, labels = _gen(48)
    m = FidIsKid(TOY, CPU, tmp_path)
    got = _feed(m.accumulator(ref), images, labels, 16).result()
    assert set(got) == FID_VALUES and "density_coverage" not in m.describe()
    gen_fid, gen_isc = m.features(images)
    assert got == ref_fid_is_kid(gen_fid, gen_isc, m.reference_features(ref), m.opt)   # the previous code's values
    extras = _feed(FidIsKid({**TOY, **EXTRAS_ON}, CPU, tmp_path).accumulator(ref), images, labels, 16).result()
    assert {k: extras[k] for k in FID_VALUES} == got          # the extras change none of the other values


def test_real_radii_computed_once_per_dataset_extractor_and_k(tmp_path, monkeypatch):
    count = _Count(monkeypatch)
    images, labels = _gen(20)
    val = MiniDataset("mini-val", 30)
    m = FidIsKid({**TOY, "density_coverage": True}, CPU, tmp_path)
    a = _feed(m.accumulator(val), images, labels, 20).result()
    b = _feed(m.accumulator(val), images, labels, 20).result()
    assert a == b and count.n == 1 and m.cache.computed == 1
    assert len(RefCache(tmp_path).entries()) == 1             # the radii live in the features' own entry
    assert "dc_radii_k5" in RefCache(tmp_path).load(m.reference_material(val))
    again = FidIsKid({**TOY, "density_coverage": True}, CPU, tmp_path)     # a new run: read from disk
    assert _feed(again.accumulator(val), images, labels, 20).result() == a
    assert count.n == 1 and again.cache.computed == 0
    FidIsKid({**TOY, "density_coverage": True, "dc_neighborhood": 3}, CPU, tmp_path).accumulator(val)
    assert count.n == 2                                       # another k: computed once more, the same entry
    assert len(RefCache(tmp_path).entries()) == 1
    FidIsKid({**TOY, "density_coverage": True}, CPU, tmp_path).accumulator(MiniDataset("mini-v2", 30))
    assert count.n == 3                                       # another dataset
    FidIsKid({**TOY, "prc": False}, CPU, tmp_path).accumulator(val)
    assert count.n == 3                                       # off: never computed

    with pytest.raises(MetricError, match="fid_is_kid: density_coverage: dc_neighborhood 5 needs at least 6"):
        FidIsKid({**TOY, "density_coverage": True}, CPU, tmp_path).accumulator(MiniDataset("mini-val", 5))


# -- through FdDinov2 ----------------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def tiny_dinov2(tmp_path_factory):
    return save_tiny_dinov2(tmp_path_factory.mktemp("tiny-dinov2"))


def test_fd_dinov2_extras_defaults_batch_sizes_shards_and_radii_once(tmp_path, tiny_dinov2, monkeypatch):
    assert FdDinov2.version == "fd_dinov2-1"
    assert FdDinov2.validate_options({}) == {"model": "facebook/dinov2-large", "batch_size": 64}
    assert FdDinov2.validate_options({"fd_inf": False, "dc_neighborhood": 5}) == FdDinov2.validate_options({})
    ref = MiniDataset("mini-val", 30)
    images, labels = _gen(24)
    base = {"model": str(tiny_dinov2), "batch_size": 8}
    plain = FdDinov2(base, CPU, tmp_path)
    want_fd = _feed(plain.accumulator(ref), images, labels, 24).result()
    gen, ref_f = plain.features(images), plain.reference_features(ref)
    assert want_fd == {"fd_dinov2": FdDinov2.distance(gen, ref_f)}      # the default: one value, as before

    count = _Count(monkeypatch)
    m = FdDinov2({**base, "density_coverage": True, "fd_inf": True}, CPU, tmp_path)
    results = _batch_and_shard_results(m, ref, images, labels)
    assert all(r == results[0] for r in results[1:]) and count.n == 1
    got = results[0]
    assert set(got) == {"fd_dinov2", "fd_dinov2_inf", "fd_dinov2_inf_slope", "fd_dinov2_inf_residual",
                        "density_dinov2", "coverage_dinov2"}
    assert got["fd_dinov2"] == want_fd["fd_dinov2"]
    want = ref_prdc(ref_f.numpy(), gen.numpy(), 5)
    assert got["density_dinov2"] == pytest.approx(want["density"], rel=1e-6)
    assert got["coverage_dinov2"] == pytest.approx(want["coverage"], rel=1e-6)
    inf, slope, residual = ref_fd_infinity(ref_f.numpy(), gen.numpy(), 15, 2020)
    assert got["fd_dinov2_inf"] == pytest.approx(inf, rel=1e-6)
    assert got["fd_dinov2_inf_slope"] == pytest.approx(slope, rel=1e-6)
    assert got["fd_dinov2_inf_residual"] == pytest.approx(residual, rel=1e-6)
    again = FdDinov2({**base, "density_coverage": True}, CPU, tmp_path)
    again.accumulator(ref)
    assert count.n == 1 and again.cache.computed == 0 and len(RefCache(tmp_path).entries()) == 1


def test_a_variant_gets_the_extras_under_its_own_names(tmp_path):
    class Variant(FdDinov2):               # what a variant sets: names, reference identity and its features
        name, version, fd_output = "fd_toy", "fd_toy-1", "fd_toy"
        extractor_id, preprocess = "channel-moments", "uint8 -> float, per-channel mean and std"
        outputs = fd_outputs("fd_toy", "FD-toy")

        def features(self, images):
            x = images.double().flatten(1, 2)
            return torch.cat([x.mean(1), x.std(1), x.amax(1) / 255], dim=1).float()

        def weights_id(self):
            return "none"

    m = Variant({"density_coverage": True, "fd_inf": True, "dc_neighborhood": 3}, CPU, tmp_path)
    ref = MiniDataset("mini-val", 40)
    images, labels = _gen(30)
    got = _feed(m.accumulator(ref), images, labels, 7).result()
    assert set(got) == {"fd_toy", "fd_toy_inf", "fd_toy_inf_slope", "fd_toy_inf_residual", "density_toy",
                        "coverage_toy"}
    assert got["density_toy"] == pytest.approx(ref_prdc(m.reference_features(ref).numpy(),
                                                        m.features(images).numpy(), 3)["density"], rel=1e-6)
    assert m.reference_material(ref)["extractor"] == "channel-moments"
    assert m.output("density_toy").label == "Density (toy)" and m.describe()["resize"].startswith("uint8")
    with pytest.raises(TypeError, match="outputs do not declare.*fd_outputs"):
        type("Bad", (FdDinov2,), {"name": "fd_bad", "fd_output": "fd_bad"})
