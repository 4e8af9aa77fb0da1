"""The real inception-v3-compat network (random weights saved to a temp dir, scaled so features are informative):
our FID / IS / KID / precision / recall equal torch-fidelity's calculate_metrics to 1e-6 and our FID equals
torchmetrics' FrechetInceptionDistance (antialias off, the same weights file) to 1e-5. Slow on CPU (three
Inception passes over ~40 images at 299x299), so `make test-slow`."""

import pytest
import torch
import torch_fidelity

from bench.data.mini import MiniDataset
from bench.metrics.fid_is_kid import FidIsKid
from bench.mini import data
from tests.images import TorchFidelityImages as _Images
from tests.random_inception import random_inception

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def inception_weights(tmp_path_factory):
    net = random_inception(informative=True)
    path = tmp_path_factory.mktemp("w") / "inception.pth"
    torch.save(net.state_dict(), path)
    return path


def test_inception_v3_compat_matches_torch_fidelity_and_torchmetrics(tmp_path, inception_weights):
    from torchmetrics.image.fid import FrechetInceptionDistance

    n = 20
    ref = MiniDataset("mini-val", n)
    gen_np, labels = data.batch("ood", 0, n)
    gen = torch.from_numpy(gen_np)
    m = FidIsKid({"feature_extractor_weights_path": str(inception_weights), "kid_subset_size": 10,
                  "kid_subsets": 10, "isc_splits": 2, "batch_size": 10}, torch.device("cpu"), tmp_path)
    acc = m.accumulator(ref)
    for s in range(0, n, 7):
        acc.update(gen[s:s + 7], torch.from_numpy(labels[s:s + 7]), [""] * len(gen[s:s + 7]),
                   torch.arange(s, min(s + 7, n)))
    ours = acc.result()
    ref_imgs = torch.cat([x for x, _ in ref.reference_batches(64)])
    tf = torch_fidelity.calculate_metrics(
        input1=_Images(gen), input2=_Images(ref_imgs), cuda=False, fid=True, isc=True, kid=True, prc=True,
        feature_extractor="inception-v3-compat", feature_extractor_weights_path=str(inception_weights),
        kid_subset_size=10, kid_subsets=10, isc_splits=2, batch_size=10, verbose=False, cache=False,
        save_cpu_ram=True)
    assert ours["fid"] > 1e-3, "features should be informative"
    assert ours["fid"] == pytest.approx(tf["frechet_inception_distance"], rel=1e-6)
    assert ours["is"] == pytest.approx(tf["inception_score_mean"], rel=1e-6)
    assert ours["kid"] == pytest.approx(tf["kernel_inception_distance_mean"], rel=1e-6)
    assert ours["precision"] == tf["precision"] and ours["recall"] == tf["recall"]

    tm = FrechetInceptionDistance(feature=2048, feature_extractor_weights_path=str(inception_weights),
                                  antialias=False)
    tm.set_dtype(torch.float64)
    tm.update(ref_imgs.permute(0, 3, 1, 2), real=True)
    tm.update(gen.permute(0, 3, 1, 2), real=False)
    assert ours["fid"] == pytest.approx(float(tm.compute()), rel=1e-5)
