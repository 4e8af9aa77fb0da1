"""Training of the miniature world's classifier (the FID/IS/KID feature network): noise-robust by augmentation.

Run through ``python -m mini_training`` (see ``make mini-weights``); not part of the installed package."""

from __future__ import annotations

import time

import numpy as np
import torch
import torch.nn.functional as F

from bench.mini import data as D
from bench.mini import weights as W
from mini_training.augment import EVAL_STREAMS, TRAIN_STREAM, _cosine_lr, _log, _quantize, _to_nchw01, augment

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

