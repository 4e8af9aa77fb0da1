"""The report's figures (matplotlib, Agg canvas, no pyplot state), each saved as PNG and SVG.

Per dataset: every ranked metric in the store against steps and against counted NFE (log2 axes, one line per
model and CFG) and against CFG (one line per model and step count); MMHM's fidelity input (FID) against its
text-alignment inputs (CLIP Score, PickScore) with arrows along increasing CFG; MMHM and FID against batch-1
latency with the Pareto front (`bench.report.plots_latency`); and the rank-correlation heatmap of every ranked
metric, oriented so that higher is better. Which metrics, their titles and directions come from a
`bench.report.directions.Specs` read from the store; the composite's inputs from `bench.composite`.

Invariants: missing values break a line, nothing is interpolated or averaged; the family "real"
(real-vs-real) is never a series: it is drawn as a dotted reference line named "real-vs-real" (a reference,
not a bound, whichever the metric's direction); a panel never holds more than MAX_SERIES series: past that the
figure becomes small multiples, one column of panels per model, colour telling the model's series apart the
same way in every panel; every metric with a stored interval (`bench.report.intervals.interval`) gets a bar
per point; a cell whose latency is flagged noisy (``latency_flagged``) is never a Pareto point. Figure plumbing
lives in `bench.report.plots_style`; matplotlib is imported inside the functions only.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from bench import composite
from bench.report import plots_style as S
from bench.report.directions import Specs
from bench.report.intervals import interval
from bench.report.plots_latency import latency, pareto_mask  # noqa: F401  (part of this module's interface)
from bench.report.sanitize import file_name

DIMS = ("steps", "cfg", "solver", "seed")
REAL = composite.REAL   # the family drawn as each metric's real-vs-real reference line, not as a series
REFERENCE = "real-vs-real"
MAX_SERIES = 6          # more series than this in one panel: small multiples, one column per model
LOG2 = ("steps", "nfe")  # x axes drawn on a log2 scale
INTERVALS = "bars: the stored interval (bootstrap CI where stored, else ± one std)"
tex_safe = S.tex_safe


@dataclass
class Plot:
    kind: str
    dataset: str
    title: str
    png: Path
    svg: Path
    caption: str


@dataclass
class _Series:
    model: str
    key: tuple          # the values of the dims telling the model's lines apart
    text: str           # those dims as text, e.g. "cfg 1.5" ("" when the model has one line)
    sub: pd.DataFrame   # its cells, sorted by the x axis

    @property
    def label(self) -> str:
        return f"{tex_safe(self.model)} {self.text}".strip()


def slug(name: str) -> str:
    """A name (suite, dataset id) as a file or folder name: `bench.report.sanitize.file_name`."""
    return file_name(name)


def _save(fig, out: Path, name: str) -> tuple[Path, Path]:
    import matplotlib
    out.mkdir(parents=True, exist_ok=True)
    png, svg = out / f"{name}.png", out / f"{name}.svg"
    with matplotlib.rc_context({"svg.hashsalt": "stepbench", "svg.fonttype": "none"}):
        fig.savefig(png, dpi=100, metadata={"Software": None})
        fig.set_layout_engine("none")       # keep the layout just computed: the SVG is the same figure
        fig.savefig(svg, metadata={"Creator": None, "Date": None})
    return png, svg


def _runs(df: pd.DataFrame) -> pd.DataFrame:
    """Ok cells that are plotted as model series (not the real-vs-real reference)."""
    ok = df[df["status"] == "ok"]
    return ok[ok["family"] != REAL] if "family" in ok.columns else ok


def _reals(df: pd.DataFrame) -> pd.DataFrame:
    ok = df[df["status"] == "ok"]
    return ok[ok["family"] == REAL] if "family" in ok.columns else ok.iloc[0:0]


def _metrics(df: pd.DataFrame, specs: Specs) -> list[str]:
    """The ranked metrics with at least one value in ``df``, in display order (MMHM last)."""
    return [m for m in specs.ranked(df) if df[m].notna().any()]


def _lo(m: str) -> str:
    return f"\x00lo {m}"


def _hi(m: str) -> str:
    return f"\x00hi {m}"


def _with_intervals(runs: pd.DataFrame, metrics: list[str]) -> tuple[pd.DataFrame, bool]:
    """``runs`` with each metric's interval bounds as two hidden columns (NaN where none is stored), and
    whether any metric has one."""
    runs, any_iv = runs.copy(), False
    for m in metrics:
        iv = interval(runs, m)
        lo, hi = (np.nan, np.nan) if iv is None else (iv[0].to_numpy(float), iv[1].to_numpy(float))
        runs[_lo(m)], runs[_hi(m)] = lo, hi
        any_iv = any_iv or (iv is not None and bool(np.isfinite(lo).any()))
    return runs, any_iv


def _varying(g: pd.DataFrame, x: str) -> list[str]:
    """The config columns that tell a model's lines apart: the other sweep axis always (CFG for steps and NFE,
    steps for CFG), solver and seed if varied."""
    along = {"steps", "nfe"} if x in LOG2 else {x}
    other = "steps" if x == "cfg" else "cfg"
    return [d for d in DIMS if d not in along and d in g.columns and (d == other or g[d].nunique(dropna=False) > 1)]


def _text(key: tuple, dims: list[str]) -> str:
    return " ".join(f"{d} {v:g}" if isinstance(v, float) else f"{d} {tex_safe(v)}" for d, v in zip(dims, key))


def _series(runs: pd.DataFrame, x: str) -> list[_Series]:
    """One series per model and value of its varying dims (`_varying`), models sorted, cells sorted by ``x``."""
    out = []
    for model, g in runs[runs[x].notna()].groupby("model", sort=True):
        dims = _varying(g, x)
        groups = list(g.groupby(dims, dropna=False, sort=True)) if dims else [((), g)]
        for key, sub in groups:
            key = key if isinstance(key, tuple) else (key,)
            out.append(_Series(str(model), key, _text(key, dims), sub.sort_values(x)))
    return out


def _order(v) -> tuple:
    try:
        return (0, float(v), "")
    except (TypeError, ValueError):
        return (1, 0.0, str(v))


def _paint(series: list[_Series], facet: bool) -> list[tuple]:
    """(colour, line style) per series: each its own palette entry in one panel, or (``facet``) one entry per
    dims text, the same in every model's panel."""
    if not facet:
        return [(S.color(i), S.style(i)) for i in range(len(series))]
    texts = sorted({s.text: s.key for s in series}.items(), key=lambda kv: tuple(map(_order, kv[1])))
    index = {t: i for i, (t, _k) in enumerate(texts)}
    return [(S.color(index[s.text]), S.style(index[s.text])) for s in series]


