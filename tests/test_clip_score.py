"""CLIP Score / PickScore equal a hand computation with the same model; text is encoded once per prompt."""

import pytest
import torch

from bench.data.mini import MiniDataset
from bench.metrics.clip_preprocess import preprocess_uint8
from bench.metrics.clip_score import ClipScore, PickScore
from bench.mini import data, metric_nets


def _by_hand(name, images, prompts, scale=None):
    model, tok = metric_nets.load_clip(name)
    with torch.no_grad():
        img = model.encode_image(preprocess_uint8(images, metric_nets.clip_image_size(model),
                                                  metric_nets.CLIP_MEAN, metric_nets.CLIP_STD))
        txt = model.encode_text(tok(prompts))
        cos = torch.nn.functional.cosine_similarity(img, txt, dim=-1)
        return (scale if scale is not None else model.logit_scale.exp()) * cos


def test_clip_score_and_pickscore_equal_hand_computation(tmp_path):
    imgs_np, labels = data.batch("v2", 0, 24)
    images, labels = torch.from_numpy(imgs_np), torch.from_numpy(labels)
    prompts = [data.prompt(int(y)) for y in labels]
    ds = MiniDataset("mini-v2", 10)
    for cls, name, scale in ((ClipScore, "clip", 100.0), (PickScore, "pick", None)):
        m = cls({"backend": "mini", "model": name, "batch_size": 10}, torch.device("cpu"), tmp_path)
        acc = m.accumulator(ds)
        for s in range(0, 24, 7):
            acc.update(images[s:s + 7], labels[s:s + 7], prompts[s:s + 7], torch.arange(s, min(s + 7, 24)))
        got = acc.result()
        want = _by_hand(name, images, prompts, scale)
        assert got[m.name] == pytest.approx(float(want.double().mean()), rel=1e-5, abs=1e-4)
        assert len(m._text_cache) == len(set(prompts)), "one text embedding per distinct prompt"


def test_clamp_option_follows_torchmetrics_convention(tmp_path):
    images = torch.from_numpy(data.batch("val", 0, 12)[0])
    wrong = ["a photo of a " + ("heart" if i % 2 else "ring") for i in range(12)]
    plain = ClipScore({"backend": "mini", "model": "clip", "batch_size": 12}, torch.device("cpu"), tmp_path)
    clamped = ClipScore({"backend": "mini", "model": "clip", "clamp": True, "batch_size": 12}, torch.device("cpu"),
                        tmp_path)
    a, b = plain.scores(images, wrong), clamped.scores(images, wrong)
    assert torch.equal(b, a.clamp_min(0))
    assert clamped.describe()["clamped"] is True and plain.describe()["clamped"] is False


def test_right_prompts_score_higher_than_wrong_ones(tmp_path):
    imgs_np, labels = data.batch("val", 0, 40)
    m = ClipScore({"backend": "mini", "model": "clip", "batch_size": 40}, torch.device("cpu"), tmp_path)
    right = m.scores(torch.from_numpy(imgs_np), [data.prompt(int(y)) for y in labels])
    wrong = m.scores(torch.from_numpy(imgs_np), [data.prompt((int(y) + 1) % 10) for y in labels])
    assert (right > wrong).float().mean() > 0.9
