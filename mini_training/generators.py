"""Train the miniature world's three generators on CPU from fixed seeds (weights names sit, meanflow, distill).

Conventions (shared with bench/models/mini.py):

- Images live in [-1, 1], NCHW float32, 16x16x3. Labels 0..9; label 10 is the null class (CFG).
- Linear interpolant  x_t = (1 - t) * x_data + t * noise; t = 1 is pure noise, t = 0 data.
- sit       predicts the velocity v = noise - x_data. Sampling integrates dx/dt = v from t = 1 to t = 0 on
            linspace(1, 0, N + 1) (N = steps = intervals): x_next = x + (t_next - t) * v.
- meanflow  predicts the average velocity u(z_t, r, t) = (1 / (t - r)) * integral_r^t v dtau over [r, t];
            one jump is z_r = z_t - (t - r) * u(z_t, r, t), on the same time grid. Trained with the MeanFlow
            identity u = v - (t - r) d/dt u (torch.func.jvp, fp32, only on rows with r != t, target detached).
- distill   a one-step solution operator with the guidance scale as an input:
            x0_hat = x_t - t * net(x_t, t, label, w). Trained by regression on the sit teacher's guided
            Euler trajectories (points along each trajectory -> its end point). Multi-step sampling jumps to 0,
            re-noises to the next t with fresh noise, and jumps again (SoFlow style).

All three use label dropout (10%) so classifier-free guidance v = v_u + w (v_c - v_u) works.
Determinism: each run is a pure function of its seed and step count (single-threaded CPU torch); an optional
``max_seconds`` wall-clock cap stops early and records the steps actually done in the manifest.
No bf16 autocast: this CPU has no bf16 hardware (measured ~30x slower than fp32).
"""

from __future__ import annotations

import copy
import time
from typing import Any, Callable

import numpy as np
import torch
import torch.nn.functional as F

from bench.mini import data, weights
from bench.mini.nets import MiniUNet, make_config, num_params

NULL = data.NUM_CLASSES
_POOL: dict[int, tuple[torch.Tensor, torch.Tensor]] = {}


def train_pool(size: int = 60_000) -> tuple[torch.Tensor, torch.Tensor]:
    """The first ``size`` images of the train stream as float [-1, 1] NCHW and labels (cached per process)."""
    if size not in _POOL:
        imgs, labels = data.batch("train", 0, size)
        x = torch.from_numpy(imgs).permute(0, 3, 1, 2).float().div(127.5).sub(1.0).contiguous()
        _POOL[size] = (x, torch.from_numpy(labels))
    return _POOL[size]


def dihedral(x: torch.Tensor, g: torch.Generator) -> torch.Tensor:
    """Random flips / 90-degree rotations per batch half: the shape distribution is invariant to them
    (uniform rotation, symmetric offsets, mirror-symmetric shapes)."""
    k = int(torch.randint(4, (1,), generator=g))
    flip = bool(torch.randint(2, (1,), generator=g))
    x = torch.rot90(x, k, dims=(2, 3))
    return torch.flip(x, dims=(3,)) if flip else x


def _lr(step: int, progress: float, base: float, warmup: int = 200) -> float:
    """Linear warm-up, constant, then linear decay over the last 30% of training (progress in [0, 1])."""
    if step < warmup:
        return base * (step + 1) / warmup
    if progress > 0.7:
        return base * max(0.05, (1.0 - progress) / 0.3)
    return base


class EMA:
    def __init__(self, net: torch.nn.Module, decay: float):
        self.decay = decay
        self.shadow = copy.deepcopy(net).eval()
        for p in self.shadow.parameters():
            p.requires_grad_(False)

    @torch.no_grad()
    def update(self, net: torch.nn.Module, step: int) -> None:
        d = min(self.decay, (1 + step) / (10 + step))
        for ps, p in zip(self.shadow.parameters(), net.parameters()):
            ps.lerp_(p, 1 - d)
        for bs, b in zip(self.shadow.buffers(), net.buffers()):
            bs.copy_(b)


