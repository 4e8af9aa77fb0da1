"""The per-cell speed-ups change no stored value: every metric value equals, with ``==``, what the previous code
computed, here recomputed by reference implementations kept in this file (torch-fidelity's own FID / IS / KID /
precision-recall functions on the same features, the previous bootstrap loops, plain means), not hard-coded numbers.

- KID from Gram blocks (`bench.metrics.kid`) against torch-fidelity's ``kid_features_to_metric``, and both
  fall-backs (blocks that differ, sets too large);
- FID statistics and KID on one OpenBLAS thread (`bench.metrics.blas`) against the process's default threads;
- the bootstrap intervals against the previous advanced-indexing loops;
- `FidIsKid.compute` with its per-reference caches (FID statistics, Gram matrix) against the reference, on the same
  reference set twice and on another one;
- end to end: a cross-section of default-suite cells at reduced n through the Runner, every stored row against the
  reference applied to the same images' features;
- slow: full default-suite cells against a store written by the previous code (``STEPBENCH_PREVIOUS_STORE``: a
  copy of `make bench`'s store; copied again here, never written): the same points, the same values.
"""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import duckdb
import numpy as np
import pytest
import torch
from torch_fidelity.metric_fid import fid_features_to_statistics, fid_statistics_to_metric
from torch_fidelity.metric_isc import isc_features_to_metric
from torch_fidelity.metric_kid import kid_features_to_metric
from torch_fidelity.metric_prc import calculate_precision_recall_part

from bench.cell import CellSpec
from bench.data.base import prompts_for
from bench.data.mini import MiniDataset
from bench.generation import generate
from bench.metrics import blas, bootstrap, kid
from bench.metrics.fid_is_kid import FidIsKid
from bench.runner import Runner
from bench.suite import Suite

ROOT = Path(__file__).resolve().parent.parent
CPU = torch.device("cpu")


# -- reference implementations: the previous code, on torch-fidelity's own functions ------------------------------
def ref_mean_ci(values, resamples, seed, level):
    v = values.double()
    idx = bootstrap.resample_indices(len(v), resamples, seed)
    return bootstrap.percentile_ci(torch.cat([v[chunk].mean(dim=1) for chunk in idx.split(64)]), level)


def ref_statistic_ci(rows, statistic, resamples, seed, level):
    idx = bootstrap.resample_indices(len(rows), resamples, seed)
    return bootstrap.percentile_ci(torch.tensor([statistic(rows[i]) for i in idx], dtype=torch.float64), level)


def ref_kid(gen, ref, o, subset):
    return kid_features_to_metric(gen, ref, kid_subsets=o["kid_subsets"], kid_subset_size=subset, kid_kernel="poly",
                                  kid_kernel_poly_degree=o["kid_kernel_poly_degree"],
                                  kid_kernel_poly_gamma=o["kid_kernel_poly_gamma"],
                                  kid_kernel_poly_coef0=o["kid_kernel_poly_coef0"], rng_seed=o["kid_seed"],
                                  verbose=False)


def ref_fid_is_kid(gen_fid, gen_isc, ref_fid, o) -> dict[str, float]:
    n = len(gen_fid)
    s_ref = fid_features_to_statistics(ref_fid.double())

    def fid_of(feats):
        return float(fid_statistics_to_metric(s_ref, fid_features_to_statistics(feats.double()),
                                              verbose=False)["frechet_inception_distance"])

    isc = isc_features_to_metric(gen_isc, splits=o["isc_splits"], shuffle=True, rng_seed=o["isc_seed"])
    k = ref_kid(gen_fid, ref_fid, o, min(o["kid_subset_size"], n, len(ref_fid)))
    out = {"fid": fid_of(gen_fid), "is": isc["inception_score_mean"], "is_std": isc["inception_score_std"],
           "kid": k["kernel_inception_distance_mean"], "kid_std": k["kernel_inception_distance_std"]}
    if o["prc"] and n > o["prc_neighborhood"]:
        out["precision"], out["recall"] = calculate_precision_recall_part(gen_fid, ref_fid, o["prc_neighborhood"],
                                                                          o["prc_batch_size"])
    if o["bootstrap"]:
        out["fid_ci_low"], out["fid_ci_high"] = ref_statistic_ci(gen_fid, fid_of, o["bootstrap"],
                                                                 o["bootstrap_seed"], o["bootstrap_level"])
    return out


