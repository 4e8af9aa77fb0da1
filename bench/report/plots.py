"""The report's figures (matplotlib, Agg canvas, no pyplot state), each saved as PNG and SVG.

Per dataset: every ranked metric in the store against steps (log2 axis, one line per model and CFG) and
against CFG (one line per model and step count); MMHM's fidelity input (FID) against its text-alignment inputs
(CLIP Score, PickScore) with arrows along increasing CFG; MMHM and FID against batch-1 latency with the Pareto
front; and the rank-correlation heatmap of every ranked metric. Which metrics, their titles and directions come
from a `bench.report.directions.Specs` read from the store (the metrics' own declarations, stored with their
values); the composite's inputs from `bench.composite`. Missing values break a line; nothing is interpolated
or averaged. matplotlib is imported inside the functions only.

Cost stays linear in the cells: each axes draws its lines, markers and arrows as a few collections (not one
artist per line or arrow), and a figure with more than MAX_LEGEND series lists models only (shade tells a
model's series apart, as the title says) instead of a legend entry per series.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from bench import composite
from bench.report.directions import Specs
from bench.report.sanitize import file_name

DIMS = ("steps", "cfg", "solver", "seed")
FLOOR = "real"          # the family drawn as each metric's floor, not as a line
MAX_LEGEND = 20         # more series than this: the legend names models only and shade tells their series apart


@dataclass
class Plot:
    kind: str
    dataset: str
    title: str
    png: Path
    svg: Path
    caption: str


def slug(name: str) -> str:
    """A name (suite, dataset id) as a file or folder name: `bench.report.sanitize.file_name`."""
    return file_name(name)


def _figure(w: float, h: float):
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure
    fig = Figure(figsize=(w, h), dpi=100, layout="constrained")
    FigureCanvasAgg(fig)
    return fig


def _save(fig, out: Path, name: str) -> tuple[Path, Path]:
    import matplotlib
    out.mkdir(parents=True, exist_ok=True)
    png, svg = out / f"{name}.png", out / f"{name}.svg"
    with matplotlib.rc_context({"svg.hashsalt": "stepbench", "svg.fonttype": "none"}):
        fig.savefig(png, dpi=100, metadata={"Software": None})
        fig.set_layout_engine("none")       # keep the layout just computed: the SVG is the same figure
        fig.savefig(svg, metadata={"Creator": None, "Date": None})
    return png, svg


def _colors(models: list[str]) -> dict[str, tuple]:
    import matplotlib
    cmap = matplotlib.colormaps["tab10"]
    return {m: cmap(i % 10) for i, m in enumerate(models)}


def _shade(color, i: int, n: int):
    """The model's colour, lighter for earlier members of a series (i of n), darkest last."""
    if n <= 1:
        return color
    t = 0.55 * (1 - i / (n - 1))
    return tuple(c + (1 - c) * t for c in color[:3]) + (1.0,)


def _runs(df: pd.DataFrame) -> pd.DataFrame:
    """Ok cells that are plotted as model lines (not the real-vs-real floor)."""
    ok = df[df["status"] == "ok"]
    return ok[ok["family"] != FLOOR] if "family" in ok.columns else ok


def _floors(df: pd.DataFrame) -> pd.DataFrame:
    ok = df[df["status"] == "ok"]
    return ok[ok["family"] == FLOOR] if "family" in ok.columns else ok.iloc[0:0]


def _metrics(df: pd.DataFrame, specs: Specs) -> list[str]:
    """The ranked metrics with at least one value in ``df``, in display order (MMHM last)."""
    return [m for m in specs.ranked(df) if df[m].notna().any()]


def _varying(g: pd.DataFrame, skip: str) -> list[str]:
    """The config columns that tell a model's lines apart: the other sweep axis always, solver and seed if varied."""
    other = "cfg" if skip == "steps" else "steps"
    return [d for d in DIMS if d != skip and d in g.columns and (d == other or g[d].nunique(dropna=False) > 1)]


def tex_safe(text) -> str:
    """Text for matplotlib: a '$' in a stored name must not switch on mathtext."""
    return str(text).replace("$", r"\$")