def _entries(series: list[_Series], paint: list[tuple], facet: bool, marker_only: bool = False):
    """Legend handles and labels: one per series, or (``facet``) one per dims text."""
    seen: dict[str, tuple] = {}
    for s, (c, ls) in zip(series, paint):
        seen.setdefault(s.text if facet else s.label, (c, ls))
    names = list(seen)
    if facet:
        names.sort(key=lambda t: next(tuple(map(_order, s.key)) for s in series if s.text == t))
    handles = [S.line_handle(seen[n][0], seen[n][1], marker_only) for n in names]
    return handles, [n.replace("steps ", "steps=") if marker_only else n for n in names]


def _reference(ax, reals: pd.DataFrame, metric: str) -> None:
    """Each real-vs-real value of ``metric`` as a dotted line, labelled once."""
    vals = reals[metric].dropna().astype(float) if metric in reals.columns else []
    for j, v in enumerate(vals):
        ax.axhline(v, color="0.4", ls=":", lw=1.3, zorder=1.5, label=REFERENCE if j == 0 else None)


def _panels(rows: list[str], series: list[_Series], facet: bool, share_x: str = "all", **kw):
    """(fig, {(row, model or None): axes}, top, left): a grid of ``rows`` (every series in each), or small
    multiples of rows x models."""
    if facet:
        models = list(dict.fromkeys(s.model for s in series))
        return S.facets(rows, models, share_x=share_x, **kw)
    fig, axes = S.grid(len(rows), **({} if share_x == "all" else dict(w=5.0, h=4.2, ncols=len(rows))))
    panels = {(r, None): ax for r, ax in zip(rows, axes)}
    return fig, panels, set(panels), set(panels)


