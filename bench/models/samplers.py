"""ODE / SDE solvers for velocity (flow) models, in the paper's "N steps = N intervals" convention.

Every solver integrates dx/dt = f(x, t) for a batch x, where ``f(x, t)`` takes the state (B, ...) and a per-row
time tensor (B,) and returns the drift (B, ...). Time runs from ``t0`` to ``t1`` (either direction); the
adapter decides which end is noise (SiT: t = 0 noise, t = 1 data). NFE is whatever the network hooks count
(`bench.timing.NFECounter`); the fixed-step solvers' counts are also declared by `declared_evals`.

- ``euler``   N intervals on linspace(t0, t1, N + 1): N evaluations.
- ``heun``    explicit trapezoid (Heun's 2nd-order method; torchdiffeq's ``heun2`` tableau) on the same grid, both
              stages on every interval including the last (the velocity field is finite at both ends for SiT):
              2N evaluations.
- ``dopri5``  adaptive Dormand-Prince 5(4) from torchdiffeq (the solver SiT's sample.py uses), from t0 to t1,
              tolerances ``atol`` / ``rtol`` (SiT defaults 1e-6 / 1e-3), passed to torchdiffeq as one-element
              LISTS as the reference's transport/integrators.py does: a 1-d tolerance tensor makes torchdiffeq
              compute its error ratio in float64 (a float gives a 0-d tensor, and a float32 ratio), so the joint
              solve matches the reference exactly (floats: ~2e-6 apart on a small SiT). The step count N does not
              enter: the solver picks its own steps, and NFE is counted, not declared.
              BATCH COMPOSITION: torchdiffeq's error norm is the RMS over the WHOLE state tensor, so solving a
              batch jointly makes every sample's accepted step sizes (and so its result and NFE) depend on the
              other samples in the batch, breaking "sample i depends only on (seed, i)". ``per_sample=True`` (the
              default) therefore solves each row as its own ODE (a batch of one: slower on a GPU, exactly
              batch-independent up to the network's own batch invariance); ``per_sample=False`` reproduces the
              reference's joint solve (faster; results depend on batch size and neighbours — record it). The
              two differ by design (~1.7e-3 max abs on a small random SiT at cfg 1): each sample's own steps.
- ``sde``     Euler-Maruyama for SiT's reverse SDE (see `euler_maruyama`): N - 1 stochastic steps on
              linspace(t0, t1 - last, N) then one deterministic "Mean" step of size ``last``: N evaluations.
"""

from __future__ import annotations

from typing import Callable

import torch

Drift = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]

FIXED = ("euler", "heun")
ADAPTIVE = ("dopri5",)
STOCHASTIC = ("sde",)
SOLVERS = FIXED + ADAPTIVE + STOCHASTIC


def declared_evals(solver: str, steps: int) -> int | None:
    """Drift evaluations per sample for ``steps`` intervals; None for adaptive solvers (count them instead)."""
    if solver == "euler" or solver == "sde":
        return steps
    if solver == "heun":
        return 2 * steps
    if solver in ADAPTIVE:
        return None
    raise ValueError(f"unknown solver {solver!r}; expected one of {list(SOLVERS)}")


def time_grid(steps: int, t0: float, t1: float) -> list[float]:
    """N + 1 time points from t0 to t1 (N intervals), as Python floats (float32 linspace, like the references)."""
    if steps < 1:
        raise ValueError(f"steps must be >= 1, got {steps}")
    return torch.linspace(t0, t1, steps + 1).tolist()


def _tvec(x: torch.Tensor, t: float) -> torch.Tensor:
    return torch.full((x.shape[0],), t, device=x.device, dtype=torch.float32)


def euler(f: Drift, x: torch.Tensor, ts: list[float]) -> torch.Tensor:
    for t, t_next in zip(ts[:-1], ts[1:]):
        x = x + (t_next - t) * f(x, _tvec(x, t))
    return x


def heun(f: Drift, x: torch.Tensor, ts: list[float]) -> torch.Tensor:
    for t, t_next in zip(ts[:-1], ts[1:]):
        dt = t_next - t
        k1 = f(x, _tvec(x, t))
        k2 = f(x + dt * k1, _tvec(x, t_next))
        x = x + dt * 0.5 * (k1 + k2)
    return x


def dopri5(drift_for: Callable[[slice], Drift], x: torch.Tensor, t0: float, t1: float, atol: float = 1e-6,
           rtol: float = 1e-3, per_sample: bool = True) -> torch.Tensor:
    """x at t1 by adaptive dopri5 (torchdiffeq); see the module doc on ``per_sample``.

    ``drift_for(rows)`` gives the drift for the rows ``x[rows]`` (their labels, guidance...): called once with
    ``slice(0, B)`` for a joint solve, once per row ``slice(i, i + 1)`` for a per-sample solve.
    """
    from torchdiffeq import odeint

    ts = torch.tensor([t0, t1], dtype=torch.float32, device=x.device)

    def solve(rows: slice) -> torch.Tensor:
        f = drift_for(rows)

        def rhs(t: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
            return f(y, t.to(torch.float32).expand(y.shape[0]))
        # lists, as the reference passes them: a float64 error ratio (see the module doc)
        return odeint(rhs, x[rows], ts, method="dopri5", atol=[atol], rtol=[rtol])[-1]

    if not per_sample or x.shape[0] <= 1:
        return solve(slice(0, x.shape[0]))
    return torch.cat([solve(slice(i, i + 1)) for i in range(x.shape[0])])


def euler_maruyama(f: Drift, score_drift: Callable[[torch.Tensor, torch.Tensor, torch.Tensor], torch.Tensor],
                   diffusion: Callable[[torch.Tensor], torch.Tensor], x: torch.Tensor, steps: int, t0: float,
                   t1: float, last: float, noise_at: Callable[[int], torch.Tensor]) -> torch.Tensor:
    """SiT's SDE sampler (transport.Sampler.sample_sde, Euler-Maruyama, last step "Mean"), N = ``steps`` intervals.

    ``f(x, t)`` is the velocity; the SDE drift is v + D(t) * score(x, t, v) with ``score_drift(x, t, v)`` giving
    D(t) * score and ``diffusion(t)`` D(t). Grid: linspace(t0, t1 - last, steps) -> steps - 1 stochastic steps
    x <- x + drift dt + sqrt(2 D dt) * noise_at(k), then x <- x + drift(x, t1 - last) * last (no noise).
    ``noise_at(k)`` returns the k-th step's standard normal draw (per sample, from bench.noise).
    """
    if steps < 2:
        raise ValueError(f"the sde solver needs steps >= 2 (steps - 1 stochastic steps and a final mean step), "
                         f"got {steps}")
    ts = torch.linspace(t0, t1 - last, steps).tolist()
    for k, (t, t_next) in enumerate(zip(ts[:-1], ts[1:])):
        dt = t_next - t
        tv = _tvec(x, t)
        v = f(x, tv)
        drift = v + score_drift(x, tv, v)
        x = x + drift * dt + torch.sqrt(2 * diffusion(tv) * dt).view(-1, *[1] * (x.dim() - 1)) * noise_at(k)
    tv = _tvec(x, ts[-1])
    v = f(x, tv)
    return x + (v + score_drift(x, tv, v)) * last
