"""Training of the miniature world's metric networks (CPU, fixed seeds): classifier, clip, pick.

Run through ``python -m bench.mini.train --threads 1 classifier clip pick``. Each function is deterministic for a
given seed and thread count, trains on the ``world`` stream only (all three rendering styles, disjoint seeds: like
Inception / CLIP, the judges saw broader data than the generators), reports held-out accuracies on ``val``,
``v2`` and ``ood``, and saves through :func:`bench.mini.weights.save`.
"""

from __future__ import annotations

import math
import time

import numpy as np
import torch
import torch.nn.functional as F

from bench.mini import data as D
from bench.mini import weights as W

TRAIN_STREAM = "world"    # mixture of the train / v2 / ood styles on its own seeds (see bench.mini.data)
EVAL_STREAMS = ("val", "v2", "ood")


def _log(msg: str) -> None:
    print(msg, flush=True)


# --------------------------------------------------------------------------------------------- augmentation

def _gaussian_blur(x: torch.Tensor, sigma: torch.Tensor) -> torch.Tensor:
    """Per-sample separable Gaussian blur of float NCHW ``x``; ``sigma`` (N,) in pixels (0 = identity)."""
    n, c, h, w = x.shape
    r = 3
    t = torch.arange(-r, r + 1, dtype=x.dtype)
    s = sigma.clamp_min(1e-3).view(n, 1)
    k = torch.exp(-0.5 * (t.view(1, -1) / s) ** 2)
    k = k / k.sum(1, keepdim=True)                                   # (n, 2r+1)
    k = k.repeat_interleave(c, 0)                                    # (n*c, 2r+1)
    y = F.pad(x.reshape(1, n * c, h, w), (r, r, r, r), mode="replicate")
    y = F.conv2d(y, k.view(n * c, 1, 1, -1), groups=n * c)
    y = F.conv2d(y, k.view(n * c, 1, -1, 1), groups=n * c)
    return y.view(n, c, h, w)


def augment(x: torch.Tensor, g: torch.Generator, strength: float = 1.0) -> torch.Tensor:
    """Blur / noise / blockiness / colour jitter on float NCHW in [0, 1], each applied to a random subset.

    Makes the metric nets' features stable on imperfect generated samples (see MINI-NOTES.md)."""
    n = x.shape[0]

    def pick(p: float) -> torch.Tensor:
        return (torch.rand(n, generator=g) < p * strength).view(n, 1, 1, 1)

    # colour: brightness, contrast, saturation (mild)
    m = pick(0.5)
    gray = x.mean(1, keepdim=True)
    sat = 1 + (torch.rand(n, 1, 1, 1, generator=g) - 0.5) * 0.8       # 0.6 .. 1.4
    bri = 1 + (torch.rand(n, 1, 1, 1, generator=g) - 0.5) * 0.3       # 0.85 .. 1.15
    jittered = ((gray + (x - gray) * sat) * bri).clamp(0, 1)
    x = torch.where(m, jittered, x)
    # blur
    m = pick(0.3)
    sigma = 0.3 + torch.rand(n, generator=g) * 1.2                     # 0.3 .. 1.5 px
    x = torch.where(m, _gaussian_blur(x, sigma), x)
    # blockiness (down-up sampling to 8x8 or 4x4)
    m = pick(0.1)
    h = x.shape[-1]
    small = F.avg_pool2d(x, 2)
    block = F.interpolate(small, size=(h, h), mode="nearest")
    tiny = F.interpolate(F.avg_pool2d(x, 4), size=(h, h), mode="nearest")
    which = (torch.rand(n, 1, 1, 1, generator=g) < 0.5)
    x = torch.where(m, torch.where(which, block, tiny), x)
    # additive Gaussian noise
    m = pick(0.4)
    std = torch.rand(n, 1, 1, 1, generator=g) * 0.25                   # up to ~64/255
    x = torch.where(m, x + torch.randn(x.shape, generator=g) * std, x)
    return x.clamp(0, 1)


def _quantize(x: torch.Tensor) -> torch.Tensor:
    """float [0,1] -> uint8-representable float (what a metric sees from saved samples)."""
    return torch.round(x * 255) / 255