def ref_scores_summary(name, s, labels, o) -> dict[str, float]:
    out = {name: float(s.mean()), f"{name}_std": float(s.std()) if len(s) > 1 else 0.0}
    if o["bootstrap"]:
        out[f"{name}_ci_low"], out[f"{name}_ci_high"] = ref_mean_ci(s, o["bootstrap"], o["bootstrap_seed"],
                                                                    o["bootstrap_level"])
    if o["per_class"]:
        for y in torch.unique(labels).tolist():
            out[f"{name}/class/{y}"] = float(s[labels == y].mean())
    return out


def features(n, d, seed, shift=0.0):
    g = torch.Generator().manual_seed(seed)
    return (torch.randn(n, d, generator=g) * torch.rand(d, generator=g) * 3 + shift).float()


KID_OPTS = {"kid_subsets": 12, "kid_kernel_poly_degree": 3, "kid_kernel_poly_gamma": None,
            "kid_kernel_poly_coef0": 1.0, "kid_seed": 2020}


def ours_kid(gen, ref, o, subset, ref_kernel=None):
    return kid.kid_poly(gen, ref, kid_subsets=o["kid_subsets"], kid_subset_size=subset,
                        degree=o["kid_kernel_poly_degree"], gamma=o["kid_kernel_poly_gamma"],
                        coef0=o["kid_kernel_poly_coef0"], rng_seed=o["kid_seed"], ref_kernel=ref_kernel)


class _Calls:
    """Counts calls of torch-fidelity's KID loop from `bench.metrics.kid` (the fall-back), passing them on."""

    def __init__(self, monkeypatch):
        self.n = 0
        inner = kid.kid_features_to_metric

        def counted(*a, **k):
            self.n += 1
            return inner(*a, **k)

        monkeypatch.setattr(kid, "kid_features_to_metric", counted)


# -- KID ----------------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("n_gen,n_ref,d,subset,gamma,degree", [
    (250, 1000, 128, 250, None, 3), (500, 1000, 128, 250, None, 3), (120, 300, 128, 120, None, 3),
    (333, 457, 64, 100, 0.01, 2), (300, 300, 2048, 300, None, 3), (80, 90, 7, 33, 0.5, 4)])
def test_kid_from_gram_blocks_equals_torch_fidelity(monkeypatch, n_gen, n_ref, d, subset, gamma, degree):
    calls = _Calls(monkeypatch)
    gen, ref = features(n_gen, d, 1), features(n_ref, d, 2, shift=0.3)
    o = {**KID_OPTS, "kid_kernel_poly_gamma": gamma, "kid_kernel_poly_degree": degree}
    want = ref_kid(gen, ref, o, subset)
    assert ours_kid(gen, ref, o, subset) == want
    kept = kid.reference_kernel(ref.numpy(), degree, gamma, o["kid_kernel_poly_coef0"])
    assert ours_kid(gen, ref, o, subset, ref_kernel=kept) == want
    assert len(kept.sums) == 1                                # the reference subsets' sums, kept for the next cell
    other = features(n_gen, d, 11, shift=0.1)                 # the next cell of the dataset: the kept sums read
    assert ours_kid(other, ref, o, subset, ref_kernel=kept) == ref_kid(other, ref, o, subset)
    assert len(kept.sums) == 1
    assert calls.n == 0, "the Gram-block path fell back to torch-fidelity's loop on this machine"


