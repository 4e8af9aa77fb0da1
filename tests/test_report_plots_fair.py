"""The report's plots as a person reads them: counted NFE on the x axis, small multiples past six series, one
qualitative colour per setting, CFG ticks at the swept values, the real-vs-real reference line (never a
"floor"), the correlation heatmap on better-is-higher values, bars from stored intervals, and a flagged (noisy)
latency kept off the Pareto front and off the latency axis' scale.

Every test inspects the matplotlib objects a figure is made of (saving is skipped), on hand-made frames whose
answers are known.
"""

from types import SimpleNamespace

import numpy as np
import pandas as pd
import pytest

from bench import latency_rule
from bench.outputs import Output
from bench.report import directions as D

SPECS = D.from_declared([Output("fid", False, "FID"), Output("is", True, "IS"), Output("kid", False, "KID"),
                         Output("clip_score", True, "CLIP Score"), Output("pickscore", True, "PickScore")])


@pytest.fixture
def figs(monkeypatch, tmp_path):
    """The plot functions' figures as they would be saved (saving skipped: these tests inspect artists)."""
    from bench.report import plots as P
    got = []
    monkeypatch.setattr(P, "_save", lambda fig, out, name: (got.append((name, fig)),
                                                             (out / f"{name}.png", out / f"{name}.svg"))[1])
    return SimpleNamespace(P=P, got=got, out=tmp_path, by=lambda name: dict(got)[name])


def frame(models=("one", "multi"), steps=(1, 2, 4), cfgs=(1.0, 2.0), real=True, **extra) -> pd.DataFrame:
    """One dataset's ok cells: nfe = steps, doubled when cfg > 1; metrics improve with steps (FID down, the
    others up) so that they agree; ``extra``: column -> function(row dict) added to every cell."""
    rows = []
    for mi, m in enumerate(models):
        for s in steps:
            for c in cfgs:
                q = np.log2(s) + 0.3 * c + mi
                r = {"suite": "s", "dataset": "d", "model": m, "family": "flow", "status": "ok", "steps": s,
                     "cfg": c, "solver": None, "seed": 42, "nfe": float(s * (2 if c > 1 else 1)),
                     "fid": 40.0 - 5 * q, "is": 2.0 + q, "kid": 0.5 - 0.05 * q, "clip_score": 20.0 + 2 * q,
                     "pickscore": 1.0 + 0.5 * q, "mmhm": 0.1 + 0.1 * q, "latency_s": 0.01 * s * (1 + 0.1 * mi)}
                r.update({k: f(r) for k, f in extra.items()})
                rows.append(r)
    if real:
        rows.append({"suite": "s", "dataset": "d", "model": "real-vs-real", "family": "real", "status": "ok",
                     "steps": None, "cfg": None, "nfe": 0.0, "fid": 0.5, "is": 7.0, "kid": 0.0,
                     "clip_score": 50.0, "pickscore": 12.0})
    return pd.DataFrame(rows)


def visible(fig):
    return [a for a in fig.axes if a.get_visible()]


def panel(fig, title):
    """The axes titled (or, in small multiples, y-labelled) ``title``."""
    (ax,) = [a for a in visible(fig) if title in (a.get_title(), a.get_ylabel())]
    return ax


def lines(ax):
    """The series' line collections' segments (not the interval bars)."""
    from matplotlib.collections import LineCollection
    return [seg for c in ax.collections if isinstance(c, LineCollection) and c.get_gid() is None
            for seg in c.get_segments()]


def line_colors(ax):
    from matplotlib.collections import LineCollection
    (coll,) = [c for c in ax.collections if isinstance(c, LineCollection) and c.get_gid() is None]
    return [tuple(np.round(c, 6)) for c in coll.get_colors()]


def bars(ax):
    from bench.report.plots_style import INTERVAL_GID
    return [np.asarray(s) for c in ax.collections if c.get_gid() == INTERVAL_GID for s in c.get_segments()]


def legend_texts(fig):
    (lg,) = fig.legends
    return [t.get_text() for t in lg.get_texts()]