def _loop(name: str, net: MiniUNet, loss_fn: Callable[[int, torch.Generator], Any], *, steps: int,
          lr: float, seed: int, ema_decay: float, max_seconds: float | None, extra_config: dict[str, Any],
          log_every: int = 100) -> dict[str, Any]:
    torch.set_num_threads(1)
    g = torch.Generator().manual_seed(seed)
    opt = torch.optim.AdamW(net.parameters(), lr=lr, betas=(0.9, 0.99), weight_decay=0.0)
    ema = EMA(net, ema_decay)
    t0 = time.time()
    hist: list[float] = []
    done = 0
    print(f"[{name}] {num_params(net):,} params, {steps} steps, lr {lr}", flush=True)
    for step in range(steps):
        progress = step / steps
        if max_seconds is not None:     # a capped run anneals on whichever end comes first
            progress = max(progress, (time.time() - t0) / max_seconds)
        for pg in opt.param_groups:
            pg["lr"] = _lr(step, progress, lr)
        out = loss_fn(step, g)
        loss, logged = out if isinstance(out, tuple) else (out, float(out.detach()))
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(net.parameters(), 1.0)
        opt.step()
        ema.update(net, step)
        hist.append(logged)
        done = step + 1
        if done % log_every == 0:
            el = time.time() - t0
            print(f"[{name}] step {done}/{steps} loss {np.mean(hist[-log_every:]):.4f} "
                  f"{el:.0f}s ({el / done:.3f} s/step)", flush=True)
        if max_seconds is not None and time.time() - t0 > max_seconds:
            print(f"[{name}] wall-clock cap {max_seconds}s reached at step {done}", flush=True)
            break
    secs = time.time() - t0
    final = float(np.mean(hist[-min(200, len(hist)):]))
    config = dict(net.config, **extra_config, train_steps=done, planned_steps=steps, lr=lr, ema=ema_decay)
    weights.save(name, ema.shadow.state_dict(), config, seed=seed, steps=done,
                 losses={"final": final, "first": float(np.mean(hist[:50]))}, train_seconds=secs)
    print(f"[{name}] saved: {done} steps in {secs:.0f}s, final loss {final:.4f}", flush=True)
    return {"net": ema.shadow, "steps": done, "seconds": secs, "loss": final}


def _batch(pool: tuple[torch.Tensor, torch.Tensor], bs: int, g: torch.Generator,
           p_uncond: float) -> tuple[torch.Tensor, torch.Tensor]:
    x, y = pool
    idx = torch.randint(len(x), (bs,), generator=g)
    xb, yb = dihedral(x[idx], g), y[idx].clone()
    drop = torch.rand(bs, generator=g) < p_uncond
    yb[drop] = NULL
    return xb, yb


# ----------------------------------------------------------------------------------------------- sit
def train_sit(steps: int = 2000, batch_size: int = 64, lr: float = 1e-3, seed: int = 1,
              max_seconds: float | None = None, pool_size: int = 60_000) -> dict[str, Any]:
    """Flow matching (velocity prediction, linear interpolant, uniform t, 10% label dropout)."""
    torch.manual_seed(seed)
    net = MiniUNet(make_config())
    pool = train_pool(pool_size)

    def loss_fn(step: int, g: torch.Generator) -> torch.Tensor:
        x0, y = _batch(pool, batch_size, g, 0.1)
        eps = torch.randn(x0.shape, generator=g)
        t = torch.rand(batch_size, generator=g)
        xt = (1 - t[:, None, None, None]) * x0 + t[:, None, None, None] * eps
        return F.mse_loss(net(xt, t, y), eps - x0)

    return _loop("sit", net, loss_fn, steps=steps, lr=lr, seed=seed, ema_decay=0.999, max_seconds=max_seconds,
                 extra_config={"kind": "sit", "objective": "flow-matching-v", "batch_size": batch_size,
                               "p_uncond": 0.1})


# ------------------------------------------------------------------------------------------ meanflow
def _sample_tr(bs: int, g: torch.Generator, p_equal: float, p_t1: float = 0.0) -> tuple[torch.Tensor, torch.Tensor]:
    """MeanFlow's (t, r): two logit-normal(-0.4, 1) draws sorted so t >= r; r = t on a p_equal share.
    A p_t1 share (drawn from the r != t rows' budget) starts at t = 1 with r = 0 (half) or r ~ U(0, 1): the
    one-step jump, which logit-normal times almost never visit."""
    a = torch.sigmoid(torch.randn(bs, generator=g) - 0.4)
    b = torch.sigmoid(torch.randn(bs, generator=g) - 0.4)
    t, r = torch.maximum(a, b), torch.minimum(a, b)
    u = torch.rand(bs, generator=g)
    r = torch.where(u < p_equal, t, r)
    one = u >= 1.0 - p_t1
    r1 = torch.where(torch.rand(bs, generator=g) < 0.5, torch.zeros(bs), torch.rand(bs, generator=g))
    t = torch.where(one, torch.ones(bs), t)
    r = torch.where(one, r1, r)
    return t, r


