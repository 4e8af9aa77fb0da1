"""ImageReward: a tiny random model saved in ImageReward.pt's own key layout, scored by the metric (transformers'
BLIP modules through the key map) and by an independent forward written here from the reference
(github:THUDM/ImageReward ImageReward/ImageReward.py ``score``, models/BLIP/vit.py, med.py), equal to 1e-6
relative; batch-size and shard independence; each sample's own prompt is used; weights are never unpickled;
missing weights give one clear error naming the option."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from PIL import Image

from bench.metrics.base import MetricError
from bench.metrics.image_reward import ImageReward
from bench.mini import data

CPU = torch.device("cpu")
WORDS = ["a", "photo", "of", "red", "blue", "cat", "dog", "big", "small", "##s", *data.CLASSES]
VOCAB = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", *WORDS]
D, DEPTH, PATCH, SIZE, VMLP = 128, 2, 16, 224, 256            # ViT: 2 heads of 64, 224 px, patch 16
H, LAYERS, FFN, POSITIONS = 128, 2, 256, 40                    # BERT: 2 heads of 64
HEAD = (32, 16, 8, 4, 1)                                       # the MLP's Linear outputs (v1.0: 1024 ... 1)
MEAN, STD = 0.16717362830052426, 1.0333394966054072            # ImageReward.__init__
CLIP_MEAN, CLIP_STD = (0.48145466, 0.4578275, 0.40821073), (0.26862954, 0.26130258, 0.27577711)


class NotATensor:
    """Something only a full unpickle can rebuild."""


def tiny_state_dict(vocab_size: int) -> dict[str, torch.Tensor]:
    """Random tensors under the reference model's own names (``ImageReward.state_dict()``), BLIP's unused
    projections and the text position-id buffer included."""
    g = torch.Generator().manual_seed(0)

    def r(*shape, std=0.1):
        return torch.randn(*shape, generator=g) * std

    sd: dict[str, torch.Tensor] = {}

    def linear(name, out, inp, std=0.1):
        sd[name + ".weight"], sd[name + ".bias"] = r(out, inp, std=std), r(out, std=0.05)

    def norm(name, n):
        sd[name + ".weight"], sd[name + ".bias"] = 1 + r(n), r(n)

    v = "blip.visual_encoder."
    sd[v + "cls_token"], sd[v + "pos_embed"] = r(1, 1, D), r(1, (SIZE // PATCH) ** 2 + 1, D)
    sd[v + "patch_embed.proj.weight"], sd[v + "patch_embed.proj.bias"] = r(D, 3, PATCH, PATCH, std=0.02), r(D)
    for i in range(DEPTH):
        b = f"{v}blocks.{i}."
        norm(b + "norm1", D)
        linear(b + "attn.qkv", 3 * D, D)
        linear(b + "attn.proj", D, D)
        norm(b + "norm2", D)
        linear(b + "mlp.fc1", VMLP, D)
        linear(b + "mlp.fc2", D, VMLP)
    norm(v + "norm", D)
    t = "blip.text_encoder."
    sd[t + "embeddings.word_embeddings.weight"], sd[t + "embeddings.position_embeddings.weight"] = (
        r(vocab_size, H, std=1e-3), r(POSITIONS, H, std=1e-3))     # small: the LayerNorm eps (1e-12) matters
    sd[t + "embeddings.position_ids"] = torch.arange(POSITIONS)[None]
    norm(t + "embeddings.LayerNorm", H)
    for i in range(LAYERS):
        b = f"{t}encoder.layer.{i}."
        for att, kv in (("attention", H), ("crossattention", D)):
            linear(b + att + ".self.query", H, H)
            linear(b + att + ".self.key", H, kv)
            linear(b + att + ".self.value", H, kv)
            linear(b + att + ".output.dense", H, H)
            norm(b + att + ".output.LayerNorm", H)
        linear(b + "intermediate.dense", FFN, H)
        linear(b + "output.dense", H, FFN)
        norm(b + "output.LayerNorm", H)
    linear("blip.vision_proj", 256, D)
    linear("blip.text_proj", 256, H)
    sizes = (H, *HEAD)
    for i, layer in enumerate((0, 2, 4, 6, 7)):
        linear(f"mlp.layers.{layer}", sizes[i + 1], sizes[i], std=1 / math.sqrt(sizes[i]))
    return sd


def save_tiny_image_reward(d) -> tuple[str, str, dict[str, torch.Tensor]]:
    """(weights folder with ImageReward.pt, tokenizer folder with vocab.txt, the state dict)."""
    (d / "tok").mkdir()
    (d / "tok" / "vocab.txt").write_text("\n".join(VOCAB) + "\n")
    (d / "w").mkdir()
    sd = tiny_state_dict(len(VOCAB) + 2)                      # + [DEC] and [ENC], as 30522 + 2 in v1.0
    torch.save(sd, d / "w" / "ImageReward.pt")
    return str(d / "w"), str(d / "tok"), sd


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    return save_tiny_image_reward(tmp_path_factory.mktemp("tiny-image-reward"))


# ---- the reference's computation, transcribed ------------------------------------------------------------------
def ref_preprocess(img: np.ndarray) -> torch.Tensor:
    """_transform(224): Resize(224, BICUBIC) of the shorter side (long side int(224 * long / short)), CenterCrop
    at int(round((size - 224) / 2)), ToTensor (/255), Normalize."""
    pil = Image.fromarray(img, "RGB")
    w, h = pil.size
    nw, nh = (SIZE, int(SIZE * h / w)) if w <= h else (int(SIZE * w / h), SIZE)
    if (nw, nh) != (w, h):
        pil = pil.resize((nw, nh), Image.BICUBIC)
    top, left = int(round((nh - SIZE) / 2.0)), int(round((nw - SIZE) / 2.0))
    pil = pil.crop((left, top, left + SIZE, top + SIZE))
    x = np.asarray(pil).astype(np.float32) / np.float32(255)
    x = (x - np.array(CLIP_MEAN, np.float32)) / np.array(CLIP_STD, np.float32)
    return torch.from_numpy(x).permute(2, 0, 1)


def ref_tokenizer(folder: str):
    from transformers import BertTokenizer
    tok = BertTokenizer.from_pretrained(folder)                 # blip.init_tokenizer
    tok.add_special_tokens({"bos_token": "[DEC]"})
    tok.add_special_tokens({"additional_special_tokens": ["[ENC]"]})
    return tok


def ref_reward(sd, pixels: torch.Tensor, ids: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    g = sd.__getitem__
    B = len(pixels)
    # vit.VisionTransformer.forward: patch embed, cls, pos, pre-norm blocks (eps 1e-6), final norm
    v = "blip.visual_encoder."
    x = F.conv2d(pixels, g(v + "patch_embed.proj.weight"), g(v + "patch_embed.proj.bias"), stride=PATCH)
    x = torch.cat([g(v + "cls_token").expand(B, -1, -1), x.flatten(2).transpose(1, 2)], dim=1)
    x = x + g(v + "pos_embed")[:, :x.size(1), :]
    nh = D // 64
    for i in range(DEPTH):
        b = f"{v}blocks.{i}."
        y = F.layer_norm(x, (D,), g(b + "norm1.weight"), g(b + "norm1.bias"), 1e-6)
        N = y.shape[1]
        qkv = F.linear(y, g(b + "attn.qkv.weight"), g(b + "attn.qkv.bias"))
        q, k, val = qkv.reshape(B, N, 3, nh, D // nh).permute(2, 0, 3, 1, 4)
        attn = ((q @ k.transpose(-2, -1)) * (D // nh) ** -0.5).softmax(dim=-1)
        y = F.linear((attn @ val).transpose(1, 2).reshape(B, N, D), g(b + "attn.proj.weight"), g(b + "attn.proj.bias"))
        x = x + y
        y = F.layer_norm(x, (D,), g(b + "norm2.weight"), g(b + "norm2.bias"), 1e-6)
        y = F.linear(F.gelu(F.linear(y, g(b + "mlp.fc1.weight"), g(b + "mlp.fc1.bias"))),
                     g(b + "mlp.fc2.weight"), g(b + "mlp.fc2.bias"))
        x = x + y
    image = F.layer_norm(x, (D,), g(v + "norm.weight"), g(v + "norm.bias"), 1e-6)
    # med.BertModel, mode='multimodal': embeddings (no token types), then self-att -> cross-att -> FFN per layer
    t = "blip.text_encoder."
    L = ids.shape[1]
    h = g(t + "embeddings.word_embeddings.weight")[ids] + g(t + "embeddings.position_embeddings.weight")[:L]
    h = F.layer_norm(h, (H,), g(t + "embeddings.LayerNorm.weight"), g(t + "embeddings.LayerNorm.bias"), 1e-12)
    self_mask = (1.0 - mask[:, None, None, :].float()) * -10000.0
    image_mask = (1.0 - torch.ones(image.shape[:2])[:, None, None, :]) * torch.finfo(torch.float32).min
    th = H // 64

    def attention(p, hidden, source, add_mask):
        def heads(z):
            return z.view(B, -1, th, H // th).permute(0, 2, 1, 3)
        q = heads(F.linear(hidden, g(p + ".self.query.weight"), g(p + ".self.query.bias")))
        k = heads(F.linear(source, g(p + ".self.key.weight"), g(p + ".self.key.bias")))
        val = heads(F.linear(source, g(p + ".self.value.weight"), g(p + ".self.value.bias")))
        scores = torch.matmul(q, k.transpose(-1, -2)) / math.sqrt(H // th) + add_mask
        ctx = torch.matmul(torch.softmax(scores, dim=-1), val).permute(0, 2, 1, 3).reshape(B, -1, H)
        out = F.linear(ctx, g(p + ".output.dense.weight"), g(p + ".output.dense.bias"))
        return F.layer_norm(out + hidden, (H,), g(p + ".output.LayerNorm.weight"), g(p + ".output.LayerNorm.bias"),
                            1e-12)

    for i in range(LAYERS):
        b = f"{t}encoder.layer.{i}."
        h = attention(b + "attention", h, h, self_mask)
        h = attention(b + "crossattention", h, image, image_mask)
        y = F.gelu(F.linear(h, g(b + "intermediate.dense.weight"), g(b + "intermediate.dense.bias")))
        y = F.linear(y, g(b + "output.dense.weight"), g(b + "output.dense.bias"))
        h = F.layer_norm(y + h, (H,), g(b + "output.LayerNorm.weight"), g(b + "output.LayerNorm.bias"), 1e-12)
    r = h[:, 0, :].float()
    for layer in (0, 2, 4, 6, 7):                                 # MLP: Linear / Dropout, no activations
        r = F.linear(r, g(f"mlp.layers.{layer}.weight"), g(f"mlp.layers.{layer}.bias"))
    return ((r - MEAN) / STD)[:, 0]


def reference_rewards(sd, tok_folder, images: torch.Tensor, prompts: list[str]) -> torch.Tensor:
    """ImageReward.score(prompt, image) per sample, one image at a time as the reference runs it."""
    tok = ref_tokenizer(tok_folder)
    out = []
    with torch.no_grad():
        for img, p in zip(images, prompts):
            t = tok(p, padding="max_length", truncation=True, max_length=35, return_tensors="pt")
            out.append(ref_reward(sd, ref_preprocess(img.numpy())[None], t.input_ids, t.attention_mask)[0])
    return torch.stack(out).double()


def _images(n: int, h: int = 48, w: int = 64, seed: int = 0) -> torch.Tensor:
    """Smooth random RGB images, not square (exercises resize of the shorter side and the centre crop)."""
    g = torch.Generator().manual_seed(seed)
    small = torch.rand(n, 3, h // 8, w // 8, generator=g)
    big = F.interpolate(small, size=(h, w), mode="bilinear", align_corners=False)
    return (big * 255).round().clamp(0, 255).to(torch.uint8).permute(0, 2, 3, 1).contiguous()


def _feed(acc, images, labels, prompts, step, ids):
    for s in range(0, len(images), step):
        acc.update(images[s:s + step], labels[s:s + step], prompts[s:s + step], ids[s:s + step])
    return acc


def _metric(tiny, tmp_path, **kw) -> ImageReward:
    return ImageReward({"model": tiny[0], "tokenizer": tiny[1], "batch_size": 4, "bootstrap": 50, **kw}, CPU,
                       tmp_path)


# ---- tests -----------------------------------------------------------------------------------------------------
def test_rewards_equal_the_reference_forward_through_the_key_map(tiny, tmp_path):
    images, labels = _images(10), torch.arange(10) % 3
    prompts = [data.prompt(int(y)) for y in labels]
    m = _metric(tiny, tmp_path)
    got = m.scores(images, prompts)
    want = reference_rewards(tiny[2], tiny[1], images, prompts)
    assert float((got - want).abs().max()) <= 1e-6 * float(want.abs().max()), (got, want)
    assert float(want.std()) > 1e-2, "rewards must vary with the image (the cross-attention is exercised)"
    res = _feed(m.accumulator(None), images, labels, prompts, 3, torch.arange(10)).result()
    assert res["image_reward"] == pytest.approx(float(want.mean()), rel=1e-6)
    assert res["image_reward_std"] == pytest.approx(float(want.std()), rel=1e-5)
    assert res["image_reward_ci_low"] <= res["image_reward"] <= res["image_reward_ci_high"]
    for y in range(3):
        assert res[f"image_reward/class/{y}"] == pytest.approx(float(want[labels == y].mean()), rel=1e-5, abs=1e-6)
    assert m.net.arch["image_size"] == SIZE and m.net.arch["head"] == list(HEAD)
    d = m.describe()
    assert d["weights"].startswith("sha256:") and d["text_max_tokens"] == 35 and "BICUBIC" in d["preprocess"]


def test_square_and_small_images_and_tokenization_follow_the_reference(tiny, tmp_path):
    m = _metric(tiny, tmp_path)
    images = torch.from_numpy(data.batch("ood", 0, 5)[0])            # 16x16: upscaled to 224
    prompts = ["a photo of a star", "a red cat", "dogs", "", "a [ENC] cat " + "big " * 40]
    want = reference_rewards(tiny[2], tiny[1], images, prompts)
    got = m.scores(images, prompts)
    assert float((got - want).abs().max()) <= 1e-6 * float(want.abs().max())
    ids, mask = m.tokens(["a photo of a cat", "a [ENC] cat"])
    v = {w: i for i, w in enumerate(VOCAB)}
    first = [v["[CLS]"], v["a"], v["photo"], v["of"], v["a"], v["cat"], v["[SEP]"]]
    assert ids[0].tolist() == first + [v["[PAD]"]] * 28 and mask[0].tolist() == [1] * 7 + [0] * 28
    assert ids[1, 2] == len(VOCAB) + 1, "[ENC] is BLIP's added special token"
    assert m.tokens(["big " * 50])[0].shape == (1, 35)


def test_each_sample_is_scored_against_its_own_prompt(tiny, tmp_path):
    m = _metric(tiny, tmp_path)
    img = _images(1).repeat(2, 1, 1, 1)
    a, b = m.scores(img, ["a photo of a red cat", "a photo of a blue dog"])
    assert abs(float(a - b)) > 1e-3
    mixed = m.scores(torch.cat([img, img]), ["a photo of a red cat", "a photo of a blue dog"] * 2)
    assert mixed.tolist() == [float(a), float(b)] * 2


def test_identical_for_update_sizes_and_merged_shards(tiny, tmp_path):
    images, labels = _images(13, seed=1), torch.arange(13) % 4
    prompts = [data.prompt(int(y)) for y in labels]
    m = _metric(tiny, tmp_path)
    results = [_feed(m.accumulator(None), images, labels, prompts, step, torch.arange(13)).result()
               for step in (1, 5, 16)]
    perm = torch.randperm(13, generator=torch.Generator().manual_seed(2))
    shards = [_feed(m.accumulator(None), images[i], labels[i], [prompts[j] for j in i], 3, i) for i in perm.split(5)]
    results.append(shards[0].merge(shards[1]).merge(shards[2]).result())
    assert all(r == results[0] for r in results[1:])


def test_safetensors_gives_the_same_rewards_and_pickles_are_refused(tiny, tmp_path):
    from safetensors.torch import save_file
    images, prompts = _images(3), ["a cat", "a dog", "a star"]
    want = _metric(tiny, tmp_path).scores(images, prompts)
    (tmp_path / "st").mkdir()
    save_file({k: v.contiguous() for k, v in tiny[2].items()}, tmp_path / "st" / "ImageReward.safetensors")
    assert torch.equal(_metric(tiny, tmp_path, model=str(tmp_path / "st")).scores(images, prompts), want)
    torch.save({**tiny[2], "extra": NotATensor()}, tmp_path / "pickled.pt")
    m = _metric(tiny, tmp_path, model=str(tmp_path / "pickled.pt"))
    with pytest.raises(MetricError, match=r"option `model`.*weights_only=True.*safetensors.torch import save_file"):
        m.scores(images, prompts)


def test_missing_weights_give_one_clear_error_naming_the_option(tiny, tmp_path, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "hf"))
    with pytest.raises(MetricError, match=r"option `model`.*THUDM/ImageReward/ImageReward.pt.*huggingface-cli"):
        ImageReward({}, CPU, tmp_path).version_key()
    with pytest.raises(MetricError, match=r"option `tokenizer`.*google-bert/bert-base-uncased"):
        ImageReward({"model": tiny[0]}, CPU, tmp_path).version_key()
    missing = [r.check().missing for r in ImageReward.requirements({})]
    assert "THUDM/ImageReward (ImageReward.pt)" in missing[0] and "vocab.txt" in missing[1]
    assert not any(r.check().missing for r in ImageReward.requirements({"model": tiny[0], "tokenizer": tiny[1]}))
    with pytest.raises(MetricError, match=r"image_reward: modle: unknown option \(did you mean 'model'\?\)"):
        ImageReward({"modle": "x"}, CPU, tmp_path)
    bad = tmp_path / "bad.pt"
    torch.save({"blip.text_encoder.embeddings.word_embeddings.weight": torch.zeros(3, 64)}, bad)
    with pytest.raises(MetricError, match="not an ImageReward checkpoint"):
        _metric(tiny, tmp_path, model=str(bad)).net
