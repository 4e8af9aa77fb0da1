"""Training of the miniature world's CLIP: colour and shape captions, a soft contrastive loss, zero-shot evaluation.

Run through ``python -m mini_training`` (see ``make mini-weights``); not part of the installed package."""

from __future__ import annotations

import math
import time

import numpy as np
import torch
import torch.nn.functional as F

from bench.mini import data as D
from bench.mini import weights as W
from bench.mini.captions import BG_COLOURS, CAPTION_TEMPLATES, FG_COLOURS, colour_names
from mini_training.augment import EVAL_STREAMS, TRAIN_STREAM, _cosine_lr, _log, _to_nchw01, augment

CLIP_SEED = 4321
CLIP_STEPS = 800
CLIP_BATCH = 128


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