def train_meanflow(steps: int = 2000, batch_size: int = 64, lr: float = 1e-3, seed: int = 2,
                   max_seconds: float | None = None, pool_size: int = 60_000, p_equal: float = 0.75,
                   adaptive_p: float = 1.0, init_from: str | None = "sit", p_t1: float = 0.1,
                   name: str = "meanflow") -> dict[str, Any]:
    """MeanFlow average-velocity objective with the JVP identity and adaptive loss weighting.

    ``init_from="sit"`` warm-starts from the flow model (u(z, t, t) = v(z, t), so at init the network is the
    sit velocity with zero weight on its (t - r) features): a CPU-budget shortcut, recorded in the config.
    """
    torch.manual_seed(seed)
    init = None
    if init_from is not None and init_from in weights.read_manifest():
        sd, tcfg = weights.load(init_from)
        if tcfg.get("second_time") == "r":          # fine-tune an existing MeanFlow network
            net = MiniUNet({k: v for k, v in tcfg.items() if k in make_config()})
            net.load_state_dict(sd)
            init = {"name": init_from, "steps": tcfg.get("train_steps"), "init_from": tcfg.get("init_from"),
                    "p_t1": tcfg.get("p_t1", 0.0)}
        else:
            net = _widen_from(sd, make_config(**{k: v for k, v in tcfg.items()
                                                 if k in make_config() and k != "second_time"}, second_time="r"))
            init = init_from
    else:
        net = MiniUNet(make_config(second_time="r"))
    pool = train_pool(pool_size)

    def loss_fn(step: int, g: torch.Generator) -> torch.Tensor:
        x0, y = _batch(pool, batch_size, g, 0.1)
        eps = torch.randn(x0.shape, generator=g)
        t, r = _sample_tr(batch_size, g, p_equal, p_t1)
        tb = t[:, None, None, None]
        zt = (1 - tb) * x0 + tb * eps
        v = eps - x0
        target = v.clone()
        ne = (t - r) > 0
        if bool(ne.any()):
            zs, ts, rs, ys, vs = zt[ne], t[ne], r[ne], y[ne], v[ne]

            def fn(z: torch.Tensor, tt: torch.Tensor, rr: torch.Tensor) -> torch.Tensor:
                return net(z, tt, ys, rr)

            with torch.no_grad():
                _, dudt = torch.func.jvp(fn, (zs, ts, rs), (vs, torch.ones_like(ts), torch.zeros_like(rs)))
            target[ne] = vs - (ts - rs)[:, None, None, None] * dudt
        u = net(zt, t, y, r)
        err = (u - target.detach()).pow(2).flatten(1).mean(1)
        w = 1.0 / (err.detach() + 1e-3).pow(adaptive_p)
        return (w * err).mean(), float(err.detach().mean())    # optimise the weighted loss, log plain MSE

    return _loop(name, net, loss_fn, steps=steps, lr=lr, seed=seed, ema_decay=0.999, max_seconds=max_seconds,
                 extra_config={"kind": "meanflow", "objective": "meanflow-jvp", "batch_size": batch_size,
                               "init_from": init, "p_t1": p_t1,
                               "p_uncond": 0.1, "p_equal": p_equal, "adaptive_p": adaptive_p})


def train_meanflow_recipe() -> dict[str, Any]:
    """The shipped MeanFlow recipe (what `make mini-weights` runs): stage 1 warm-starts from sit with the plain
    MeanFlow time sampler; stage 2 fine-tunes with 35% of rows on one-step jumps from t = 1, which logit-normal
    times almost never visit (stage 1 alone gave 1-step FID 42.6 against sit's 50; stage 2 gave 29.4). Stage 2's
    lower learning rate matters: at 1e-3 it reached only 47 at 1 step, with CFG no longer acting there."""
    train_meanflow(steps=1500, p_equal=0.75, p_t1=0.0, init_from="sit")
    return train_meanflow(steps=400, lr=3e-4, p_equal=0.4, p_t1=0.35, init_from="meanflow")


