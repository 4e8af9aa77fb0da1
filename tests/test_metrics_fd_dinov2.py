"""FD-DINOv2 with a tiny random Dinov2Model saved to a temp dir equals torch-fidelity's dinov2 extractor path (its
preprocessing, its FD) fed the same network; missing weights give one clear error."""

import pytest
import torch
import torch_fidelity

from bench.data.mini import MiniDataset
from bench.metrics.base import MetricError
from bench.metrics.fd_dinov2 import FdDinov2
from bench.mini import data
from tests.images import TorchFidelityImages as _Images
from tests.tiny_models import save_tiny_dinov2

CPU = torch.device("cpu")


@pytest.fixture(scope="module")
def tiny_dinov2(tmp_path_factory):
    return save_tiny_dinov2(tmp_path_factory.mktemp("tiny-dinov2"))


def test_fd_dinov2_equals_torch_fidelity_with_the_same_network(tmp_path, tiny_dinov2, monkeypatch):
    ref = MiniDataset("mini-val", 30)
    gen_np, labels = data.batch("ood", 0, 24)
    gen, labels = torch.from_numpy(gen_np), torch.from_numpy(labels)
    m = FdDinov2({"model": str(tiny_dinov2), "batch_size": 16}, CPU, tmp_path)
    acc = m.accumulator(ref)
    for s in range(0, 24, 10):
        acc.update(gen[s:s + 10], labels[s:s + 10], [""] * len(gen[s:s + 10]), torch.arange(s, min(s + 10, 24)))
    ours = acc.result()["fd_dinov2"]

    class HubLike(torch.nn.Module):      # what torch.hub's dinov2 returns: the final-normed CLS token
        def __init__(self, hf):
            super().__init__()
            self.hf = hf

        def forward(self, x):
            return self.hf(pixel_values=x).pooler_output

    monkeypatch.setattr(torch.hub, "load", lambda *a, **k: HubLike(m.model))
    ref_imgs = torch.cat([x for x, _ in ref.reference_batches(64)])
    tf = torch_fidelity.calculate_metrics(input1=_Images(gen), input2=_Images(ref_imgs), cuda=False, fid=True,
                                          feature_extractor="dinov2-vit-b-14", batch_size=16, verbose=False,
                                          cache=False, save_cpu_ram=True)
    assert ours == pytest.approx(tf["frechet_inception_distance"], rel=1e-5)
    assert ours > 1e-3
    d = m.describe()
    assert d["weights"].startswith("sha256:") and "TF1-compatible bilinear" in d["resize"]


def test_missing_dinov2_weights_give_one_clear_error(tmp_path, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "hf"))
    m = FdDinov2({}, CPU, tmp_path)
    with pytest.raises(MetricError, match="facebook/dinov2-large.*huggingface-cli download"):
        m.version_key()
    with pytest.raises(MetricError, match="fd_dinov2: modle: unknown option \\(did you mean 'model'\\?\\)"):
        FdDinov2({"modle": "x"}, CPU, tmp_path)