def test_kid_kept_reference_sums_per_draw_sequence_and_checked(monkeypatch):
    """Another generated count draws other subsets: its own kept sums; a kept sum that is not the block's is seen
    on the checked first subset, and torch-fidelity's loop gives the value."""
    ref = features(400, 32, 21, shift=0.2)
    kept = kid.reference_kernel(ref.numpy(), 3, None, 1.0)
    for n_gen in (150, 200, 150):
        gen = features(n_gen, 32, n_gen)
        assert ours_kid(gen, ref, KID_OPTS, 100, ref_kernel=kept) == ref_kid(gen, ref, KID_OPTS, 100)
    assert sorted(k[0] for k in kept.sums) == [150, 200]
    calls = _Calls(monkeypatch)
    (key,) = [k for k in kept.sums if k[0] == 200]
    kept.sums[key][0] = kept.sums[key][0] + np.float32(1.0)
    gen = features(200, 32, 99)
    assert ours_kid(gen, ref, KID_OPTS, 100, ref_kernel=kept) == ref_kid(gen, ref, KID_OPTS, 100)
    assert calls.n == 1


@pytest.mark.parametrize("shape,m", [((250, 1000), 250), ((500, 1000), 250), ((40, 40), 40), ((1000, 30), 20)])
def test_kid_block_either_order_is_the_indexed_block(shape, m):
    """`kid._block` takes rows or columns first by their cost; both give ``g[np.ix_(rows, cols)]``, C-contiguous."""
    rng = np.random.RandomState(shape[0])
    g = rng.rand(*shape).astype(np.float32)
    rows, cols = rng.choice(shape[0], m, replace=False), rng.choice(shape[1], m, replace=False)
    got = kid._block(g, rows, cols)
    assert np.array_equal(got, g[np.ix_(rows, cols)]) and got.flags.c_contiguous


@pytest.mark.parametrize("workers,cores,subsets", [(1, 8, 50), (2, 1, 50), (2, 2, 50), (3, 8, 50), (4, 8, 7),
                                                    (2, 2, 1)])