def _label(model: str, key: tuple, dims: list[str]) -> str:
    parts = [tex_safe(model)]
    for d, v in zip(dims, key):
        parts.append(f"{d} {v:g}" if isinstance(v, float) else f"{d} {v}")
    return " ".join(parts)


def _series(runs: pd.DataFrame, x: str) -> list[tuple]:
    """(model, label, colour, model colour, frame sorted by x) for each line: cells of one model differing only in x."""
    models = sorted(runs["model"].unique())
    colors = _colors(models)
    out = []
    for model, g in runs[runs[x].notna()].groupby("model", sort=True):
        dims = _varying(g, x)
        groups = list(g.groupby(dims, dropna=False, sort=True)) if dims else [((), g)]
        for i, (key, sub) in enumerate(groups):
            key = key if isinstance(key, tuple) else (key,)
            out.append((model, _label(model, key, dims), _shade(colors[model], i, len(groups)), colors[model],
                        sub.sort_values(x)))
    return out


def _entries(series: list[tuple], marker_only: bool = False) -> tuple[list, list[str], bool]:
    """Legend handles and labels for the series: one per series when at most MAX_LEGEND, else one per model in
    its colour (compact: the shade then tells the series of a model apart, as the caption says)."""
    from matplotlib.lines import Line2D
    style = dict(ls="none", marker="o", ms=18 ** 0.5) if marker_only else dict(marker="o", ms=3.5, lw=1.4)
    compact = len(series) > MAX_LEGEND
    if compact:
        picked = list({model: (tex_safe(model), base) for model, _lab, _c, base, _sub in series}.values())
    else:
        picked = [(lab.replace("steps ", "steps=") if marker_only else lab, c) for _m, lab, c, _b, _s in series]
    return [Line2D([], [], color=c, **style) for _lab, c in picked], [lab for lab, _c in picked], compact


def _values(series: list[tuple], cols: list[str]) -> list[tuple]:
    """(colour, the series' ``cols`` as a float array) for each series, converted once per figure."""
    return [(color, sub[cols].astype(float).to_numpy()) for _model, _lab, color, _base, sub in series]


def _draw_lines(ax, values: list[tuple], y: int) -> None:
    """All series of one axes (column 0 against column ``y`` of ``values``) as one line collection, broken at
    missing values, and one marker collection."""
    from matplotlib.collections import LineCollection
    segs, seg_colors, pts, pt_colors = [], [], [], []
    for color, v in values:
        xy = v[:, [0, y]]
        ok = np.isfinite(xy).all(axis=1)
        if not ok.any():
            continue
        pts.append(xy[ok])
        pt_colors += [color] * int(ok.sum())
        edges = np.flatnonzero(np.diff(np.r_[0, ok.astype(np.int8), 0]))        # starts and ends of finite runs
        for a, b in zip(edges[::2], edges[1::2]):
            if b - a > 1:
                segs.append(xy[a:b])
                seg_colors.append(color)
    if segs:
        ax.add_collection(LineCollection(segs, colors=seg_colors, linewidths=1.4, zorder=2), autolim=True)
    if pts:
        p = np.concatenate(pts)
        ax.scatter(p[:, 0], p[:, 1], s=3.5 ** 2, c=pt_colors, linewidths=1.0, edgecolors="face", zorder=2.01)


def _floor_lines(ax, floors: pd.DataFrame, metric: str) -> None:
    vals = floors[metric].dropna() if metric in floors.columns else []
    for j, v in enumerate(vals):
        ax.axhline(v, color="0.45", ls=":", lw=1.2, label="real-vs-real (floor)" if j == 0 else None)


def _legend(fig, axes, first: tuple[list, list[str]] = ((), ())) -> None:
    """One legend beside the axes: ``first`` (the series' entries), then each labelled artist once."""
    handles, labels = dict(zip(first[1], first[0])), list(first[1])
    for ax in axes:
        for h, lab in zip(*ax.get_legend_handles_labels()):
            if lab not in handles:
                handles[lab] = h
                labels.append(lab)
    if labels:
        fig.legend([handles[k] for k in labels], labels, loc="outside right upper", fontsize=7, frameon=False)


