"""Figure plumbing shared by the report's plots (`bench.report.plots`): canvas, palette, panel grids, ticks,
legends, and the few collections every axes is drawn with.

Invariants: no pyplot state (an Agg canvas per figure); matplotlib is imported inside the functions only; every
legend is at least LEGEND_PT points; colours come from one qualitative palette (distinct hues, never shades of
a few), a series past the palette's length gets the next line style; tick marks on a value axis sit at the
values actually swept and are labelled with those values (thinned only where labels would collide); each axes
draws its lines, markers and interval bars as a few collections, so cost stays linear in the cells.
"""

from __future__ import annotations

import numpy as np

LEGEND_PT = 9               # legend and panel-label size, points
PALETTE = "tab10"           # qualitative: ten distinct hues
STYLES = ("-", "--", ":", "-.")
MIN_LABEL_GAP = 0.085       # the least distance between two labelled ticks, as a fraction of the axis
INTERVAL_GID = "interval"   # the gid of every collection of interval bars (tests and SVG readers find them by it)


def tex_safe(text) -> str:
    """Text for matplotlib: a '$' in a stored name must not switch on mathtext."""
    return str(text).replace("$", r"\$")


def figure(w: float, h: float, layout: str | None = "constrained"):
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure
    fig = Figure(figsize=(w, h), dpi=100, layout=layout)
    FigureCanvasAgg(fig)
    return fig


def color(i: int) -> tuple:
    """The i-th colour of the qualitative palette (it repeats after ten; `style` then changes the line)."""
    import matplotlib
    return matplotlib.colormaps[PALETTE](i % 10)


