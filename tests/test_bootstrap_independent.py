"""The CLIP Score and FID bootstrap intervals equal an independent resample written here: the documented draws
(a ``torch.Generator`` seeded with ``bootstrap_seed``, n indices with replacement per resample over the rows in
sample-id order), then numpy means / a scipy Frechet distance and numpy's linear-interpolation percentiles.
Only the per-sample rows (scores, features) come from the code under test."""

from __future__ import annotations

import numpy as np
import pytest
import scipy.linalg
import torch

import tests.toy_extractor  # noqa: F401  (registers toy-extractor)
from bench.data.mini import MiniDataset
from bench.metrics.clip_score import ClipScore
from bench.metrics.fid_is_kid import FidIsKid
from bench.mini import data

CPU = torch.device("cpu")


def _draws(n: int, resamples: int, seed: int) -> np.ndarray:
    g = torch.Generator().manual_seed(seed)
    return torch.randint(0, n, (resamples, n), generator=g).numpy()


def _interval(stats: np.ndarray, level: float) -> tuple[float, float]:
    a = (1 - level) / 2
    return float(np.percentile(stats, 100 * a)), float(np.percentile(stats, 100 * (1 - a)))


def _rows(acc, key: str, order: np.ndarray) -> np.ndarray:
    return torch.cat(acc.state()["rows"][key]).double().numpy()[order]


def _feed(m, images, labels, ids):
    acc = m.accumulator(MiniDataset("mini-val", 60))
    for s in range(0, len(images), 11):                       # shuffled arrival: rows are put in id order
        acc.update(images[s:s + 11], labels[s:s + 11], [data.prompt(int(y)) for y in labels[s:s + 11]],
                   ids[s:s + 11])
    return acc


def _frechet(a: np.ndarray, b: np.ndarray) -> float:
    mu1, mu2 = a.mean(0), b.mean(0)
    s1, s2 = np.cov(a, rowvar=False), np.cov(b, rowvar=False)
    covmean = scipy.linalg.sqrtm(s1 @ s2).real
    return float(((mu1 - mu2) ** 2).sum() + np.trace(s1) + np.trace(s2) - 2 * np.trace(covmean))


@pytest.fixture(scope="module")
def batch():
    imgs, labels = data.batch("ood", 0, 40)
    perm = torch.randperm(40, generator=torch.Generator().manual_seed(1))
    return torch.from_numpy(imgs)[perm], torch.from_numpy(labels)[perm], perm


@pytest.mark.parametrize("level,seed", [(0.95, 2020), (0.8, 7)])
def test_clip_score_interval_equals_an_independent_resample(tmp_path, batch, level, seed):
    images, labels, ids = batch
    m = ClipScore({"backend": "mini", "model": "clip", "batch_size": 16, "bootstrap": 200, "bootstrap_seed": seed,
                   "bootstrap_level": level}, CPU, tmp_path)
    acc = _feed(m, images, labels, ids)
    order = np.argsort(torch.cat(acc.state()["ids"]).numpy(), kind="stable")
    scores = _rows(acc, "score", order)
    got = acc.result()
    means = scores[_draws(len(scores), 200, seed)].mean(axis=1)
    low, high = _interval(means, level)
    assert got["clip_score_ci_low"] == pytest.approx(low, rel=1e-9)
    assert got["clip_score_ci_high"] == pytest.approx(high, rel=1e-9)
    assert low < got["clip_score"] < high


def test_fid_interval_equals_an_independent_resample(tmp_path, batch):
    images, labels, ids = batch
    opts = {"feature_extractor": "toy-extractor", "kid_subset_size": 10, "kid_subsets": 5, "batch_size": 16,
            "bootstrap": 30, "bootstrap_seed": 5}
    m = FidIsKid(opts, CPU, tmp_path)
    acc = _feed(m, images, labels, ids)
    order = np.argsort(torch.cat(acc.state()["ids"]).numpy(), kind="stable")
    gen = _rows(acc, "fid", order)
    ref_images, ref_labels = next(MiniDataset("mini-val", 60).reference_batches(60))
    ref_acc = FidIsKid(opts, CPU, tmp_path).accumulator(MiniDataset("mini-val", 60))
    ref_acc.update(ref_images, ref_labels, [""] * 60, torch.arange(60))
    ref = torch.cat(ref_acc.state()["rows"]["fid"]).double().numpy()
    got = acc.result()
    assert got["fid"] == pytest.approx(_frechet(gen, ref), rel=1e-6)
    stats = np.array([_frechet(gen[i], ref) for i in _draws(len(gen), 30, 5)])
    low, high = _interval(stats, 0.95)
    assert got["fid_ci_low"] == pytest.approx(low, rel=1e-6)
    assert got["fid_ci_high"] == pytest.approx(high, rel=1e-6)
