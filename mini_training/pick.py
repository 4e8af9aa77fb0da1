"""Training of the miniature world's PickScore: preference pairs over clean and degraded renders, on the CLIP towers.

Run through ``python -m mini_training`` (see ``make mini-weights``); not part of the installed package."""

from __future__ import annotations

import time

import numpy as np
import torch
import torch.nn.functional as F

from bench.mini import data as D
from bench.mini import weights as W
from mini_training.augment import EVAL_STREAMS, TRAIN_STREAM, _cosine_lr, _log
from mini_training.clip import (
    _clip_images,
    _clip_optimizer,
    _clip_step,
    _CompactTokens,
    all_caption_words,
    eval_clip_zero_shot,
)

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