def test_the_nfe_variant_puts_counted_nfe_on_a_log2_axis_beside_steps(figs):
    df = frame()
    plots, skipped = figs.P.make_plots(df, figs.out, SPECS)
    assert [p.kind for p in plots][:3] == ["steps", "nfe", "cfg"] and not skipped
    fig = figs.by("nfe-d")
    ax = panel(fig, "FID (lower is better)")
    got = {tuple(seg[:, 0]) for seg in lines(ax)}
    want = {tuple(g.sort_values("nfe")["nfe"]) for _k, g in df[df.family != "real"].groupby(["model", "cfg"])}
    assert got == want == {(1.0, 2.0, 4.0), (2.0, 4.0, 8.0)}         # CFG doubles the counted NFE
    assert ax.get_xscale() == "log" and ax.xaxis.get_transform().base == 2
    assert list(ax.get_xticks()) == [1.0, 2.0, 4.0, 8.0]
    steps_x = {tuple(seg[:, 0]) for seg in lines(panel(figs.by("steps-d"), "FID (lower is better)"))}
    assert steps_x == {(1.0, 2.0, 4.0)}                                # the steps plot is unchanged beside it
    figs.got.clear()
    _plots, skipped = figs.P.make_plots(df.drop(columns="nfe"), figs.out, SPECS)
    assert any("nfe" in s for s in skipped) and "nfe-d" not in dict(figs.got)


def test_more_than_six_series_become_small_multiples_one_colour_per_setting(figs):
    import matplotlib
    tab10 = [tuple(np.round(matplotlib.colormaps["tab10"](i), 6)) for i in range(10)]
    cfgs = (1.0, 1.5, 3.0, 5.0)
    df = frame(models=("a", "b", "c"), cfgs=cfgs)                      # 3 models x 4 CFG = 12 series
    figs.P.against(df, "d", "steps", figs.out, SPECS)
    (fig,) = [f for _n, f in figs.got]
    metrics = SPECS.ranked(df)
    assert len(visible(fig)) == len(metrics) * 3                       # a panel per metric and model
    for ax in visible(fig):
        segs, colors = lines(ax), line_colors(ax)
        assert len(segs) == len(cfgs) <= 6                             # one model's series only
        assert len(set(colors)) == len(cfgs)                           # distinct within the panel
        assert set(colors) <= set(tab10)                               # a qualitative palette, not shades
    assert [a.get_ylabel() for a in visible(fig) if a.get_ylabel()] == [SPECS.title(m) for m in metrics]
    assert [a.get_title() for a in visible(fig) if a.get_title()] == ["a", "b", "c"]
    first_row = [a for a in visible(fig) if a.get_title()]
    assert all(a.get_ylim() == first_row[0].get_ylim() for a in first_row)   # one y range per metric row
    assert len({a.get_xlim() for a in visible(fig)}) == 1
    assert [line_colors(a) for a in first_row] == [line_colors(first_row[0])] * 3   # same colour, same CFG
    assert legend_texts(fig)[:4] == [f"cfg {c:g}" for c in cfgs]
    small = frame(models=("a", "b"), cfgs=(1.0, 2.0, 3.0))             # 6 series: one panel per metric
    figs.got.clear()
    figs.P.against(small, "d", "steps", figs.out, SPECS)
    (fig,) = [f for _n, f in figs.got]
    assert len(visible(fig)) == len(metrics)
    colors = line_colors(panel(fig, "FID (lower is better)"))
    assert len(colors) == 6 and colors == tab10[:6]                    # six distinct hues
    assert legend_texts(fig)[:6] == [f"{m} cfg {c:g}" for m in ("a", "b") for c in (1, 2, 3)]


def test_every_legend_and_panel_label_is_at_least_9_points(figs):
    df = frame(models=("a", "b", "c"), cfgs=(1.0, 1.5, 3.0, 5.0),
               latency_flagged=lambda r: r["steps"] == 4 and r["cfg"] == 1.5)
    plots, _ = figs.P.make_plots(df, figs.out, SPECS)
    assert {p.kind for p in plots} == {"steps", "nfe", "cfg", "tradeoff", "latency", "correlation"}
    legends = [lg for _n, fig in figs.got for lg in fig.legends]
    assert len(legends) == 5                                           # all but the heatmap
    for lg in legends:
        assert lg.get_texts() and min(t.get_fontsize() for t in lg.get_texts()) >= 9
    for ax in visible(figs.by("steps-d")):                             # small multiples: the metric's label
        if ax.get_ylabel():
            assert ax.yaxis.label.get_fontsize() >= 9