def style(i: int) -> str:
    return STYLES[(i // 10) % len(STYLES)]


def grid(n: int, w: float = 4.2, h: float = 3.1, ncols: int = 3, legend_w: float = 2.2):
    """A figure of ``n`` panels, ``ncols`` to a row (the unused ones hidden); returns (fig, axes)."""
    ncols = min(ncols, n)
    nrows = -(-n // ncols)
    fig = figure(w * ncols + legend_w, h * nrows)
    axes = fig.subplots(nrows, ncols, squeeze=False).ravel()
    for ax in axes[n:]:
        ax.set_visible(False)
    return fig, list(axes[:n])


def facets(rows: list[str], cols: list[str], w: float = 3.3, h: float = 2.1, max_cols: int = 4,
           share_x: str = "all", legend_w: float = 2.0):
    """Small multiples: one panel per (row, col), cols wrapped into blocks of ``max_cols`` (each block repeats
    the rows). Panels of a row are to share their y range, and the x range is to be shared by all
    (``share_x="all"``) or by the panels of a row (``"row"``): `same_limits` sets them once everything is drawn
    (matplotlib's own axis sharing costs time quadratic in the panels). Returns (fig, {(row, col): axes},
    first-row set, first-column set).

    The layout is fixed in inches (margins for the labels, the legend's column at the right), not solved by a
    layout engine: a solver's cost grows with the panels, and these grids have many."""
    ncols = min(max_cols, len(cols))
    blocks = -(-len(cols) // ncols)
    nrows = blocks * len(rows)
    inner = share_x == "all"                       # x tick labels only under a block's last row
    gap_w, gap_h = 0.12, (0.32 if inner else 0.62)  # inches between panels (and under a block, for its labels)
    left, right, top, bottom = 0.85, legend_w, 0.8, 0.55
    W, H = left + w * ncols + gap_w * (ncols - 1) + right, top + h * nrows + gap_h * (nrows - 1) + bottom
    fig = figure(W, H, layout=None)
    fig.subplots_adjust(left=left / W, right=1 - right / W, top=1 - top / H, bottom=bottom / H,
                        wspace=gap_w / w, hspace=gap_h / h)
    grid_axes = fig.subplots(nrows, ncols, squeeze=False)
    panels, top, left = {}, set(), set()
    for j, c in enumerate(cols):
        b, k = divmod(j, ncols)
        for i, r in enumerate(rows):
            ax = grid_axes[b * len(rows) + i, k]
            panels[(r, c)] = ax
            if i == 0:
                top.add((r, c))
            if k == 0:
                left.add((r, c))
            else:
                ax.tick_params(labelleft=False)
            if share_x == "all" and i < len(rows) - 1:
                ax.tick_params(labelbottom=False)
    used = {id(a) for a in panels.values()}
    for ax in grid_axes.ravel():
        if id(ax) not in used:
            ax.set_visible(False)
    return fig, panels, top, left


def same_limits(panels: dict, share_x: str = "all") -> None:
    """Give the panels of each row (the first element of a `facets` key) one y range, the union of their
    autoscaled ranges, and one x range: over all panels (``share_x="all"``) or per row (``"row"``)."""
    rows: dict = {}
    for (r, _c), ax in panels.items():
        ax.autoscale_view()
        rows.setdefault(r, []).append(ax)

    def union(axes, get, set_):
        lims = np.array([get(ax) for ax in axes], dtype=float)
        for ax in axes:
            set_(ax, (lims[:, 0].min(), lims[:, 1].max()))
    for axes in rows.values():
        union(axes, lambda a: a.get_ylim(), lambda a, lim: a.set_ylim(*lim))
    for axes in (rows.values() if share_x == "row" else [list(panels.values())]):
        union(axes, lambda a: a.get_xlim(), lambda a, lim: a.set_xlim(*lim))


def suptitle(fig, text: str) -> None:
    """The figure's title, 0.15 in below its top edge under a fixed layout (a layout engine places it itself)."""
    kw = {} if fig.get_layout_engine() is not None else dict(y=1 - 0.15 / fig.get_figheight(), va="top")
    fig.suptitle(text, fontsize=11, **kw)


def _fmt(v: float) -> str:
    return f"{v:g}"


def value_ticks(ax, values, log: bool = False, labels: bool = True) -> None:
    """Major ticks at exactly ``values`` (the settings swept), labelled ``{v:g}``; where two labels would sit
    closer than MIN_LABEL_GAP of the axis, the later keeps its tick mark but loses its label. ``log``: a base-2
    log axis (steps, NFE)."""
    from matplotlib.ticker import FixedFormatter, FixedLocator, NullLocator
    v = np.unique(np.asarray([float(t) for t in values if t is not None and np.isfinite(float(t))]))
    if log:
        ax.set_xscale("log", base=2)
        v = v[v > 0]
    if not len(v):
        return
    pos = np.log2(v) if log else v
    span = float(pos[-1] - pos[0]) or 1.0
    text, last = [], None
    for p, t in zip(pos, v):
        keep = last is None or (p - last) / span >= MIN_LABEL_GAP
        text.append(_fmt(t) if keep and labels else "")
        last = p if keep else last
    ax.xaxis.set_major_locator(FixedLocator(list(v)))
    ax.xaxis.set_major_formatter(FixedFormatter(text))
    ax.xaxis.set_minor_locator(NullLocator())


def log_axis(ax) -> None:
    """A log10 x axis with ticks at 1, 2, 5 per decade, labelled as plain numbers."""
    from matplotlib.ticker import FuncFormatter, LogLocator, NullFormatter
    ax.set_xscale("log")
    ax.xaxis.set_major_locator(LogLocator(base=10, subs=(1.0, 2.0, 5.0)))
    ax.xaxis.set_major_formatter(FuncFormatter(lambda v, _pos: f"{v:g}"))
    ax.xaxis.set_minor_formatter(NullFormatter())


def legend(fig, axes, first: tuple[list, list[str]] = ((), ()), title: str | None = None) -> None:
    """One legend beside the axes: ``first`` (the series' entries), then each labelled artist once."""
    handles, labels = dict(zip(first[1], first[0])), list(first[1])
    for ax in axes:
        for h, lab in zip(*ax.get_legend_handles_labels()):
            if lab not in handles:
                handles[lab] = h
                labels.append(lab)
    if not labels:
        return
    where = dict(loc="outside right upper")
    if fig.get_layout_engine() is None:            # a fixed layout (`facets`): just right of the panels
        boxes = [ax.get_position() for ax in axes]
        where = dict(loc="upper left", bbox_to_anchor=(max(b.x1 for b in boxes) + 0.01, max(b.y1 for b in boxes)))
    fig.legend([handles[k] for k in labels], labels, fontsize=LEGEND_PT, title=title, title_fontsize=LEGEND_PT,
               frameon=False, **where)


def line_handle(c, ls: str = "-", marker_only: bool = False):
    from matplotlib.lines import Line2D
    if marker_only:
        return Line2D([], [], color=c, ls="none", marker="o", ms=18 ** 0.5)
    return Line2D([], [], color=c, ls=ls, marker="o", ms=3.5, lw=1.4)


def interval_handle():
    from matplotlib.lines import Line2D
    return Line2D([], [], color="0.35", ls="none", marker="|", ms=11, mew=1.2)


def draw_lines(ax, items: list[tuple]) -> None:
    """(colour, line style, N x 2 array) per series: one line collection, broken at missing values, and one
    marker collection."""
    from matplotlib.collections import LineCollection
    segs, seg_colors, seg_styles, pts, pt_colors = [], [], [], [], []
    for c, ls, xy in items:
        ok = np.isfinite(xy).all(axis=1)
        if not ok.any():
            continue
        pts.append(xy[ok])
        pt_colors += [c] * int(ok.sum())
        edges = np.flatnonzero(np.diff(np.r_[0, ok.astype(np.int8), 0]))        # starts and ends of finite runs
        for a, b in zip(edges[::2], edges[1::2]):
            if b - a > 1:
                segs.append(xy[a:b])
                seg_colors.append(c)
                seg_styles.append(ls)
    if segs:
        ax.add_collection(LineCollection(segs, colors=seg_colors, linestyles=seg_styles, linewidths=1.4,
                                         zorder=2), autolim=True)
    if pts:
        p = np.concatenate(pts)
        ax.scatter(p[:, 0], p[:, 1], s=3.5 ** 2, c=pt_colors, linewidths=1.0, edgecolors="face", zorder=2.01)


def draw_bars(ax, items: list[tuple], vertical: bool = True) -> int:
    """Interval bars, one collection (gid INTERVAL_GID): (colour, at, lo, hi) per series, arrays of one length;
    a bar from (at, lo) to (at, hi) (``vertical``) or from (lo, at) to (hi, at). Rows with a missing bound
    get none. Returns the number of bars drawn."""
    from matplotlib.collections import LineCollection
    segs, colors = [], []
    for c, at, lo, hi in items:
        ok = np.isfinite(at) & np.isfinite(lo) & np.isfinite(hi)
        for a, lo_, hi_ in zip(at[ok], lo[ok], hi[ok]):
            segs.append([(a, lo_), (a, hi_)] if vertical else [(lo_, a), (hi_, a)])
            colors.append(c)
    if segs:
        ax.add_collection(LineCollection(segs, colors=colors, linewidths=1.1, alpha=0.65, zorder=1.9,
                                         gid=INTERVAL_GID), autolim=True)
    return len(segs)


def draw_arrows(ax, items: list[tuple]) -> None:
    """(colour, N x 2 array in CFG order) per series: the finite points as one marker collection and, along
    increasing CFG, one arrow per consecutive pair of finite points, all of the axes' arrows a single quiver."""
    pts, pt_colors, tails, heads, arrow_colors = [], [], [], [], []
    for c, xy in items:
        ok = np.isfinite(xy).all(axis=1)
        pts.append(xy[ok])
        pt_colors += [c] * int(ok.sum())
        pair = ok[:-1] & ok[1:]
        tails.append(xy[:-1][pair])
        heads.append(xy[1:][pair])
        arrow_colors += [c] * int(pair.sum())
    if pt_colors:
        p = np.concatenate(pts)
        ax.scatter(p[:, 0], p[:, 1], c=pt_colors, s=18, zorder=3)
    if arrow_colors:
        a, b = np.concatenate(tails), np.concatenate(heads)
        ax.quiver(a[:, 0], a[:, 1], b[:, 0] - a[:, 0], b[:, 1] - a[:, 1], color=arrow_colors, angles="xy",
                  scale_units="xy", scale=1, units="dots", width=1.4, headwidth=4.5, headlength=6,
                  headaxislength=5.5, minlength=0, zorder=3.5)
