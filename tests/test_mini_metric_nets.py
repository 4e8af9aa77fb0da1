"""The miniature world's metric networks: shipped weights, integrity checks, and that they do their job."""

from __future__ import annotations

import shutil

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from bench.metrics.clip_preprocess import preprocess_uint8
from bench.mini import data as D
from bench.mini import metric_nets as M
from bench.mini import weights as W

N = 300   # held-out val images per check (thresholds below leave margin under the accuracies measured at 2,000)


@pytest.fixture(autouse=True, scope="module")
def _one_thread():
    prev = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(prev)


@pytest.fixture(scope="module")
def val():
    return D.batch("val", 0, N)


def test_manifest_entries_match_files():
    manifest = W.read_manifest()
    total = 0
    for name in ("classifier", "clip", "pick"):
        assert name in manifest, f"missing manifest entry {name!r}"
        e = manifest[name]
        path = W.WEIGHTS_DIR / e["file"]
        assert path.exists()
        assert W.sha256_file(path) == e["sha256"]
        assert e["dtype"] == "float16"
        total += path.stat().st_size
    assert total < 4_000_000, f"metric weights take {total} bytes"


def test_tampered_weights_are_refused(tmp_path):
    for name in ("classifier", "clip"):
        shutil.copy(W.WEIGHTS_DIR / W.entry(name)["file"], tmp_path)
    shutil.copy(W.WEIGHTS_DIR / W.MANIFEST, tmp_path)
    W.load("clip", tmp_path)                                  # the untouched copy loads
    M.load_clip("clip", tmp_path)
    for name in ("classifier", "clip"):
        path = tmp_path / W.entry(name)["file"]
        raw = bytearray(path.read_bytes())
        raw[-7] ^= 0x01                                       # one bit inside the tensor data
        path.write_bytes(bytes(raw))
        with pytest.raises(W.WeightsError, match="sha256"):
            W.load(name, tmp_path)
    with pytest.raises(W.WeightsError):
        M.load_clip("clip", tmp_path)


def test_classifier_accuracy(val):
    imgs, labels = val
    net = M.load_classifier()
    with torch.no_grad():
        pred = net(M.uint8_to_input(torch.from_numpy(imgs).permute(0, 3, 1, 2))).argmax(1).numpy()
    assert (pred == labels).mean() >= 0.97


def test_extractor_through_torch_fidelity_registry(val):
    from torch_fidelity.registry import FEATURE_EXTRACTORS_REGISTRY
    from torch_fidelity.utils import create_feature_extractor
    assert M.register() == "mini-classifier"
    M.register()                                              # idempotent
    assert FEATURE_EXTRACTORS_REGISTRY["mini-classifier"] is M.MiniClassifierExtractor
    fe = create_feature_extractor("mini-classifier", ["feat", "logits_unbiased"], cuda=False, verbose=False)
    assert fe.get_default_feature_layer_for_metric("fid") == "feat"
    assert fe.get_default_feature_layer_for_metric("isc") == "logits_unbiased"
    imgs, labels = val
    x = torch.from_numpy(imgs[:32]).permute(0, 3, 1, 2).contiguous()
    feat, logits = fe(x)
    assert feat.shape == (32, fe.net.feat_dim) and logits.shape == (32, D.NUM_CLASSES)
    assert feat.dtype == logits.dtype == torch.float32
    assert ((logits + fe.net.fc.bias).argmax(1).numpy() == labels[:32]).mean() >= 0.9
    big = F.interpolate(x, scale_factor=2, mode="nearest")  # integer multiples: box-filtered back exactly
    feat2, _ = fe(big)
    assert torch.allclose(feat2, feat, atol=1e-4)
    odd = F.interpolate(x, size=(23, 23), mode="bicubic").clamp(0, 255).round().to(torch.uint8)
    feat3, logits3 = fe(odd)                                  # other sizes: antialiased bilinear to 16x16
    assert feat3.shape == feat.shape
    assert ((logits3 + fe.net.fc.bias).argmax(1).numpy() == labels[:32]).mean() >= 0.8
    with pytest.raises(ValueError):
        fe(x.float())


def test_fid_through_torch_fidelity():
    import torch_fidelity

    class DS(torch.utils.data.Dataset):
        def __init__(self, arr):
            self.arr = torch.from_numpy(arr).permute(0, 3, 1, 2).contiguous()

        def __len__(self):
            return len(self.arr)

        def __getitem__(self, i):
            return self.arr[i]

    M.register()
    a, _ = D.batch("val", 0, 200)
    b, _ = D.batch("val-holdout", 0, 200)
    noise = np.random.default_rng(0).integers(0, 256, size=a.shape, dtype=np.uint8)
    kw = {"fid": True, "feature_extractor": "mini-classifier", "cuda": False, "cache": False, "verbose": False,
          "batch_size": 100, "save_cpu_ram": True}
    real = torch_fidelity.calculate_metrics(input1=DS(a), input2=DS(b), **kw)["frechet_inception_distance"]
    bad = torch_fidelity.calculate_metrics(input1=DS(noise), input2=DS(b), **kw)["frechet_inception_distance"]
    assert real < bad / 10


def _clip_embed(model, tokenizer, imgs, prompts):
    x = preprocess_uint8(torch.from_numpy(imgs), M.clip_image_size(model), M.CLIP_MEAN, M.CLIP_STD)
    with torch.no_grad():
        im = F.normalize(model.encode_image(x), dim=-1)
        tx = F.normalize(model.encode_text(tokenizer(prompts)), dim=-1)
    return im, tx


def test_clip_ranks_right_class_first(val):
    import open_clip
    model, tokenizer = M.load_clip("clip")
    assert isinstance(model, open_clip.CLIP) and not model.training
    assert tokenizer("a photo of a " + "very " * 40 + "big circle").shape == (1, model.context_length)
    imgs, labels = val
    im, tx = _clip_embed(model, tokenizer, imgs, [D.prompt(k) for k in range(D.NUM_CLASSES)])
    clip_score = 100 * im @ tx.T
    assert (clip_score.argmax(1).numpy() == labels).mean() >= 0.95


def test_pick_prefers_clean_and_right_class():
    from mini_training.pick import preference_pairs
    model, tokenizer = M.load_clip("pick")
    prompts = [D.prompt(k) for k in range(D.NUM_CLASSES)]
    for kind, threshold in (("degraded", 0.95), ("wrong_class", 0.95)):
        labels, pref, rej, _ = preference_pairs("val", 0, N, np.random.default_rng(5), kind)
        im_p, tx = _clip_embed(model, tokenizer, pref, prompts)
        im_r, _ = _clip_embed(model, tokenizer, rej, prompts)
        t = tx[torch.from_numpy(labels)]
        scale = model.logit_scale.exp()
        s_p, s_r = scale * (im_p * t).sum(-1), scale * (im_r * t).sum(-1)
        assert (s_p > s_r).float().mean().item() >= threshold, kind