def test_cfg_ticks_are_the_swept_values_and_their_labels_never_collide(figs):
    cfgs = (1.0, 1.25, 1.5, 2.0, 3.0, 4.5, 7.5)
    df = frame(models=("a",), cfgs=cfgs)
    figs.P.against(df, "d", "cfg", figs.out, SPECS)
    (fig,) = [f for _n, f in figs.got]
    fig.canvas.draw()
    from bench.report.plots_style import MIN_LABEL_GAP
    for ax in visible(fig):
        assert list(ax.get_xticks()) == list(cfgs)                     # a mark at every swept value, no others
        labels = [t.get_text() for t in ax.get_xticklabels()]
        shown = [v for v, t in zip(cfgs, labels) if t]
        assert all(t in ("", f"{v:g}") for v, t in zip(cfgs, labels)) and shown[0] == 1.0 and 7.5 in shown
        assert min(np.diff(shown)) / (cfgs[-1] - cfgs[0]) >= MIN_LABEL_GAP
        assert len(shown) < len(cfgs)                                  # 1 / 1.25 / 1.5 would collide


def test_real_vs_real_is_a_reference_line_named_so_never_a_floor(figs):
    df = frame()
    plots, _ = figs.P.make_plots(df, figs.out, SPECS)
    fig = figs.by("steps-d")
    for title, value in (("IS (higher is better)", 7.0), ("FID (lower is better)", 0.5),
                         ("CLIP Score (higher is better)", 50.0)):
        ref = [ln for ln in panel(fig, title).get_lines() if ln.get_label() == "real-vs-real"]
        assert len(ref) == 1 and list(ref[0].get_ydata()) == [value, value], title
    assert "real-vs-real" in legend_texts(fig)
    from matplotlib.text import Text
    texts = [t.get_text() for _n, f in figs.got for t in f.findobj(Text)] + [p.caption for p in plots]
    assert any("real-vs-real" in t for t in texts)
    assert not [t for t in texts if "floor" in t.lower()]
    assert all("real-vs-real" not in lines_ for lines_ in legend_texts(fig)[:4])   # never a series


def test_the_correlation_heatmap_shows_agreement_as_positive(figs):
    df = frame(models=("a", "b"), cfgs=(1.0, 2.0, 3.0), pickscore=lambda r: -r["is"])  # PickScore disagrees
    assert isinstance(figs.P.correlation(df, "d", figs.out, SPECS), figs.P.Plot)
    (fig,) = [f for _n, f in figs.got]
    ax = fig.axes[0]
    names = [t.get_text() for t in ax.get_xticklabels()]
    assert names == ["−FID ↑", "IS ↑", "−KID ↑", "CLIP Score ↑", "PickScore ↑", "MMHM ↑"]
    rho = np.asarray(ax.images[0].get_array())
    i = {n: k for k, n in enumerate(names)}
    assert rho[i["−FID ↑"], i["IS ↑"]] == pytest.approx(1.0)           # FID falls as IS rises: they agree
    assert rho[i["−KID ↑"], i["−FID ↑"]] == pytest.approx(1.0)
    assert rho[i["PickScore ↑"], i["IS ↑"]] == pytest.approx(-1.0)     # a real disagreement stays negative
    assert "FID, KID negated" in ax.get_title() and "agreement is positive" in ax.get_title()