def against(df: pd.DataFrame, dataset: str, x: str, out: Path, specs: Specs) -> Plot | str:
    """Each metric against ``x`` ("steps" or "nfe" on a log2 axis, or "cfg"), one line per model and other
    config; small multiples per model past MAX_SERIES lines."""
    runs, reals, metrics = _runs(df), _reals(df), _metrics(df, specs)
    if runs.empty or not metrics or x not in runs.columns or runs[x].notna().sum() == 0:
        return f"{x}: no ok cells with {x} and a metric"
    runs, any_iv = _with_intervals(runs, metrics)
    series = _series(runs, x)
    facet = len(series) > MAX_SERIES
    paint = _paint(series, facet)
    fig, panels, top, left = _panels(metrics, series, facet)
    ticks = runs[x].dropna().astype(float).unique()
    for (m, model), ax in panels.items():
        mine = [(s, p) for s, p in zip(series, paint) if model is None or s.model == model]
        S.draw_lines(ax, [(c, ls, s.sub[[x, m]].to_numpy(float)) for s, (c, ls) in mine])
        S.draw_bars(ax, [(c, s.sub[x].to_numpy(float), s.sub[_lo(m)].to_numpy(float),
                          s.sub[_hi(m)].to_numpy(float)) for s, (c, _ls) in mine])
        _reference(ax, reals, m)
        if model is None:
            ax.set_title(tex_safe(specs.title(m)), fontsize=10)
        else:
            if (m, model) in top:
                ax.set_title(tex_safe(model), fontsize=11, fontweight="bold")
            if (m, model) in left:
                ax.set_ylabel(tex_safe(specs.title(m)), fontsize=S.LEGEND_PT)
        ax.set_xlabel(specs.label(x) if model is None or m == metrics[-1] else "")
        S.value_ticks(ax, ticks, log=x in LOG2)
        ax.grid(alpha=0.3)
    if facet:
        S.same_limits(panels)
    other = "CFG" if x in LOG2 else "step count"
    layout = f"one panel per model and metric, one line per {other}" if facet else f"one line per model and {other}"
    S.suptitle(fig, f"{tex_safe(dataset)}: metrics against {specs.label(x)}; {layout}")
    handles, labels = _entries(series, paint, facet)
    if any_iv:
        handles, labels = [*handles, S.interval_handle()], [*labels, "stored interval"]
    S.legend(fig, panels.values(), (handles, labels))
    png, svg = _save(fig, out, f"{x}-{slug(dataset)}")
    axis = {"steps": " (log2 axis)", "nfe": " (log2 axis; counted, so a guided step that runs the network twice "
            "counts twice)", "cfg": ""}.get(x, "")
    return Plot(x, dataset, f"Metrics against {specs.label(x)}", png, svg,
                f"Each metric against {specs.label(x)}{axis}, {layout}; dotted: {REFERENCE} (real images scored "
                f"against the reference: a reference value, not a bound)"
                f"{'; ' + INTERVALS if any_iv else ''}; gaps are missing values.")


def tradeoff(df: pd.DataFrame, dataset: str, out: Path, specs: Specs) -> Plot | str:
    """MMHM's fidelity input (FID) against each of its alignment inputs (CLIP Score, PickScore); points by
    model and step count, arrows along increasing CFG; small multiples per model past MAX_SERIES series."""
    runs, reals = _runs(df), _reals(df)
    y, align = composite.COLUMNS[composite.FIDELITY], [composite.COLUMNS[a] for a in composite.ALIGNMENT]
    xs = [c for c in align if c in df.columns and df[c].notna().any()]
    if y not in df.columns or not xs or runs.empty:
        return f"trade-off: needs {y} and {' or '.join(align)}"
    runs, any_iv = _with_intervals(runs, [y, *xs])
    series = _series(runs, "cfg")
    facet = len(series) > MAX_SERIES
    paint = _paint(series, facet)
    fig, panels, top, left = _panels(xs, series, facet, share_x="row", **(dict(w=3.6, h=3.0) if facet else {}))
    for (xc, model), ax in panels.items():
        mine = [(s, p) for s, p in zip(series, paint) if model is None or s.model == model]
        S.draw_arrows(ax, [(c, s.sub[[xc, y]].to_numpy(float)) for s, (c, _ls) in mine])
        for col, vertical in ((y, True), (xc, False)):
            S.draw_bars(ax, [(c, s.sub[xc if vertical else y].to_numpy(float), s.sub[_lo(col)].to_numpy(float),
                              s.sub[_hi(col)].to_numpy(float)) for s, (c, _ls) in mine], vertical=vertical)
        if not reals.empty and xc in reals.columns:
            f = reals[[xc, y]].astype(float).dropna()
            ax.scatter(f[xc], f[y], marker="*", s=90, color="0.35", zorder=4, label=REFERENCE)
        ax.set_xlabel(tex_safe(specs.title(xc)), fontsize=S.LEGEND_PT if facet else None)
        if model is None:
            ax.set_ylabel(tex_safe(specs.title(y)))
            ax.set_title(tex_safe(f"{specs.label(y)} against {specs.label(xc)}"), fontsize=10)
        else:
            if (xc, model) in top:
                ax.set_title(tex_safe(model), fontsize=11, fontweight="bold")
            if (xc, model) in left:
                ax.set_ylabel(tex_safe(specs.title(y)), fontsize=S.LEGEND_PT)
        ax.grid(alpha=0.3)
    if facet:
        S.same_limits(panels, share_x="row")
    layout = "one panel per model, one colour per step count" if facet else "one series per model and step count"
    S.suptitle(fig, f"{tex_safe(dataset)}: the guidance trade-off (arrows follow increasing CFG; {layout})")
    handles, labels = _entries(series, paint, facet, marker_only=True)
    if any_iv:
        handles, labels = [*handles, S.interval_handle()], [*labels, "stored interval"]
    S.legend(fig, panels.values(), (handles, labels))
    png, svg = _save(fig, out, f"tradeoff-{slug(dataset)}")
    return Plot("tradeoff", dataset, f"{specs.label(y)} against {' and '.join(specs.label(c) for c in xs)}", png, svg,
                f"Each point a cell ({layout}); arrows run along increasing CFG; star: {REFERENCE}"
                f"{'; ' + INTERVALS if any_iv else ''}.")