def _to_nchw01(imgs: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(imgs).permute(0, 3, 1, 2).float() / 255.0


def _cosine_lr(step: int, total: int, base: float, warmup: int) -> float:
    if step < warmup:
        return base * (step + 1) / warmup
    p = (step - warmup) / max(1, total - warmup)
    return base * 0.5 * (1 + math.cos(math.pi * p))


# ----------------------------------------------------------------------------------------------- classifier

CLASSIFIER_SEED = 1234
CLASSIFIER_STEPS = 700
CLASSIFIER_BATCH = 128


def eval_classifier(net, n: int = 2000, streams=EVAL_STREAMS, degraded: bool = False) -> dict[str, float]:
    from bench.mini.metric_nets import uint8_to_input
    out = {}
    net.eval()
    with torch.no_grad():
        for s in streams:
            imgs, labels = D.batch(s, 0, n)
            if degraded:
                rng = np.random.default_rng(7)
                imgs = np.stack([D.degrade(im, rng) for im in imgs])
            x = uint8_to_input(torch.from_numpy(imgs).permute(0, 3, 1, 2))
            pred = torch.cat([net(x[i:i + 500]).argmax(1) for i in range(0, n, 500)])
            out[s] = float((pred.numpy() == labels).mean())
    return out


def train_classifier(steps: int = CLASSIFIER_STEPS, seed: int = CLASSIFIER_SEED, directory=W.WEIGHTS_DIR) -> dict:
    from bench.mini.metric_nets import CLASSIFIER_CONFIG, build_classifier
    torch.manual_seed(seed)
    g = torch.Generator().manual_seed(seed)
    net = build_classifier(CLASSIFIER_CONFIG)
    nparams = sum(p.numel() for p in net.parameters())
    _log(f"classifier: {nparams} params, {steps} steps x {CLASSIFIER_BATCH}")
    opt = torch.optim.AdamW(net.parameters(), lr=2e-3, weight_decay=5e-4)
    base_lr, warmup = 3e-3, 50
    t0 = time.time()
    ema = None
    losses = []
    net.train()
    for step in range(steps):
        for group in opt.param_groups:
            group["lr"] = _cosine_lr(step, steps, base_lr, warmup)
        imgs, labels = D.batch(TRAIN_STREAM, step * CLASSIFIER_BATCH, CLASSIFIER_BATCH)
        x = _quantize(augment(_to_nchw01(imgs), g))
        y = torch.from_numpy(labels)
        loss = F.cross_entropy(net(x), y, label_smoothing=0.05)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        ema = loss.item() if ema is None else 0.98 * ema + 0.02 * loss.item()
        losses.append(loss.item())
        if step % 100 == 0 or step == steps - 1:
            _log(f"  step {step:5d}  loss {loss.item():.4f}  ema {ema:.4f}  {time.time() - t0:.0f}s")
    train_s = time.time() - t0
    net.eval()
    acc = eval_classifier(net)
    acc_deg = eval_classifier(net, streams=("val",), degraded=True)
    _log(f"classifier: trained in {train_s:.0f}s; accuracy {acc}; on degraded val {acc_deg['val']:.4f}")
    final = float(np.mean(losses[-50:]))
    W.save("classifier", net.state_dict(), dict(CLASSIFIER_CONFIG), seed=seed, steps=steps,
           losses={"train_ce_last50": final, **{f"acc_{k}": v for k, v in acc.items()},
                   "acc_val_degraded": acc_deg["val"]}, train_seconds=train_s, directory=directory)
    return {"params": nparams, "train_seconds": train_s, "loss": final, "acc": acc, "acc_degraded": acc_deg}


# ----------------------------------------------------------------------------------------------- tiny CLIP

CLIP_SEED = 4321
CLIP_STEPS = 800
CLIP_BATCH = 128
HUES = ("red", "orange", "yellow", "green", "cyan", "blue", "purple", "pink")
_HUE_EDGES = (0.04, 0.11, 0.19, 0.45, 0.54, 0.72, 0.83, 0.93)     # upper edges; >= 0.93 wraps to red
FG_COLOURS = HUES + ("white", "grey")
BG_COLOURS = ("black", "grey", "white") + tuple(f"dark {h}" for h in HUES) + HUES
# (template, uses_class, uses_fg, uses_bg), sampling weight: the metrics' own prompt is the most common
CAPTION_TEMPLATES = (
    ("a photo of a {c}", 1, 0, 0, 0.30),
    ("a picture of a {c}", 1, 0, 0, 0.05),
    ("a {f} {c}", 1, 1, 0, 0.20),
    ("a {c} on a {b} background", 1, 0, 1, 0.15),
    ("a photo of a {f} {c} on a {b} background", 1, 1, 1, 0.15),
    ("a {f} shape", 0, 1, 0, 0.05),
    ("a {f} shape on a {b} background", 0, 1, 1, 0.05),
    ("something on a {b} background", 0, 0, 1, 0.05),
)


def _hsv_np(rgb01: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    mx, mn = rgb01.max(-1), rgb01.min(-1)
    d = mx - mn
    s = np.where(mx > 0, d / np.maximum(mx, 1e-6), 0.0)
    r, g, b = rgb01[..., 0], rgb01[..., 1], rgb01[..., 2]
    dd = np.maximum(d, 1e-6)
    h = np.where(mx == r, ((g - b) / dd) % 6, np.where(mx == g, (b - r) / dd + 2, (r - g) / dd + 4)) / 6.0
    return np.where(d > 0, h, 0.0), s, mx


def _hue_name(h: np.ndarray) -> np.ndarray:
    idx = np.searchsorted(np.asarray(_HUE_EDGES), h, side="right")
    return np.asarray(HUES + ("red",))[idx]


def colour_names(imgs: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(foreground, background) colour words per uint8 NHWC render: background = median of the border pixels,
    foreground = mean of the pixels farthest from it."""
    x = imgs.astype(np.float32) / 255.0
    n = x.shape[0]
    border = np.concatenate([x[:, 0], x[:, -1], x[:, 1:-1, 0], x[:, 1:-1, -1]], axis=1)   # (n, P, 3)
    bg = np.median(border, axis=1)
    dist = np.linalg.norm(x - bg[:, None, None], axis=-1).reshape(n, -1)
    thr = 0.6 * dist.max(1, keepdims=True)
    w = (dist >= thr).astype(np.float32)
    fg = (x.reshape(n, -1, 3) * w[..., None]).sum(1) / np.maximum(w.sum(1, keepdims=True), 1)
    fh, fs, fv = _hsv_np(fg)
    fg_name = np.where(fs < 0.25, np.where(fv > 0.7, "white", "grey"), _hue_name(fh))
    bh, bs, bv = _hsv_np(bg)
    hue = _hue_name(bh)
    bg_name = np.where(bv < 0.12, "black",
                       np.where(bs < 0.25, np.where(bv > 0.7, "white", "grey"),
                                np.where(bv < 0.4, np.char.add("dark ", hue), hue)))
    return fg_name, bg_name


def all_caption_words() -> list[str]:
    """Every caption the CLIP training can produce (for the token vocabulary), plus the metrics' prompts."""
    out = set()
    for t, uc, uf, ub, _ in CAPTION_TEMPLATES:
        for c in (D.CLASSES if uc else ("",)):
            for f in (FG_COLOURS if uf else ("",)):
                for b in (BG_COLOURS if ub else ("",)):
                    out.add(t.format(c=c, f=f, b=b))
    out.update(D.prompt(k) for k in range(D.NUM_CLASSES))
    return sorted(out)


def sample_captions(labels: np.ndarray, fg: np.ndarray, bg: np.ndarray, rng: np.random.Generator):
    """Captions plus (class, fg, bg) requirement per caption (None = not mentioned)."""
    weights = np.asarray([t[-1] for t in CAPTION_TEMPLATES])
    which = rng.choice(len(CAPTION_TEMPLATES), size=len(labels), p=weights / weights.sum())
    caps, req = [], []
    for k, lab, f, b in zip(which, labels, fg, bg):
        t, uc, uf, ub, _ = CAPTION_TEMPLATES[k]
        caps.append(t.format(c=D.CLASSES[lab], f=f, b=b))
        req.append((int(lab) if uc else None, str(f) if uf else None, str(b) if ub else None))
    return caps, req


def caption_targets(labels, fg, bg, req) -> torch.Tensor:
    """T[i, j] = 1 when caption j is a true description of image i (label-aware: same-class images are not
    negatives of a class-only caption)."""
    n = len(labels)
    T = np.ones((n, n), dtype=np.float32)
    for j, (c, f, b) in enumerate(req):
        if c is not None:
            T[:, j] *= labels == c
        if f is not None:
            T[:, j] *= fg == f
        if b is not None:
            T[:, j] *= bg == b
    assert np.all(np.diag(T) == 1)
    return torch.from_numpy(T)


def soft_clip_loss(logits: torch.Tensor, T: torch.Tensor) -> torch.Tensor:
    """Symmetric InfoNCE with multi-positive soft targets (rows: image->text, columns: text->image)."""
    li = -(T / T.sum(1, keepdim=True) * F.log_softmax(logits, 1)).sum(1).mean()
    lt = -(T / T.sum(0, keepdim=True) * F.log_softmax(logits, 0)).sum(0).mean()
    return 0.5 * (li + lt)


class _CompactTokens:
    """Train only the token rows the captions use: a small embedding indexed by order-preserving compact ids (so
    open_clip's argmax-EOT pooling is unchanged), written back into the full table afterwards."""

    def __init__(self, model, tokenizer, texts):
        ids = torch.unique(torch.cat([tokenizer(texts).flatten(), torch.tensor([0])]))   # sorted, includes pad 0
        self.ids = ids
        self.lut = torch.full((model.vocab_size,), -1, dtype=torch.long)
        self.lut[ids] = torch.arange(len(ids))
        self.full = model.token_embedding
        small = torch.nn.Embedding(len(ids), self.full.embedding_dim)
        with torch.no_grad():
            small.weight.copy_(self.full.weight[ids])
        model.token_embedding = small
        self.model, self.tokenizer = model, tokenizer
        self._cache: dict[str, torch.Tensor] = {}

    def tokens(self, texts) -> torch.Tensor:
        missing = [t for t in set(texts) if t not in self._cache]
        if missing:
            for t, row in zip(missing, self.tokenizer(missing)):
                c = self.lut[row]
                assert (c >= 0).all(), t
                self._cache[t] = c
        return torch.stack([self._cache[t] for t in texts])

    def restore(self):
        with torch.no_grad():
            self.full.weight.zero_()
            self.full.weight[self.ids] = self.model.token_embedding.weight
        self.model.token_embedding = self.full


def _clip_images(model, imgs_uint8_nhwc: torch.Tensor) -> torch.Tensor:
    from bench.metrics.clip_preprocess import preprocess_uint8
    from bench.mini.metric_nets import CLIP_MEAN, CLIP_STD, clip_image_size
    x = preprocess_uint8(imgs_uint8_nhwc, clip_image_size(model), CLIP_MEAN, CLIP_STD)
    return F.normalize(model.encode_image(x), dim=-1)


def _augment_uint8(imgs: np.ndarray, g: torch.Generator, strength: float) -> torch.Tensor:
    """uint8 NHWC -> augmented uint8 NHWC (as a generator's saved samples would be)."""
    x = augment(_to_nchw01(imgs), g, strength)
    return (x * 255 + 0.5).clamp(0, 255).to(torch.uint8).permute(0, 2, 3, 1).contiguous()


@torch.no_grad()
def eval_clip_zero_shot(model, tokenizer, n: int = 2000, streams=EVAL_STREAMS, encode_text=None) -> dict[str, float]:
    """Top-1 accuracy of picking "a photo of a {class}" among the 10 class prompts."""
    model.eval()
    prompts = [D.prompt(k) for k in range(D.NUM_CLASSES)]
    t = encode_text(prompts) if encode_text else model.encode_text(tokenizer(prompts))
    t = F.normalize(t, dim=-1)
    out = {}
    for s in streams:
        imgs, labels = D.batch(s, 0, n)
        x = torch.from_numpy(imgs)
        im = torch.cat([_clip_images(model, x[i:i + 500]) for i in range(0, n, 500)])
        out[s] = float(((im @ t.T).argmax(1).numpy() == labels).mean())
    return out


def _clip_optimizer(model, lr: float) -> torch.optim.AdamW:
    """AdamW with weight decay on matrices only (not on embeddings, norms or biases), as CLIP trains."""
    decay = [p for n, p in model.named_parameters() if p.ndim >= 2 and "embedding" not in n]
    no_decay = [p for n, p in model.named_parameters() if not (p.ndim >= 2 and "embedding" not in n)]
    return torch.optim.AdamW([{"params": decay, "weight_decay": 0.05}, {"params": no_decay, "weight_decay": 0.0}],
                             lr=lr, betas=(0.9, 0.98))


def _clip_step(model, opt, loss, losses: list, ema, step: int, steps: int, t0: float) -> float:
    """One optimiser step of a CLIP-style model (logit scale clamped to 100, as CLIP does), with the running log."""
    opt.zero_grad(set_to_none=True)
    loss.backward()
    opt.step()
    with torch.no_grad():
        model.logit_scale.clamp_(0, math.log(100))
    losses.append(loss.item())
    ema = loss.item() if ema is None else 0.98 * ema + 0.02 * loss.item()
    if step % 50 == 0 or step == steps - 1:
        _log(f"  step {step:5d}  loss {loss.item():.4f}  ema {ema:.4f}  scale {model.logit_scale.exp().item():.1f}"
             f"  {time.time() - t0:.0f}s")
    return ema


def train_clip(steps: int = CLIP_STEPS, seed: int = CLIP_SEED, directory=W.WEIGHTS_DIR) -> dict:
    from bench.mini.metric_nets import CLIP_MODEL_NAME, build_clip, clip_config, clip_state_for_saving, load_clip
    model, tokenizer = build_clip(seed)
    g = torch.Generator().manual_seed(seed)
    rng = np.random.default_rng(seed)
    ct = _CompactTokens(model, tokenizer, all_caption_words())
    nparams = sum(p.numel() for p in model.parameters())
    _log(f"clip: {nparams} trainable params ({len(ct.ids)} token rows), {steps} steps x {CLIP_BATCH}")
    opt = _clip_optimizer(model, lr=1e-3)
    base_lr, warmup = 1.5e-3, 60
    t0 = time.time()
    losses, ema = [], None
    model.train()
    for step in range(steps):
        for group in opt.param_groups:
            group["lr"] = _cosine_lr(step, steps, base_lr, warmup)
        imgs, labels = D.batch(TRAIN_STREAM, 10_000_000 + step * CLIP_BATCH, CLIP_BATCH)
        fg, bg = colour_names(imgs)
        caps, req = sample_captions(labels, fg, bg, rng)
        T = caption_targets(labels, fg, bg, req)
        im = _clip_images(model, _augment_uint8(imgs, g, 0.7))
        tx = F.normalize(model.encode_text(ct.tokens(caps)), dim=-1)
        logits = model.logit_scale.exp() * im @ tx.T
        loss = soft_clip_loss(logits, T)
        ema = _clip_step(model, opt, loss, losses, ema, step, steps, t0)
    train_s = time.time() - t0
    ct.restore()
    model.eval()
    acc = eval_clip_zero_shot(model, tokenizer)
    _log(f"clip: trained in {train_s:.0f}s; zero-shot class accuracy {acc}")
    final = float(np.mean(losses[-50:]))
    cfg = {"open_clip_model": CLIP_MODEL_NAME, "model_cfg": clip_config(), "token_storage": "sparse-rows",
           "mean": "OPENAI_MEAN", "std": "OPENAI_STD"}
    W.save("clip", clip_state_for_saving(model, ct.ids.tolist()), cfg, seed=seed, steps=steps,
           losses={"train_contrastive_last50": final, **{f"zeroshot_acc_{k}": v for k, v in acc.items()}},
           train_seconds=train_s, directory=directory)
    reloaded, _ = load_clip("clip", directory)     # the shipped (fp16-rounded) weights must still do the job
    acc_r = eval_clip_zero_shot(reloaded, tokenizer, n=500, streams=("val",))
    _log(f"clip: reloaded from shipped weights, val zero-shot accuracy (500) {acc_r['val']:.4f}")
    return {"params": nparams, "train_seconds": train_s, "loss": final, "acc": acc}


# ----------------------------------------------------------------------------------------------- PickScore

PICK_SEED = 2468
PICK_STEPS = 450
PICK_PAIRS = 64


def preference_pairs(stream: str, start: int, count: int, rng: np.random.Generator, kind: str = "mix"):
    """(labels, preferred uint8 NHWC, rejected uint8 NHWC, is_degraded bool) for prompts "a photo of a {class}".

    preferred: a clean render of the class; rejected: ``degrade`` of it, or a clean render of another class
    (same rendering parameters), chosen per pair (``kind``: "mix", "degraded" or "wrong_class")."""
    pref, labels = D.batch(stream, start, count)
    rej = np.empty_like(pref)
    if kind == "mix":
        deg = rng.random(count) < 0.5
    else:
        deg = np.full(count, kind == "degraded")
    for i in range(count):
        if deg[i]:
            rej[i] = D.degrade(pref[i], rng)
        else:
            other = (labels[i] + 1 + rng.integers(D.NUM_CLASSES - 1)) % D.NUM_CLASSES
            rej[i] = D.render_label(stream, start + i, int(other))
    return labels, pref, rej, deg


def _pick_scores(model, text_emb: torch.Tensor, imgs_uint8_nhwc: torch.Tensor) -> torch.Tensor:
    """PickScore of each image against its own prompt embedding: logit_scale.exp() * cosine."""
    return model.logit_scale.exp() * (_clip_images(model, imgs_uint8_nhwc) * text_emb).sum(-1)


@torch.no_grad()
def eval_pick(model, tokenizer, streams=("val",), n: int = 1000) -> dict[str, float]:
    """Pairwise accuracy on held-out pairs: clean over degraded, right class over wrong class."""
    model.eval()
    prompts = [D.prompt(k) for k in range(D.NUM_CLASSES)]
    temb = F.normalize(model.encode_text(tokenizer(prompts)), dim=-1)
    out = {}
    for s in streams:
        for kind in ("degraded", "wrong_class"):
            rng = np.random.default_rng(99)
            labels, pref, rej, _ = preference_pairs(s, 0, n, rng, kind)
            t = temb[torch.from_numpy(labels)]
            sp = _pick_scores(model, t, torch.from_numpy(pref))
            sr = _pick_scores(model, t, torch.from_numpy(rej))
            key = "clean_vs_degraded" if kind == "degraded" else "right_vs_wrong_class"
            out[f"{s}/{key}"] = float((sp > sr).float().mean())
    return out


def train_pick(steps: int = PICK_STEPS, seed: int = PICK_SEED, directory=W.WEIGHTS_DIR) -> dict:
    """PickScore objective, fine-tuned from the trained ``clip`` weights: for prompt p and a (preferred,
    rejected) pair, cross-entropy of softmax([s(p, pref), s(p, rej)]) against the preference (hard label)."""
    from bench.mini.metric_nets import CLIP_MODEL_NAME, clip_config, clip_state_for_saving, load_clip
    torch.manual_seed(seed)
    rng = np.random.default_rng(seed)
    model, tokenizer = load_clip("clip", directory)
    before = eval_pick(model, tokenizer, n=500)
    _log(f"pick: the clip model before fine-tuning: {before}")
    model.requires_grad_(True)
    ct = _CompactTokens(model, tokenizer, all_caption_words())
    prompts = [D.prompt(k) for k in range(D.NUM_CLASSES)]
    ptok = ct.tokens(prompts)
    nparams = sum(p.numel() for p in model.parameters())
    _log(f"pick: {nparams} trainable params, {steps} steps x {PICK_PAIRS} pairs")
    opt = _clip_optimizer(model, lr=3e-4)
    base_lr, warmup = 3e-4, 30
    t0 = time.time()
    losses, ema = [], None
    model.train()
    for step in range(steps):
        for group in opt.param_groups:
            group["lr"] = _cosine_lr(step, steps, base_lr, warmup)
        labels, pref, rej, _ = preference_pairs(TRAIN_STREAM, 20_000_000 + step * PICK_PAIRS, PICK_PAIRS, rng)
        temb = F.normalize(model.encode_text(ptok), dim=-1)[torch.from_numpy(labels)]
        imgs = torch.from_numpy(np.concatenate([pref, rej]))
        emb = _clip_images(model, imgs)
        scale = model.logit_scale.exp()
        s_pref = scale * (emb[:PICK_PAIRS] * temb).sum(-1)
        s_rej = scale * (emb[PICK_PAIRS:] * temb).sum(-1)
        logits = torch.stack([s_pref, s_rej], 1)
        loss = F.cross_entropy(logits, torch.zeros(PICK_PAIRS, dtype=torch.long))
        ema = _clip_step(model, opt, loss, losses, ema, step, steps, t0)
    train_s = time.time() - t0
    ct.restore()
    model.eval()
    acc = eval_pick(model, tokenizer, streams=EVAL_STREAMS)
    zs = eval_clip_zero_shot(model, tokenizer)
    _log(f"pick: trained in {train_s:.0f}s; pairwise accuracy {acc}; zero-shot class accuracy {zs}")
    final = float(np.mean(losses[-50:]))
    cfg = {"open_clip_model": CLIP_MODEL_NAME, "model_cfg": clip_config(), "token_storage": "sparse-rows",
           "mean": "OPENAI_MEAN", "std": "OPENAI_STD", "init": "clip"}
    W.save("pick", clip_state_for_saving(model, ct.ids.tolist()), cfg, seed=seed, steps=steps,
           losses={"train_pref_ce_last50": final, **{f"pair_acc_{k}": v for k, v in acc.items()},
                   **{f"zeroshot_acc_{k}": v for k, v in zs.items()}},
           train_seconds=train_s, directory=directory)
    reloaded, _ = load_clip("pick", directory)
    acc_r = eval_pick(reloaded, tokenizer, n=300)
    _log(f"pick: reloaded from shipped weights: {acc_r}")
    return {"params": nparams, "train_seconds": train_s, "loss": final, "acc": acc, "zero_shot": zs, "before": before}