def _grid(n: int, w: float = 4.2, h: float = 3.1, ncols: int = 3):
    ncols = min(ncols, n)
    nrows = -(-n // ncols)
    fig = _figure(w * ncols + 2.2, h * nrows)
    axes = fig.subplots(nrows, ncols, squeeze=False).ravel()
    for ax in axes[n:]:
        ax.set_visible(False)
    return fig, axes[:n]


def against(df: pd.DataFrame, dataset: str, x: str, out: Path, specs: Specs) -> Plot | str:
    """Each metric against ``x`` ("steps" on a log2 axis, or "cfg"), one line per model and other config."""
    runs, floors, metrics = _runs(df), _floors(df), _metrics(df, specs)
    if runs.empty or not metrics or runs[x].notna().sum() == 0:
        return f"{x}: no ok cells with {x} and a metric"
    fig, axes = _grid(len(metrics))
    series = _series(runs, x)
    values = _values(series, [x, *metrics])
    ticks = sorted(runs[x].dropna().astype(float).unique())
    for i, (ax, m) in enumerate(zip(axes, metrics)):
        _draw_lines(ax, values, i + 1)
        _floor_lines(ax, floors, m)
        ax.set_title(tex_safe(specs.title(m)), fontsize=10)
        ax.set_xlabel(specs.label(x))
        if x == "steps":
            ax.set_xscale("log", base=2)
        ax.set_xticks(ticks, [f"{t:g}" for t in ticks])
        ax.minorticks_off()
        ax.grid(alpha=0.3)
    other = "CFG" if x == "steps" else "step count"
    handles, labels, compact = _entries(series)
    shade = f"; shade: {other}, lighter = smaller" if compact else ""
    fig.suptitle(f"{tex_safe(dataset)}: metrics against {specs.label(x)} (one line per model and {other}{shade})",
                 fontsize=11)
    _legend(fig, axes, (handles, labels))
    png, svg = _save(fig, out, f"{x}-{slug(dataset)}")
    return Plot(x, dataset, f"Metrics against {specs.label(x)}", png, svg,
                f"Each metric against {specs.label(x)}{' (log2 axis)' if x == 'steps' else ''}, one line per model "
                f"and {other}{' (coloured by model, lighter = smaller ' + other + ')' if compact else ''}; "
                f"dotted: real-vs-real floor; gaps are missing values.")


def tradeoff(df: pd.DataFrame, dataset: str, out: Path, specs: Specs) -> Plot | str:
    """MMHM's fidelity input (FID) against each of its alignment inputs (CLIP Score, PickScore); points by
    model, arrows along increasing CFG."""
    runs, floors = _runs(df), _floors(df)
    y, align = composite.COLUMNS[composite.FIDELITY], [composite.COLUMNS[a] for a in composite.ALIGNMENT]
    xs = [c for c in align if c in df.columns and df[c].notna().any()]
    if y not in df.columns or not xs or runs.empty:
        return f"trade-off: needs {y} and {' or '.join(align)}"
    fig = _figure(5.0 * len(xs) + 2.2, 4.2)
    axes = fig.subplots(1, len(xs), squeeze=False).ravel()
    series = _series(runs, "cfg")
    values = _values(series, [y, *xs])
    for i, (ax, xc) in enumerate(zip(axes, xs)):
        _draw_arrows(ax, values, i + 1)
        if not floors.empty and xc in floors.columns:
            f = floors[[xc, y]].astype(float).dropna()
            ax.scatter(f[xc], f[y], marker="*", s=90, color="0.35", zorder=4, label="real-vs-real (floor)")
        ax.set_xlabel(tex_safe(specs.title(xc)))
        ax.set_ylabel(tex_safe(specs.title(y)))
        ax.set_title(tex_safe(f"{specs.label(y)} against {specs.label(xc)}"), fontsize=10)
        ax.grid(alpha=0.3)
    handles, labels, compact = _entries(series, marker_only=True)
    shade = "; shade: step count, lighter = fewer" if compact else ""
    fig.suptitle(f"{tex_safe(dataset)}: the guidance trade-off (arrows follow increasing CFG; one series per model and "
                 f"step count{shade})", fontsize=11)
    _legend(fig, axes, (handles, labels))
    png, svg = _save(fig, out, f"tradeoff-{slug(dataset)}")
    return Plot("tradeoff", dataset, f"{specs.label(y)} against {' and '.join(specs.label(c) for c in xs)}", png, svg,
                "Each point a cell, coloured by model (darker = more steps); arrows run along increasing CFG.")


def _draw_arrows(ax, values: list[tuple], x: int) -> None:
    """The series' cells (column ``x`` of ``values`` against column 0) as one marker collection and, along
    increasing CFG, one arrow per consecutive pair of finite points, all of the axes' arrows a single quiver."""
    pts, pt_colors, tails, heads, arrow_colors = [], [], [], [], []
    for color, v in values:
        xy = v[:, [x, 0]]
        ok = np.isfinite(xy).all(axis=1)
        pts.append(xy[ok])
        pt_colors += [color] * int(ok.sum())
        pair = ok[:-1] & ok[1:]
        tails.append(xy[:-1][pair])
        heads.append(xy[1:][pair])
        arrow_colors += [color] * int(pair.sum())
    if pt_colors:
        p = np.concatenate(pts)
        ax.scatter(p[:, 0], p[:, 1], c=pt_colors, s=18, zorder=3)
    if arrow_colors:
        a, b = np.concatenate(tails), np.concatenate(heads)
        ax.quiver(a[:, 0], a[:, 1], b[:, 0] - a[:, 0], b[:, 1] - a[:, 1], color=arrow_colors, angles="xy",
                  scale_units="xy", scale=1, units="dots", width=1.4, headwidth=4.5, headlength=6,
                  headaxislength=5.5, minlength=0, zorder=3.5)


def pareto_mask(cost: np.ndarray, quality: np.ndarray, higher_is_better: bool) -> np.ndarray:
    """Cells no other cell beats on both latency (lower) and quality (by its declared direction)."""
    q = quality if higher_is_better else -quality
    ok = np.isfinite(cost) & np.isfinite(q)
    mask = np.zeros(len(cost), dtype=bool)
    for i in np.flatnonzero(ok):
        dominated = ok & (cost <= cost[i]) & (q >= q[i]) & ((cost < cost[i]) | (q > q[i]))
        mask[i] = not dominated.any()
    return mask


def _log_axis(ax) -> None:
    from matplotlib.ticker import FuncFormatter, LogLocator, NullFormatter
    ax.set_xscale("log")
    ax.xaxis.set_major_locator(LogLocator(base=10, subs=(1.0, 2.0, 5.0)))
    ax.xaxis.set_major_formatter(FuncFormatter(lambda v, _pos: f"{v:g}"))
    ax.xaxis.set_minor_formatter(NullFormatter())


def latency(df: pd.DataFrame, dataset: str, out: Path, specs: Specs) -> Plot | str:
    """MMHM and its fidelity input (FID) against batch-1 latency, Pareto front marked."""
    runs = _runs(df)
    want = [composite.NAME, composite.COLUMNS[composite.FIDELITY]]
    ys = [m for m in want if m in runs.columns and runs[m].notna().any()]
    if "latency_s" not in runs.columns or runs["latency_s"].notna().sum() == 0 or not ys:
        return f"quality vs latency: needs latency_s and {' or '.join(want)}"
    from matplotlib.lines import Line2D
    models = sorted(runs["model"].unique())
    colors = _colors(models)
    by_model = runs.sort_values("model", kind="stable")           # drawn model after model, as one collection
    point_colors = [colors[m] for m in by_model["model"]]
    handles = [Line2D([], [], ls="none", marker="o", ms=18 ** 0.5, color=colors[m]) for m in models]
    fig = _figure(5.0 * len(ys) + 2.2, 4.2)
    axes = fig.subplots(1, len(ys), squeeze=False).ravel()
    for ax, m in zip(axes, ys):
        ax.scatter(by_model["latency_s"].astype(float), by_model[m].astype(float), s=18, c=point_colors, zorder=3)
        cost, q = runs["latency_s"].astype(float).to_numpy(), runs[m].astype(float).to_numpy()
        front = pareto_mask(cost, q, specs.higher_is_better(m))
        if front.any():
            order = np.argsort(cost[front])
            fx, fy = cost[front][order], q[front][order]
            ax.step(fx, fy, where="post", color="k", lw=1, ls="--", zorder=2, label="Pareto front")
            ax.scatter(fx, fy, s=70, facecolors="none", edgecolors="k", lw=1, zorder=4)
        _log_axis(ax)
        ax.set_xlabel(specs.label("latency_s") + ", log axis (lower is better)")
        ax.set_ylabel(tex_safe(specs.title(m)))
        ax.set_title(tex_safe(f"{specs.label(m)} against latency"), fontsize=10)
        ax.grid(alpha=0.3)
    fig.suptitle(f"{tex_safe(dataset)}: quality against latency (circled: Pareto-optimal cells)", fontsize=11)
    _legend(fig, axes, (handles, [tex_safe(m) for m in models]))
    png, svg = _save(fig, out, f"latency-{slug(dataset)}")
    return Plot("latency", dataset, "Quality against latency", png, svg,
                "Circled cells are Pareto-optimal: no other cell is both faster and better on that metric.")


def correlation(df: pd.DataFrame, dataset: str, out: Path, specs: Specs) -> Plot | str:
    """Spearman rank correlation of every ranked metric (MMHM too) over the dataset's ok cells."""
    runs = _runs(df)
    cols = [c for c in specs.ranked(runs) if runs[c].notna().sum() >= 3]
    if len(cols) < 2:
        return "correlation: needs two metrics with at least three values"
    corr = runs[cols].astype(float).corr(method="spearman", min_periods=3)
    n = len(runs[cols].dropna())
    fig = _figure(1.2 * len(cols) + 2.6, 1.05 * len(cols) + 1.4)
    ax = fig.subplots()
    im = ax.imshow(corr.to_numpy(), cmap="RdBu_r", vmin=-1, vmax=1)
    names = [tex_safe(f"{specs.label(c)} {specs.arrow(c)}") for c in cols]
    ax.set_xticks(range(len(cols)), names, rotation=30, ha="right")
    ax.set_yticks(range(len(cols)), names)
    for i in range(len(cols)):
        for j in range(len(cols)):
            v = corr.iat[i, j]
            ax.text(j, i, "–" if pd.isna(v) else f"{v:.2f}", ha="center", va="center", fontsize=9,
                    color="white" if not pd.isna(v) and abs(v) > 0.6 else "black")
    fig.colorbar(im, ax=ax, shrink=0.8, label="Spearman ρ")
    ax.set_title(f"{tex_safe(dataset)}: rank correlation over {len(runs)} cells\n({n} with all shown; ↑/↓ = better)",
                 fontsize=10)
    png, svg = _save(fig, out, f"correlation-{slug(dataset)}")
    return Plot("correlation", dataset, "Metric correlation", png, svg,
                "Spearman rank correlation across the sweep's ok cells (pairwise complete; real-vs-real excluded).")


def make_plots(df: pd.DataFrame, out: Path, specs: Specs) -> tuple[list[Plot], list[str]]:
    """All figures for one suite frame, per dataset; returns (plots, notes on plots skipped and why)."""
    plots, skipped = [], []
    for dataset, g in df.groupby("dataset", sort=True):
        for r in (against(g, dataset, "steps", out, specs), against(g, dataset, "cfg", out, specs),
                  tradeoff(g, dataset, out, specs), latency(g, dataset, out, specs),
                  correlation(g, dataset, out, specs)):
            if isinstance(r, Plot):
                plots.append(r)
            else:
                skipped.append(f"{dataset}: {r}")
    return plots, skipped