def correlation(df: pd.DataFrame, dataset: str, out: Path, specs: Specs) -> Plot | str:
    """Spearman rank correlation of every ranked metric (MMHM too) over the dataset's ok cells, each metric
    oriented so that higher is better (lower-is-better ones negated): two metrics that agree on which cells are
    better correlate positively, whatever their directions."""
    runs = _runs(df)
    cols = [c for c in specs.ranked(runs) if runs[c].notna().sum() >= 3]
    if len(cols) < 2:
        return "correlation: needs two metrics with at least three values"
    better = runs[cols].astype(float)
    flipped = [c for c in cols if not specs.higher_is_better(c)]
    better[flipped] = -better[flipped]
    corr = better.corr(method="spearman", min_periods=3)
    n = len(better.dropna())
    fig = S.figure(1.2 * len(cols) + 2.6, 1.05 * len(cols) + 1.6)
    ax = fig.subplots()
    im = ax.imshow(corr.to_numpy(), cmap="RdBu_r", vmin=-1, vmax=1)
    names = [tex_safe(f"{'−' if c in flipped else ''}{specs.label(c)} ↑") for c in cols]
    ax.set_xticks(range(len(cols)), names, rotation=30, ha="right")
    ax.set_yticks(range(len(cols)), names)
    for i in range(len(cols)):
        for j in range(len(cols)):
            v = corr.iat[i, j]
            ax.text(j, i, "–" if pd.isna(v) else f"{v:.2f}", ha="center", va="center", fontsize=9,
                    color="white" if not pd.isna(v) and abs(v) > 0.6 else "black")
    fig.colorbar(im, ax=ax, shrink=0.8, label="Spearman ρ (positive = agree on which cells are better)")
    neg = ", ".join(specs.label(c) for c in flipped)
    oriented = f"{neg} negated, so " if flipped else ""
    ax.set_title(tex_safe(f"{dataset}: rank correlation over {len(runs)} cells ({n} with all shown)\n"
                          f"on better-is-higher values ({oriented}agreement is positive; ↑ = better)"), fontsize=10)
    png, svg = _save(fig, out, f"correlation-{slug(dataset)}")
    return Plot("correlation", dataset, "Metric correlation", png, svg,
                "Spearman rank correlation across the sweep's ok cells (pairwise complete; real-vs-real excluded), "
                f"each metric oriented so that higher is better{' (' + neg + ' negated)' if flipped else ''}: "
                "a positive value means two metrics agree on which cells are better.")


def make_plots(df: pd.DataFrame, out: Path, specs: Specs) -> tuple[list[Plot], list[str]]:
    """All figures for one suite frame, per dataset; returns (plots, notes on plots skipped and why)."""
    plots, skipped = [], []
    for dataset, g in df.groupby("dataset", sort=True):
        for r in (against(g, dataset, "steps", out, specs), against(g, dataset, "nfe", out, specs),
                  against(g, dataset, "cfg", out, specs), tradeoff(g, dataset, out, specs),
                  latency(g, dataset, out, specs), correlation(g, dataset, out, specs)):
            if isinstance(r, Plot):
                plots.append(r)
            else:
                skipped.append(f"{dataset}: {r}")
    return plots, skipped

