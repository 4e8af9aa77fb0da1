"""The transformers path of CLIP Score and PickScore, with a tiny random CLIPModel + processor saved to a temp dir:
scores equal a hand computation with the same model (100 * cosine, unclamped) and the model's own
``logits_per_text``; prompts are cut at 77 tokens; text is encoded once per class; per-class means and
seeded bootstrap intervals are stored; missing weights offline give one clear error."""

import pytest
import torch

from bench.metrics.base import MetricError
from bench.metrics.clip_score import ClipScore, PickScore
from bench.mini import data
from tests.tiny_models import save_tiny_clip

CPU = torch.device("cpu")


@pytest.fixture(scope="module")
def tiny_clip(tmp_path_factory):
    return save_tiny_clip(tmp_path_factory.mktemp("tiny-clip"))


def _inputs(n=12, start=0):
    imgs, labels = data.batch("val", start, n)
    return torch.from_numpy(imgs), torch.from_numpy(labels), [data.prompt(int(y)) for y in labels]


def _by_hand(folder, images, prompts):
    """(text_embeds . image_embeds cosine, logits_per_text diagonal) straight from transformers."""
    from transformers import CLIPModel, CLIPProcessor
    model, proc = CLIPModel.from_pretrained(str(folder)).eval(), CLIPProcessor.from_pretrained(str(folder))
    inputs = proc(text=prompts, images=list(images.numpy()), padding=True, truncation=True, max_length=77,
                  return_tensors="pt")
    with torch.no_grad():
        out = model(**inputs)
    cos = torch.nn.functional.cosine_similarity(out.text_embeds, out.image_embeds, dim=-1)
    return cos.double(), out.logits_per_text.diagonal().double()


def _run(metric, images, labels, prompts, step):
    acc = metric.accumulator(None)
    for s in range(0, len(images), step):
        acc.update(images[s:s + step], labels[s:s + step], prompts[s:s + step],
                   torch.arange(s, min(s + step, len(images))))
    return acc.result()


def test_clip_score_equals_100_cosine_unclamped_and_clamp_option(tiny_clip):
    images, labels, prompts = _inputs()
    cos, _ = _by_hand(tiny_clip, images, prompts)
    assert (cos < 0).any(), "the random model should give some negative cosines, so clamping is visible"
    m = ClipScore({"model": str(tiny_clip), "batch_size": 5, "bootstrap": 0}, CPU, tiny_clip)
    got = _run(m, images, labels, prompts, 5)
    assert got["clip_score"] == pytest.approx(float((100 * cos).mean()), rel=1e-5, abs=1e-4)
    clamped = ClipScore({"model": str(tiny_clip), "clamp": True, "bootstrap": 0}, CPU, tiny_clip)
    got_c = _run(clamped, images, labels, prompts, 12)
    assert got_c["clip_score"] == pytest.approx(float((100 * cos).clamp_min(0).mean()), rel=1e-5, abs=1e-4)
    d = m.describe()
    assert d["clamped"] is False and clamped.describe()["clamped"] is True
    assert d["implementation"].startswith("transformers ") and d["weights"].startswith("sha256:")


def test_pickscore_equals_the_models_logits_per_text(tiny_clip):
    images, labels, prompts = _inputs()
    _, logits = _by_hand(tiny_clip, images, prompts)
    m = PickScore({"model": str(tiny_clip), "processor": str(tiny_clip), "bootstrap": 0}, CPU, tiny_clip)
    got = _run(m, images, labels, prompts, 7)
    assert got["pickscore"] == pytest.approx(float(logits.mean()), rel=1e-5, abs=1e-4)
    assert m.scale() == pytest.approx(float(torch.tensor(3.0).exp()), rel=1e-6)


def test_prompts_are_cut_at_77_tokens_and_text_is_encoded_once_per_class(tiny_clip):
    images, labels, prompts = _inputs(6)
    m = PickScore({"model": str(tiny_clip), "processor": str(tiny_clip)}, CPU, tiny_clip)
    head = "x" * 80                                   # 80 characters -> 80 tokens with this vocabulary
    a = m.scores(images, [head + " cat"] * 6)
    b = m.scores(images, [head + " dog"] * 6)
    assert torch.equal(a, b), "tokens past 77 must not change the score"
    c = m.scores(images, ["x" * 60 + " dog"] * 6)
    assert not torch.allclose(a, c)

    calls = []
    m2 = ClipScore({"model": str(tiny_clip)}, CPU, tiny_clip)
    orig = m2.backend.encode_texts
    m2.backend.encode_texts = lambda ps: calls.append(list(ps)) or orig(ps)
    images, labels, prompts = _inputs(30)
    _run(m2, images, labels, prompts, 4)
    encoded = [p for c in calls for p in c]
    assert sorted(encoded) == sorted(set(prompts)), "each class prompt encoded exactly once"


def test_per_class_means_and_seeded_bootstrap_rows(tiny_clip):
    images, labels, prompts = _inputs(24)
    opts = {"model": str(tiny_clip), "bootstrap": 200, "bootstrap_seed": 7}
    m = ClipScore(opts, CPU, tiny_clip)
    got = _run(m, images, labels, prompts, 24)
    per_image = m.scores(images, prompts)
    for y in labels.unique().tolist():
        assert got[f"clip_score/class/{y}"] == pytest.approx(float(per_image[labels == y].mean()), rel=1e-9)
    assert sum(k.startswith("clip_score/class/") for k in got) == len(labels.unique())
    assert got["clip_score_ci_low"] < got["clip_score"] < got["clip_score_ci_high"]
    again = _run(ClipScore(opts, CPU, tiny_clip), images, labels, prompts, 5)
    assert again["clip_score_ci_low"] == got["clip_score_ci_low"] and again == got
    other = _run(ClipScore({**opts, "bootstrap_seed": 8}, CPU, tiny_clip), images, labels, prompts, 24)
    assert other["clip_score_ci_low"] != got["clip_score_ci_low"]
    off = _run(ClipScore({**opts, "bootstrap": 0, "per_class": False}, CPU, tiny_clip), images, labels, prompts, 24)
    assert set(off) == {"clip_score", "clip_score_std"}


def test_missing_weights_offline_give_one_clear_error(tmp_path, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "hf"))
    m = PickScore({}, CPU, tmp_path)
    with pytest.raises(MetricError, match="yuvalkirstain/PickScore_v1.*HF_HUB_OFFLINE.*huggingface-cli download"):
        m.backend
    with pytest.raises(MetricError, match="clip_score: bootstrap: Input should be greater than or equal to 0"):
        ClipScore({"bootstrap": -1}, CPU, tmp_path)