# ------------------------------------------------------------------------------------------- distill
@torch.inference_mode()
def teacher_trajectories(teacher: MiniUNet, n: int, steps: int, w_range: tuple[float, float], seed: int,
                         batch: int = 256) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Guided Euler trajectories of the sit teacher: states (n, steps + 1, 3, 16, 16) fp16 at
    linspace(1, 0, steps + 1), labels (n,), guidance scales (n,)."""
    g = torch.Generator().manual_seed(seed)
    labels = torch.randint(data.NUM_CLASSES, (n,), generator=g)
    ws = w_range[0] + (w_range[1] - w_range[0]) * torch.rand(n, generator=g)
    ws[: n // 8] = 1.0          # an eighth unguided: w = 1 is a common setting
    noise = torch.randn((n, 3, 16, 16), generator=g)
    ts = torch.linspace(1, 0, steps + 1)
    out = torch.empty((n, steps + 1, 3, 16, 16), dtype=torch.float16)
    t0 = time.time()
    for s in range(0, n, batch):
        x, y, w = noise[s:s + batch].clone(), labels[s:s + batch], ws[s:s + batch]
        b = len(x)
        out[s:s + b, 0] = x.half()
        for k in range(steps):
            tt = ts[k].expand(2 * b)
            vv = teacher(torch.cat([x, x]), tt, torch.cat([y, torch.full_like(y, NULL)]))
            vc, vu = vv[:b], vv[b:]
            v = vu + w[:, None, None, None] * (vc - vu)
            x = x + (ts[k + 1] - ts[k]) * v
            out[s:s + b, k + 1] = x.half()
        if (s // batch) % 8 == 0:
            print(f"[distill] teacher {s + b}/{n} {time.time() - t0:.0f}s", flush=True)
    return out, labels, ws


def _widen_from(teacher_sd: dict[str, torch.Tensor], config: dict[str, Any]) -> MiniUNet:
    """A two-input network initialised from a one-input (sit) network: the second input's features start with
    zero weight, so at init it computes the sit velocity (for the student: the teacher's one-step Euler jump
    x_t - t * v(x_t, t))."""
    student = MiniUNet(config)
    sd = student.state_dict()
    for k, v in teacher_sd.items():
        if k == "time_mlp.0.weight":
            sd[k] = torch.zeros_like(sd[k])
            sd[k][:, : v.shape[1]] = v
        else:
            sd[k] = v.clone()
    student.load_state_dict(sd)
    return student


def train_distill(steps: int = 1200, batch_size: int = 64, lr: float = 5e-4, seed: int = 3,
                  max_seconds: float | None = None, n_traj: int = 4000, teacher_steps: int = 8,
                  w_range: tuple[float, float] = (1.0, 5.0), p_t1: float = 0.4) -> dict[str, Any]:
    """Regress a guidance-conditioned one-step student on the sit teacher's guided trajectories."""
    torch.set_num_threads(1)
    torch.manual_seed(seed)
    t_start = time.time()
    teacher_sd, teacher_cfg = weights.load("sit")
    teacher = MiniUNet({k: v for k, v in teacher_cfg.items() if k in make_config()}).eval()
    teacher.load_state_dict(teacher_sd)
    traj, labels, ws = teacher_trajectories(teacher, n_traj, teacher_steps, w_range, seed)
    gen_seconds = time.time() - t_start
    print(f"[distill] {n_traj} teacher trajectories in {gen_seconds:.0f}s", flush=True)
    config = make_config(**{k: v for k, v in teacher_cfg.items() if k in make_config() and k != "second_time"},
                         second_time="w")
    net = _widen_from(teacher_sd, config)
    ts = torch.linspace(1, 0, teacher_steps + 1)
    x_end = traj[:, -1].float()

    def loss_fn(step: int, g: torch.Generator) -> torch.Tensor:
        i = torch.randint(n_traj, (batch_size,), generator=g)
        k = torch.randint(teacher_steps, (batch_size,), generator=g)
        k[torch.rand(batch_size, generator=g) < p_t1] = 0
        xt, t = traj[i, k].float(), ts[k]
        y = labels[i].clone()
        pred = xt - t[:, None, None, None] * net(xt, t, y, ws[i])
        return F.mse_loss(pred, x_end[i])

    remaining = None if max_seconds is None else max(60.0, max_seconds - gen_seconds)
    res = _loop("distill", net, loss_fn, steps=steps, lr=lr, seed=seed, ema_decay=0.995, max_seconds=remaining,
                extra_config={"kind": "distill", "objective": "trajectory-regression", "batch_size": batch_size,
                              "teacher": "sit", "teacher_steps": teacher_steps, "teacher_solver": "euler",
                              "n_traj": n_traj, "w_range": list(w_range), "p_t1": p_t1,
                              "teacher_seconds": round(gen_seconds, 1)})
    return res