def test_error_bars_come_from_the_stored_intervals(figs):
    df = frame(clip_score_ci_low=lambda r: r["clip_score"] - 0.5, clip_score_ci_high=lambda r: r["clip_score"] + 1.0,
               is_std=lambda r: 0.25)
    figs.P.against(df, "d", "steps", figs.out, SPECS)
    figs.P.tradeoff(df, "d", figs.out, SPECS)
    fig, trade = figs.by("steps-d"), figs.by("tradeoff-d")
    runs = df[df.family != "real"]
    got = sorted(tuple(b.ravel()) for b in bars(panel(fig, "CLIP Score (higher is better)")))
    want = sorted((s, c - 0.5, s, c + 1.0) for s, c in zip(runs.steps, runs.clip_score))
    np.testing.assert_allclose(got, want)                              # the stored CI, at each point
    got = sorted(tuple(b.ravel()) for b in bars(panel(fig, "IS (higher is better)")))
    np.testing.assert_allclose(got, sorted((s, v - 0.25, s, v + 0.25) for s, v in zip(runs.steps, runs["is"])))
    assert bars(panel(fig, "FID (lower is better)")) == []             # nothing stored: no bar
    assert "stored interval" in legend_texts(fig)
    h = sorted(tuple(b.ravel()) for ax in visible(trade) for b in bars(ax))
    np.testing.assert_allclose(h, sorted((c - 0.5, f, c + 1.0, f) for c, f in zip(runs.clip_score, runs.fid)))
    figs.got.clear()
    figs.P.against(frame(), "d", "steps", figs.out, SPECS)             # no companion columns: no bars at all
    (plain,) = [f for _n, f in figs.got]
    assert all(bars(ax) == [] for ax in visible(plain)) and "stored interval" not in legend_texts(plain)


def noisy_timing_frame() -> pd.DataFrame:
    """The issue's outlier: mini-meanflow-like 4 steps cfg 1.5 at 1.03 s with IQR 0.29 against ~0.07 s (IQR
    0.002) for its neighbours; it is also the best cell, so unflagged it would be on the front."""
    df = frame(models=("mf", "sit"), cfgs=(1.0, 1.5), real=False, latency_s=lambda r: 0.06 + 0.005 * r["steps"],
               latency_iqr_s=lambda r: 0.002)
    out = (df.model == "mf") & (df.steps == 4) & (df.cfg == 1.5)
    df.loc[out, ["latency_s", "latency_iqr_s", "mmhm", "fid"]] = [1.03, 0.29, 0.99, 1.0]
    df["latency_flagged"] = [latency_rule.flagged(m, q) for m, q in zip(df.latency_s, df.latency_iqr_s)]
    assert df["latency_flagged"].tolist() == out.tolist()              # the rule flags exactly the outlier
    return df


def _front_x(ax):
    (front,) = [ln for ln in ax.get_lines() if ln.get_label() == "Pareto front"]
    return list(front.get_xdata())


def test_an_injected_noisy_timing_never_reaches_the_pareto_front(figs):
    from bench.report import plots_latency as L
    df = noisy_timing_frame()
    good = df[~df.latency_flagged]
    mask = figs.P.pareto_mask(L.candidates(df), df["mmhm"].to_numpy(float), True)
    assert not mask[df.latency_flagged.to_numpy()].any() and mask.any()
    assert isinstance(figs.P.latency(df, "d", figs.out, SPECS), figs.P.Plot)
    (fig,) = [f for _n, f in figs.got]
    axes = visible(fig)
    assert len(axes) == 2                                              # MMHM and FID
    for ax in axes:
        assert 1.03 not in _front_x(ax)
        lo, hi = ax.get_xlim()                                         # scaled to the unflagged cells only
        assert hi == pytest.approx(good.latency_s.max() * L.MARGIN)
        assert lo == pytest.approx(good.latency_s.min() / L.MARGIN)
        hollow = [c for c in ax.collections if len(c.get_offsets()) and len(c.get_facecolors()) == 0]
        edge = [c for c in hollow if c.get_label() == L.FLAGGED]
        assert len(edge) == 1 and edge[0].get_offsets()[0][0] == pytest.approx(hi)   # drawn at the edge
        assert "flagged, beyond the axis: 1.03 s" in ax.get_xlabel()
    assert L.FLAGGED in legend_texts(fig)
    figs.got.clear()                                                   # control: unflagged, it is the front
    figs.P.latency(df.drop(columns="latency_flagged"), "d", figs.out, SPECS)
    (fig,) = [f for _n, f in figs.got]
    for ax in visible(fig):
        assert 1.03 in _front_x(ax) and ax.get_xlim()[1] > 1.03


def test_a_missing_or_na_flag_counts_as_unflagged():
    from bench.report import plots_latency as L
    df = pd.DataFrame({"latency_s": [0.1, 0.2, 0.3], "latency_flagged": pd.array([True, None, False], "boolean")})
    assert L.flagged(df).tolist() == [True, False, False]
    assert np.isnan(L.candidates(df)).tolist() == [True, False, False]
    assert L.flagged(df.drop(columns="latency_flagged")).tolist() == [False] * 3
