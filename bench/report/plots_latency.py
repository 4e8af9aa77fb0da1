"""Quality against batch-1 latency, with the Pareto front: a figure of `bench.report.plots` (importable there).

Invariants: a cell whose latency is flagged noisy (tidy's boolean ``latency_flagged``, by
`bench.latency_rule`; absent or NA = not flagged) is drawn hollow and is never a Pareto candidate: it is removed
from `pareto_mask`'s input, not only from the drawing; the latency axis is scaled to the unflagged cells, so a
flagged outlier cannot squash it (a flagged cell beyond the axis is drawn at its edge as a hollow arrowhead and
its latency is listed under the axis); quality values with a stored interval (`bench.report.intervals.interval`)
get a bar.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from bench import composite
from bench.latency_rule import FLAG_RATIO
from bench.report import plots_style as S
from bench.report.directions import Specs
from bench.report.intervals import interval

FLAGGED = f"hollow: noisy latency\n(IQR/median > {FLAG_RATIO:g}; not on the front)"
MARGIN = 1.3            # latency axis: the unflagged cells' range widened by this factor each side (log axis)


def pareto_mask(cost: np.ndarray, quality: np.ndarray, higher_is_better: bool) -> np.ndarray:
    """Cells no other cell beats on both latency (lower) and quality (by its declared direction); a cell with a
    missing cost or quality is never on the front and beats no one."""
    q = quality if higher_is_better else -quality
    ok = np.isfinite(cost) & np.isfinite(q)
    mask = np.zeros(len(cost), dtype=bool)
    for i in np.flatnonzero(ok):
        dominated = ok & (cost <= cost[i]) & (q >= q[i]) & ((cost < cost[i]) | (q > q[i]))
        mask[i] = not dominated.any()
    return mask


def flagged(runs: pd.DataFrame) -> np.ndarray:
    """Per row, whether its latency is flagged noisy (False where the column is absent or NA)."""
    if "latency_flagged" not in runs.columns:
        return np.zeros(len(runs), dtype=bool)
    return runs["latency_flagged"].astype("boolean").fillna(False).to_numpy(dtype=bool)


def candidates(runs: pd.DataFrame) -> np.ndarray:
    """The latency of each row as a Pareto candidate: NaN where flagged (so `pareto_mask` never picks it)."""
    cost = pd.to_numeric(runs["latency_s"], errors="coerce").to_numpy(dtype=float)
    return np.where(flagged(runs), np.nan, cost)


def _limits(ax, cost: np.ndarray, bad: np.ndarray) -> tuple[float, float] | None:
    """Set the latency axis from the unflagged cells; returns the limits (None: nothing unflagged to scale to)."""
    good = cost[~bad & np.isfinite(cost) & (cost > 0)]
    if not len(good):
        return None
    lim = (float(good.min()) / MARGIN, float(good.max()) * MARGIN)
    ax.set_xlim(*lim)
    return lim


def _draw_flagged(ax, x: np.ndarray, y: np.ndarray, colors: list, lim) -> str:
    """Flagged cells hollow: at their latency when inside ``lim``, else at the axis edge as an arrowhead; returns
    a line for the axis label listing the latencies beyond the axis ("" when none)."""
    inside = np.ones(len(x), dtype=bool) if lim is None else (x >= lim[0]) & (x <= lim[1])
    if inside.any():
        ax.scatter(x[inside], y[inside], s=30, facecolors="none", edgecolors=[c for c, i in zip(colors, inside) if i],
                   linewidths=1.3, zorder=3, label=FLAGGED)
    if inside.all():
        return ""
    for side, edge, marker in ((x > lim[1], lim[1], ">"), (x < lim[0], lim[0], "<")):
        if side.any():
            ax.scatter(np.full(int(side.sum()), edge), y[side], s=45, marker=marker, facecolors="none", zorder=3,
                       edgecolors=[c for c, b in zip(colors, side) if b], linewidths=1.3, clip_on=False,
                       label=FLAGGED)
    return "\nflagged, beyond the axis: " + ", ".join(f"{v:.3g} s" for v in sorted(x[~inside]))


def latency(df: pd.DataFrame, dataset: str, out: Path, specs: Specs):
    """MMHM and its fidelity input (FID) against batch-1 latency, Pareto front (of unflagged cells) marked."""
    from bench.report import plots as P
    runs = P._runs(df)
    want = [composite.NAME, composite.COLUMNS[composite.FIDELITY]]
    ys = [m for m in want if m in runs.columns and runs[m].notna().any()]
    if "latency_s" not in runs.columns or runs["latency_s"].notna().sum() == 0 or not ys:
        return f"quality vs latency: needs latency_s and {' or '.join(want)}"
    runs = runs.sort_values("model", kind="stable")              # drawn model after model, as one collection
    models = sorted(runs["model"].unique())
    colors = {m: S.color(i) for i, m in enumerate(models)}
    point_colors = [colors[m] for m in runs["model"]]
    bad, cost = flagged(runs), pd.to_numeric(runs["latency_s"], errors="coerce").to_numpy(dtype=float)
    handles = [S.line_handle(colors[m], marker_only=True) for m in models]
    fig = S.figure(5.0 * len(ys) + 2.6, 4.4)
    axes = fig.subplots(1, len(ys), squeeze=False).ravel()
    any_iv = False
    for ax, m in zip(axes, ys):
        q = pd.to_numeric(runs[m], errors="coerce").to_numpy(dtype=float)
        good = ~bad
        ax.scatter(cost[good], q[good], s=18, c=[c for c, g in zip(point_colors, good) if g], zorder=3)
        iv = interval(runs, m)
        if iv is not None:
            any_iv = S.draw_bars(ax, [("0.45", cost, iv[0].to_numpy(float), iv[1].to_numpy(float))]) > 0 or any_iv
        front = pareto_mask(candidates(runs), q, specs.higher_is_better(m))
        if front.any():
            order = np.argsort(cost[front])
            fx, fy = cost[front][order], q[front][order]
            ax.step(fx, fy, where="post", color="k", lw=1, ls="--", zorder=2, label="Pareto front")
            ax.scatter(fx, fy, s=70, facecolors="none", edgecolors="k", lw=1, zorder=4)
        S.log_axis(ax)
        lim = _limits(ax, cost, bad)
        beyond = _draw_flagged(ax, cost[bad], q[bad], [c for c, b in zip(point_colors, bad) if b], lim) \
            if bad.any() else ""
        ax.set_xlabel(specs.label("latency_s") + ", log axis (lower is better)" + beyond)
        ax.set_ylabel(S.tex_safe(specs.title(m)))
        ax.set_title(S.tex_safe(f"{specs.label(m)} against latency"), fontsize=10)
        ax.grid(alpha=0.3)
    n_bad = int(bad.sum())
    fig.suptitle(f"{S.tex_safe(dataset)}: quality against latency (circled: Pareto-optimal cells)", fontsize=11)
    extra = ([S.interval_handle()], ["stored interval"]) if any_iv else ([], [])
    S.legend(fig, axes, (handles + extra[0], [S.tex_safe(m) for m in models] + extra[1]))
    png, svg = P._save(fig, out, f"latency-{P.slug(dataset)}")
    hollow = (f" Hollow: {n_bad} cell(s) whose latency is flagged noisy (IQR/median above {FLAG_RATIO:g}): shown, "
              "never a Pareto point, and the latency axis is scaled without them." if n_bad else "")
    return P.Plot("latency", dataset, "Quality against latency", png, svg,
                  "Circled cells are Pareto-optimal: no other cell is both faster and better on that metric."
                  + hollow + (f" Grey {P.INTERVALS}." if any_iv else ""))