def test_kid_subsets_in_parts_on_threads_equal_torch_fidelity(monkeypatch, workers, cores, subsets):
    """The subsets' MMDs split over worker threads (`kid._in_parts`): each in its place, the same bits as one loop."""
    monkeypatch.setattr(kid, "WORKERS", workers)
    monkeypatch.setattr(kid, "usable_cores", lambda: cores)
    monkeypatch.setattr(kid, "_pool", None)
    pieces = []
    real = kid._in_parts

    def recorded(part, n):
        out = real(part, n)
        pieces.append([len(p) for p in out])
        return out

    monkeypatch.setattr(kid, "_in_parts", recorded)
    gen, ref = features(250, 128, 5), features(1000, 128, 6, shift=0.3)
    o = {**KID_OPTS, "kid_subsets": subsets}
    assert ours_kid(gen, ref, o, 250) == ref_kid(gen, ref, o, 250)
    assert sum(pieces[0]) == subsets
    assert len(pieces[0]) == min(workers, cores, max(1, subsets // 8))


@pytest.mark.skipif(not hasattr(os, "fork"), reason="no fork on this platform")
def test_kid_in_a_forked_child_starts_its_own_threads(monkeypatch):
    """A child forked after the pool started (none of its threads exist there) computes KID, never waits forever."""
    monkeypatch.setattr(kid, "usable_cores", lambda: 2)
    gen, ref = features(250, 16, 7), features(400, 16, 8)
    o = {**KID_OPTS, "kid_subsets": 40}
    want = ours_kid(gen, ref, o, 100)                         # the parent's pool is running now
    assert kid._pool is not None
    pid = os.fork()
    if pid == 0:                                              # the child: exit 0 only with the same value
        import signal
        signal.alarm(60)
        os._exit(0 if ours_kid(gen, ref, o, 100) == want else 3)
    _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0


def test_kid_falls_back_when_a_block_differs(monkeypatch):
    gen, ref = features(200, 32, 3), features(300, 32, 4)
    want = ref_kid(gen, ref, KID_OPTS, 100)
    calls = _Calls(monkeypatch)
    good = kid.reference_kernel(ref.numpy(), 3, None, 1.0)
    bad = kid.ReferenceKernel(good.matrix + np.float32(1e-3))   # a kernel matrix whose blocks are not the products'
    assert ours_kid(gen, ref, KID_OPTS, 100, ref_kernel=bad) == want and calls.n == 1
    assert ours_kid(gen, ref, KID_OPTS, 100, ref_kernel=good) == want and calls.n == 1


def test_kid_large_or_small_sets_use_torch_fidelity(monkeypatch):
    gen, ref = features(60, 16, 5), features(70, 16, 6)
    calls = _Calls(monkeypatch)
    monkeypatch.setattr(kid, "MAX_GRAM_ENTRIES", 60 * 60 + 70 * 70 + 60 * 70 - 1)
    assert ours_kid(gen, ref, KID_OPTS, 50) == ref_kid(gen, ref, KID_OPTS, 50) and calls.n == 1
    with pytest.raises(Exception, match="KID subset size"):   # torch-fidelity's own refusal, as before
        ours_kid(gen, ref, KID_OPTS, 65)


# -- OpenBLAS on one thread -----------------------------------------------------------------------------------------
@pytest.mark.parametrize("d", [128, 512, 2048])
def test_products_on_one_blas_thread_equal_the_default_ones(d):
    before = blas.thread_counts()
    gen, ref = features(300, d, 12), features(400, d, 13, shift=0.2)
    with blas.threads(max(2, os.cpu_count() or 2)):            # many threads, whatever OMP_NUM_THREADS says
        want = (fid_features_to_statistics(gen.double()), ref_kid(gen, ref, KID_OPTS, 250))
    with blas.single_threaded():
        assert all(c == 1 for c in blas.thread_counts())
        got = (fid_features_to_statistics(gen.double()), ours_kid(gen, ref, KID_OPTS, 250))
    assert blas.thread_counts() == before                     # restored
    assert np.array_equal(got[0]["mu"], want[0]["mu"]) and np.array_equal(got[0]["sigma"], want[0]["sigma"])
    assert got[1] == want[1]


def test_one_blas_thread_is_restored_when_the_block_raises():
    before = blas.thread_counts()
    with pytest.raises(RuntimeError, match="inside"):
        with blas.single_threaded():
            with blas.single_threaded():                      # nested: the outer block restores
                raise RuntimeError("inside")
    assert blas.thread_counts() == before


@pytest.fixture
def two_blas_threads():
    """Every loaded OpenBLAS on two threads for the test (restored after), verdicts of other tests forgotten."""
    libs = blas._libraries()
    if not libs:
        pytest.skip("no OpenBLAS found in this process: single_threaded_if_same has nothing to choose")
    before = [g() for _, g in libs]
    for setter, _ in libs:
        setter(2)
    saved = dict(blas._same_bits)
    blas._same_bits.clear()
    yield
    for (setter, _), n in zip(libs, before):
        setter(n)
    blas._same_bits.clear()
    blas._same_bits.update(saved)


def test_one_thread_only_where_it_was_seen_to_give_the_same_result(two_blas_threads):
    seen = []

    def counts():                                   # a result that depends on the thread count
        seen.append(tuple(blas.thread_counts()))
        return seen[-1]

    assert blas.single_threaded_if_same("depends", counts, lambda a, b: a == b) == (2,) * len(seen[0])
    assert len(seen) == 2 and set(seen[1]) == {1}  # checked both ways, the default-threads result returned
    assert blas.single_threaded_if_same("depends", counts, lambda a, b: a == b) == seen[0]
    assert len(seen) == 3                           # verdict: different, so default threads from then on
    inside = []

    def same():                                     # a result that does not
        inside.append(tuple(blas.thread_counts()))
        return 42

    assert [blas.single_threaded_if_same("same", same, lambda a, b: a == b) for _ in range(3)] == [42] * 3
    assert set(inside[0]) == {2} and all(set(c) == {1} for c in inside[1:])   # one thread once checked


@pytest.mark.parametrize("d", [128, 512, 2048])
def test_fid_through_the_thread_verdict_equals_torch_fidelitys(two_blas_threads, d):
    gen, ref = features(300, d, 12), features(400, d, 13, shift=0.2)
    s_gen, s_ref = fid_features_to_statistics(gen.double()), fid_features_to_statistics(ref.double())
    want = float(fid_statistics_to_metric(s_ref, s_gen, verbose=False)["frechet_inception_distance"])

    def fid():
        return float(fid_statistics_to_metric(s_ref, s_gen, verbose=False)["frechet_inception_distance"])

    first = blas.single_threaded_if_same(("fid", d), fid, lambda a, b: a == b)    # checks, default threads
    then = [blas.single_threaded_if_same(("fid", d), fid, lambda a, b: a == b) for _ in range(2)]
    assert first == want and then == [want, want]


# -- bootstrap ----------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("n,resamples", [(250, 1000), (500, 1000), (37, 130), (2000, 200)])
def test_bootstrap_intervals_equal_the_previous_loops(n, resamples):
    s = features(n, 1, 7)[:, 0].double() * 10 + 25
    assert bootstrap.mean_ci(s, resamples, 2020, 0.95) == ref_mean_ci(s, resamples, 2020, 0.95)
    rows = features(n, 8, 8)
    stat = lambda r: float(r.double().var(dim=0).sum() + r.double().mean())    # noqa: E731
    assert bootstrap.statistic_ci(rows, stat, 40, 3, 0.9) == ref_statistic_ci(rows, stat, 40, 3, 0.9)
    # again: the kept index matrix (small sizes) gives the same intervals
    assert bootstrap.mean_ci(s, resamples, 2020, 0.95) == ref_mean_ci(s, resamples, 2020, 0.95)


def test_bootstrap_indices_kept_only_when_small(monkeypatch):
    """The same arguments draw once while the matrix is small; larger ones are drawn on every call; the kept
    matrix equals a fresh draw."""
    drawn = []
    real = bootstrap.resample_indices
    monkeypatch.setattr(bootstrap, "resample_indices", lambda *a: drawn.append(a) or real(*a))
    bootstrap._kept_indices.cache_clear()
    first = bootstrap._indices(300, 100, 9)
    assert bootstrap._indices(300, 100, 9) is first and drawn == [(300, 100, 9)]
    assert torch.equal(first, real(300, 100, 9))
    monkeypatch.setattr(bootstrap, "MAX_KEPT_INDICES", 300 * 100 - 1)
    assert bootstrap._indices(300, 100, 9) is not bootstrap._indices(300, 100, 9) and len(drawn) == 3
    bootstrap._kept_indices.cache_clear()


# -- FidIsKid.compute and its per-reference caches ------------------------------------------------------------------
def test_compute_with_reference_caches_equals_reference(tmp_path):
    m = FidIsKid({"feature_extractor": "toy-extractor", "kid_subset_size": 100, "kid_subsets": 20, "bootstrap": 25},
                 CPU, tmp_path)
    ds = MiniDataset("mini-val", 300)
    ref = m.reference_features(ds)
    gen_fid = features(150, ref.shape[1], 9, shift=0.1)
    gen_isc = torch.randn(150, 10, generator=torch.Generator().manual_seed(10))
    want = ref_fid_is_kid(gen_fid, gen_isc, ref, m.opt)
    assert m.compute(gen_fid, gen_isc, ref) == want
    assert set(m.reference(ds).derived) == {"fid_stats", "kid_kernel"}   # kept for the next cell of this set
    assert m.compute(gen_fid, gen_isc, ref) == want                     # ... and the same values from them
    other = features(200, ref.shape[1], 11)                   # features that are not a held reference set's
    assert m.compute(gen_fid, gen_isc, other) == ref_fid_is_kid(gen_fid, gen_isc, other, m.opt)
    assert set(m.reference(ds).derived) == {"fid_stats", "kid_kernel"}


def test_a_cell_keeps_its_own_reference_while_the_metric_moves_on(tmp_path):
    """A cell's accumulator finalized after the metric has loaded other reference sets (the next cells, on the
    runner's worker thread) still uses its own set's features, radii and derived statistics."""
    m = FidIsKid({"feature_extractor": "toy-extractor", "kid_subset_size": 60, "kid_subsets": 10}, CPU, tmp_path)
    ds = MiniDataset("mini-val", 120)
    acc = m.accumulator(ds)
    images, labels = MiniDataset("mini-ood", 90).reference_batches(90).__next__()
    acc.update(images, labels, [""] * 90, torch.arange(90))
    state = acc.state()
    for i, name in enumerate(("mini-v2", "mini-ood", "mini-v2", "mini-ood")):   # evicts mini-val (MAX_REFERENCES)
        m.reference(MiniDataset(name, 100 + i))
    gen_fid, gen_isc = torch.cat(state["rows"]["fid"]), torch.cat(state["rows"]["isc"])
    ref = MiniDataset("mini-val", 120)
    want = ref_fid_is_kid(gen_fid, gen_isc, FidIsKid(m.opt, CPU, tmp_path).reference_features(ref), m.opt)
    assert acc.result() == want


# -- end to end: default-suite cells at reduced n ------------------------------------------------------------------
# The default suite's metric options, except the metric networks' batch (n, so no padded rows: the features are the
# same code either way, and this keeps the test short), on 2 datasets of 250 images, 100 samples a cell.
SUITE = """
suite: values-unchanged
seed: 42
batch_size: 50
device: cpu
samples: {plan: per_reference, n: 100}
keep_samples: 2
timing: {enabled: false}
datasets: [{id: mini-val, options: {size: 250}}, {id: mini-ood, options: {size: 250}}]
metrics:
  fid_is_kid: {feature_extractor: mini-classifier, kid_subset_size: 250, kid_subsets: 50, batch_size: 100}
  clip_score: {backend: mini, model: clip, batch_size: 100}
  pickscore: {backend: mini, model: pick, batch_size: 100}
models:
  - {id: mini-meanflow, adapter: mini-meanflow, steps: [1], cfg: [1.0, 3.0]}
  - {id: real-vs-real, adapter: real}
"""


def _query(db, sql: str) -> list[tuple]:
    """The rows of ``sql`` on a store opened read-only (closed again)."""
    con = duckdb.connect(str(db), read_only=True)
    try:
        return con.execute(sql).fetchall()
    finally:
        con.close()


def stored_rows(db) -> dict[tuple, dict[str, float]]:
    """(model, dataset, steps, cfg) -> every stored metric row of that cell, per-class rows included."""
    rows = _query(db, "SELECT c.model_id, c.dataset, c.steps, c.cfg, m.metric, m.value FROM metrics m "
                      "JOIN cells c USING (key) WHERE c.status = 'ok'")
    out: dict[tuple, dict[str, float]] = {}
    for model, ds, steps, cfg, metric, value in rows:
        out.setdefault((model, ds, steps, cfg), {})[metric] = value
    return out


def reference_values(runner: Runner, cell) -> dict[str, float]:
    """The cell's images generated again (sample i depends only on (seed, i)), their features from the metric
    networks, and the reference statistics of this file on them, in sample-id order as the accumulators sort."""
    engine = runner.engine
    adapter = engine.load(cell.model)
    dataset, labels, ids = engine.samples(CellSpec(cell, "", ""))
    b = cell.batch_size
    images = torch.cat([generate(adapter, cell, labels[i:i + b], ids[i:i + b]) for i in range(0, len(ids), b)])
    order = torch.argsort(ids, stable=True)
    metrics = engine.metrics(cell)
    fik = metrics["fid_is_kid"]
    gen_fid, gen_isc = fik.features(images)
    out = ref_fid_is_kid(gen_fid[order], gen_isc[order], fik.reference_features(dataset), fik.opt)
    prompts = prompts_for(dataset, labels)
    for name in ("clip_score", "pickscore"):
        s = metrics[name].scores(images, prompts)
        out.update(ref_scores_summary(name, s[order], labels[order].long(), metrics[name].opt))
    return out


@pytest.mark.parametrize("overlap", [True, False], ids=["statistics-thread", "in-line"])
def test_default_suite_cells_equal_the_reference_implementation(tmp_path, overlap):
    """Both ways of running a cell's statistics (on a worker thread beside the next cell's first batch, or in line:
    `bench.runner.spare_core` picks one per machine) store the reference implementation's values."""
    suite = Suite.parse(SUITE, "values.yaml")
    runner = Runner(suite, db=tmp_path / "b.duckdb", progress=False, overlap_statistics=overlap)
    assert runner.overlap_statistics is overlap
    summary = runner.run()
    assert summary.ran == len(suite.expand()) == 6 and not summary.failures, summary.failures
    stored = stored_rows(tmp_path / "b.duckdb")
    for cell in suite.expand():
        got = stored[(cell.model.id, cell.dataset, cell.steps, cell.cfg)]
        want = reference_values(runner, cell)
        assert set(got) == set(want), (cell.model.id, cell.dataset, set(got) ^ set(want))
        diff = {k: (got[k], want[k]) for k in want if got[k] != want[k]}
        assert not diff, f"{cell.model.id} {cell.dataset} steps={cell.steps} cfg={cell.cfg}: {diff}"


# -- slow: full default-suite cells against the previous code's store ----------------------------------------------
PREVIOUS = os.environ.get("STEPBENCH_PREVIOUS_STORE")
# points (model, dataset, steps, cfg) to re-run, one per model where the previous store has them
WANTED = [("mini-sit", "mini-val", 4, 1.5), ("mini-sit", "mini-ood", 1, 1.0), ("mini-meanflow", "mini-v2", 1, 3.0),
          ("mini-distill", "mini-val", 2, 1.5), ("real-vs-real", "mini-ood", None, None)]


def _cells(db) -> dict[tuple, tuple[str, dict]]:
    """(model, dataset, steps, cfg) -> (key, provenance) of a store's ok default-suite cells."""
    rows = _query(db, "SELECT model_id, dataset, steps, cfg, key, provenance FROM cells "
                      "WHERE suite = 'mini' AND status = 'ok'")
    return {tuple(r[:4]): (r[4], json.loads(r[5])) for r in rows}


@pytest.mark.slow
@pytest.mark.skipif(not PREVIOUS or not Path(PREVIOUS).is_file(),
                    reason="set STEPBENCH_PREVIOUS_STORE to a default-suite store written by the previous code")
def test_default_suite_cells_equal_the_previous_store(tmp_path):
    """The same sweep points re-run now give every stored metric row the same value (``==``), when the previous
    store's cells were measured with the same weights and metric versions as this tree's (their provenance says;
    other weights mean other numbers by design, and the test says so instead of comparing)."""
    prev = tmp_path / "previous.duckdb"                 # a private copy: the given store is never opened
    shutil.copyfile(PREVIOUS, prev)
    if Path(PREVIOUS + ".wal").is_file():
        shutil.copyfile(PREVIOUS + ".wal", str(prev) + ".wal")
    before = _cells(prev)
    wanted = [p for p in WANTED if p in before]
    assert wanted, "the previous store has none of the wanted default-suite cells"
    previous = stored_rows(prev)
    suite = Suite.load(ROOT / "suites" / "mini.yaml")
    point = lambda c: (c.model.id, c.dataset, c.steps, c.cfg)                 # noqa: E731
    runner = Runner(suite, db=tmp_path / "new.duckdb", cache_dir=tmp_path / "cache", progress=False,
                    skip=lambda c: point(c) not in wanted)
    summary = runner.run()
    assert summary.ran == len(wanted) and not summary.failures, summary.failures
    now, after = stored_rows(tmp_path / "new.duckdb"), _cells(tmp_path / "new.duckdb")
    identity = ("weights", "metrics", "adapter_version", "dataset_fingerprint")
    other = {p: k for p in wanted for k in identity if before[p][1].get(k) != after[p][1].get(k)}
    if other:
        pytest.skip(f"the previous store measured other weights or versions ({other}): not comparable")
    for p in wanted:
        got, want = now[p], previous[p]
        assert set(got) == set(want), (p, set(got) ^ set(want))
        diff = {k: (got[k], want[k]) for k in want if got[k] != want[k]}
        assert not diff, f"{p}: {diff}"
        if before[p][0] != after[p][0]:                 # same inputs, another key: the key scheme moved
            print(f"note: {p}: key {before[p][0][:12]} then, {after[p][0][:12]} now (same weights and versions)")
