"""Our streaming FID / IS / KID equal torch-fidelity's own calculate_metrics on the same images."""

import pytest
import torch
import torch_fidelity

from bench.data.mini import MiniDataset
from bench.metrics.fid_is_kid import FidIsKid
from bench.mini import data
from tests.images import TorchFidelityImages as _Images
from tests.random_inception import random_inception


def test_matches_torch_fidelity_calculate_metrics(tmp_path):
    ref = MiniDataset("mini-val", 120)
    gen_np, labels = data.batch("ood", 0, 100)       # a shifted set, so FID is clearly non-zero
    gen = torch.from_numpy(gen_np)
    m = FidIsKid({"feature_extractor": "toy-extractor", "kid_subset_size": 50, "kid_subsets": 20,
                  "batch_size": 32}, torch.device("cpu"), tmp_path)
    acc = m.accumulator(ref)
    for s in range(0, 100, 30):
        acc.update(gen[s:s + 30], torch.from_numpy(labels[s:s + 30]), [""] * len(gen[s:s + 30]),
                   torch.arange(s, min(s + 30, 100)))
    ours = acc.result()
    ref_imgs = torch.cat([x for x, _ in ref.reference_batches(64)])
    tf = torch_fidelity.calculate_metrics(
        input1=_Images(gen), input2=_Images(ref_imgs), cuda=False, fid=True, isc=True, kid=True,
        feature_extractor="toy-extractor", feature_layer_fid="feat", feature_layer_kid="feat",
        feature_layer_isc="logits_unbiased", kid_subset_size=50, kid_subsets=20, batch_size=32,
        verbose=False, cache=False, save_cpu_ram=True, prc=True, feature_layer_prc="feat")
    assert ours["fid"] == pytest.approx(tf["frechet_inception_distance"], rel=1e-6)
    assert ours["is"] == pytest.approx(tf["inception_score_mean"], rel=1e-6)
    assert ours["kid"] == pytest.approx(tf["kernel_inception_distance_mean"], rel=1e-6)
    assert ours["precision"] == tf["precision"] and ours["recall"] == tf["recall"]
    assert ours["fid"] > 0.01


def test_reference_features_are_cached_by_content(tmp_path, monkeypatch):
    ref = MiniDataset("mini-val", 50)
    m = FidIsKid({"feature_extractor": "toy-extractor"}, torch.device("cpu"), tmp_path)
    first = m.reference_features(ref)
    files = list((tmp_path / "refstats").glob("*.safetensors"))
    assert len(files) == 1
    fresh = FidIsKid({"feature_extractor": "toy-extractor"}, torch.device("cpu"), tmp_path)
    monkeypatch.setattr(MiniDataset, "reference_batches", lambda *a: pytest.fail("recomputed reference features"))
    assert torch.equal(fresh.reference_features(ref), first)
    monkeypatch.undo()
    fresh.reference_features(MiniDataset("mini-val", 60))     # another reference set -> another entry
    assert len(list((tmp_path / "refstats").glob("*.safetensors"))) == 2


@pytest.fixture(scope="module")
def random_inception_weights(tmp_path_factory):
    """inception-v3-compat with random weights, saved as a plain state dict (no download)."""
    net = random_inception()
    path = tmp_path_factory.mktemp("w") / "inception.pth"
    torch.save(net.state_dict(), path)
    return path


def test_inception_v3_compat_from_a_local_weights_file(tmp_path, random_inception_weights):
    m = FidIsKid({"feature_extractor_weights_path": str(random_inception_weights), "kid_subset_size": 10,
                  "batch_size": 4},
                 torch.device("cpu"), tmp_path)
    assert m.layer_fid == "2048" and m.layer_isc == "logits_unbiased"
    assert m.weights_id().startswith("sha256:")
    fid, isc = m.features(torch.from_numpy(data.batch("val", 0, 4)[0]))
    assert fid.shape == (4, 2048) and isc.shape == (4, 1008)


@pytest.mark.filterwarnings("ignore:Detected pickle protocol")
def test_pickled_code_in_a_weights_file_is_refused(tmp_path):
    import pickle

    class Payload:
        def __reduce__(self):
            return (open, (str(tmp_path / "pwned"), "w"))

    path = tmp_path / "evil.pth"
    path.write_bytes(pickle.dumps({"x": Payload()}))
    m = FidIsKid({"feature_extractor_weights_path": str(path)}, torch.device("cpu"), tmp_path)
    with pytest.raises(Exception, match="refusing to load"):
        m.extractor
    assert not (tmp_path / "pwned").exists()


def test_precision_recall_with_cached_real_radii_equal_torch_fidelity():
    from torch_fidelity.metric_prc import prc_features_to_metric

    from bench.metrics import prc
    g = torch.Generator().manual_seed(3)
    gen, ref = 0.5 + torch.rand(90, 4, generator=g), 1.2 * torch.rand(130, 4, generator=g)
    for k, bs in ((3, 10000), (5, 40)):          # one batch, and several (torch-fidelity's batching is kept)
        tf = prc_features_to_metric(gen, ref, prc_neighborhood=k, prc_batch_size=bs, save_cpu_ram=True, verbose=False)
        ours = prc.precision_recall(gen, ref, prc.radii(ref, k, bs), k, bs)
        assert ours == (tf["precision"], tf["recall"])                      # exact
        assert 0 < ours[0] < 1 and 0 < ours[1] < 1                          # a case that discriminates


def test_real_radii_are_computed_once_per_reference_set(tmp_path, monkeypatch):
    from bench.metrics import prc
    calls = []
    real = prc.radii
    monkeypatch.setattr(prc, "radii", lambda f, k, bs: calls.append(len(f)) or real(f, k, bs))
    ref = MiniDataset("mini-val", size=60)
    m = FidIsKid({"feature_extractor": "toy-extractor", "kid_subset_size": 20, "kid_subsets": 5, "batch_size": 16},
                 torch.device("cpu"), tmp_path)
    imgs = torch.randint(0, 256, (40, data.RES, data.RES, 3), dtype=torch.uint8)
    for _ in range(2):                     # two cells on the same reference set
        acc = m.accumulator(ref)
        acc.update(imgs, torch.zeros(40, dtype=torch.long), ["x"] * 40, torch.arange(40))
        out = acc.result()
    assert calls == [60, 40, 40], "real radii once (60 reference rows), generated radii per cell (40 rows)"
    assert 0 <= out["precision"] <= 1 and 0 <= out["recall"] <= 1
    m2 = FidIsKid(dict(m.opt), torch.device("cpu"), tmp_path)     # a new process: radii from the disk cache
    acc = m2.accumulator(ref)
    acc.update(imgs, torch.zeros(40, dtype=torch.long), ["x"] * 40, torch.arange(40))
    assert acc.result()["precision"] == out["precision"] and calls == [60, 40, 40, 40]
