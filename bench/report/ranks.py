"""Rank intervals and sample-size guidance in the report, from kept features (`bench.stats.ranks`,
`bench.stats.samplesize`).

`board_stats(db, sdf, specs)` gives, per leaderboard (dataset, smoke cap), the MMHM-best board's rank intervals
("rank 1-2", ties with the best marked: the paired interval of the difference contains 0) and FID / MMHM against
n for the picked cells. It looks for kept features first, by the feature store's layout
(`bench.features`, which imports no torch), and only then imports the statistics (torch, the metrics' reference
features): a store without kept features keeps the report torch-free, and its boards say that only per-sample
metrics have intervals (`NO_FEATURES`). Rendering (`markdown_section`, `html_section`, `size_plot`) reads the
frames only. Invariant: nothing here changes a value or a board's order.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from html import escape
from pathlib import Path

import pandas as pd

from bench import composite, features  # bench.features imports no torch (its writer does, lazily)
from bench.report.directions import Specs

NO_FEATURES = ("Rank intervals need kept features (keep_features: true in the suite; FID and IS are recomputed "
               "from them per resample): this store has none for these cells, so only per-sample metrics (CLIP "
               "Score, PickScore: their stored bootstrap intervals) have intervals.")
HOW = ("Rank interval: the 95% interval of each model's MMHM rank over {r} paired bootstrap resamples (seed {s}) of "
       "the sample ids, FID and IS recomputed from kept features, CLIP Score and PickScore from per-sample scores, "
       "MMHM bounds recomputed per resample; 'tie': the interval of its MMHM minus the best model's contains 0.")


@dataclass
class BoardStats:
    ranks: pd.DataFrame | None = None             # bench.stats.ranks.COLUMNS, one row per model
    sizes: pd.DataFrame | None = None             # bench.stats.samplesize.COLUMNS
    note: str = ""
    labels: dict[str, str] = field(default_factory=dict)   # key -> model name


def has_features(root: Path, keys) -> bool:
    return root.is_dir() and any(features.available(root, str(k)) for k in keys)


def board_stats(db: str | Path | None, sdf: pd.DataFrame, specs: Specs, order=None, resamples: int | None = None,
                feature_db: str | Path | None = None) -> dict[tuple, BoardStats]:
    """(dataset, cap) -> `BoardStats` for each board of a suite frame; ``feature_db``: the store path whose folder
    holds the feature store and reference cache (default ``db``; a snapshot copy lives elsewhere)."""
    from bench.report.leaderboard import boards, leaderboard
    if db is None:
        return {}
    home = Path(feature_db or db)
    root = features.root_for(home)
    out: dict[tuple, BoardStats] = {}
    todo = []
    for dataset, cap, g in boards(sdf, order):
        if not has_features(root, g["key"]):
            out[(str(dataset), cap)] = BoardStats(note=NO_FEATURES)
            continue
        todo.append((dataset, cap, g))
    if not todo:
        return out
    from bench.stats import ranks, samplesize
    from bench.stats.source import Recompute
    from bench.store import ResultStore
    rec = Recompute(home.parent / "cache")
    with ResultStore(db, read_only=True) as st:
        for dataset, cap, g in todo:
            g = g[g["status"] == "ok"]
            lb = leaderboard(g, specs)
            picks = {m: k for m, k in zip(lb["model"], lb[f"{composite.NAME}-best key"]) if isinstance(k, str)}
            cells = ranks.board_cells(st.con, home, g)
            r = ranks.rank_intervals(g, picks, cells, rec, **({"resamples": resamples} if resamples else {}))
            sizes = samplesize.sample_size(g, list(picks.values()), cells, rec)
            out[(str(dataset), cap)] = BoardStats(r, sizes, r.attrs.get("note", ""),
                                             {k: m for m, k in picks.items()})
    return out


def _md_cell(text) -> str:
    return escape(str(text)).replace("|", "\\|")


def markdown_section(bs: BoardStats | None) -> str:
    """The rank-interval table of one board (or the note why there is none)."""
    if bs is None:
        return ""
    if bs.ranks is None or bs.note:
        return f"{bs.note or NO_FEATURES}\n"
    r = bs.ranks
    lines = ["| model | MMHM | rank | tie with best |", "|---|---|---|---|"]
    for x in r.sort_values("rank", na_position="last").itertuples():
        lines.append(f"| {_md_cell(x.model)} | {x.value:.4g} | {_md_cell(x.rank_text)} | {x.tie or ''} |")
    return HOW.format(r=r.attrs.get("resamples"), s=r.attrs.get("seed")) + "\n\n" + "\n".join(lines) + "\n" + \
        size_line(bs) + "\n"


def size_line(bs: BoardStats) -> str:
    s = bs.sizes
    if s is None or s.empty:
        return ""
    top = s[s["n"] == s["n"].max()]
    spread = top["fid_spread"].max()
    return (f"\nFID's spread at n={int(top['n'].iloc[0])}: up to ±{spread:.3g} over these cells; FID differences "
            f"below that are not claims unless a paired comparison resolves them (bench compare; the sample-size plot "
            f"shows FID and MMHM against n).")


def html_section(bs: BoardStats | None) -> str:
    if bs is None:
        return ""
    if bs.ranks is None or bs.note:
        return f"<p class=note>{escape(bs.note or NO_FEATURES)}</p>"
    r = bs.ranks
    rows = "".join(f"<tr><td class=t>{escape(str(x.model))}</td><td>{x.value:.4g}</td><td>{escape(x.rank_text)}"
                   f"</td><td>{escape(x.tie or '')}</td></tr>"
                   for x in r.sort_values("rank", na_position="last").itertuples())
    how = escape(HOW.format(r=r.attrs.get("resamples"), s=r.attrs.get("seed")))
    size = escape(size_line(bs).strip())
    return (f"<h4>Rank intervals (MMHM)</h4><p class=legend>{how}</p><table class=ranks><thead><tr><th>model</th>"
            f"<th>MMHM</th><th>rank</th><th>tie with best</th></tr></thead><tbody>{rows}</tbody></table>"
            + (f"<p class=note>{size}</p>" if size else ""))


def size_plot(bs: BoardStats, dataset: str, out: Path):
    """FID (with its spread as bars) and MMHM against n for a board's picked cells: a `bench.report.plots.Plot`,
    or None without sample-size rows."""
    from bench.report import plots as P
    from bench.report import plots_style as S
    s = bs.sizes
    if s is None or s.empty:
        return None
    fig = S.figure(8.4, 3.2)
    axes = fig.subplots(1, 2)
    for i, (k, g) in enumerate(s.groupby("key", sort=False)):
        g = g.sort_values("n")
        name = S.tex_safe(bs.labels.get(k, k[:8]))
        axes[0].errorbar(g["n"], g["fid"], yerr=g["fid_spread"], color=S.color(i), marker="o", capsize=2,
                         label=name)
        axes[1].plot(g["n"], g["mmhm"], color=S.color(i), marker="o", label=name)
    for ax, t in zip(axes, ("FID ↓ (bars: ± spread)", "MMHM ↑")):
        ax.set_xscale("log", base=2)
        ns = sorted(s["n"].unique())
        ax.set_xticks(ns, [str(int(n)) for n in ns])
        ax.minorticks_off()
        ax.set_xlabel("n (nested subsets of the samples)")
        ax.set_title(t)
    axes[1].legend(fontsize="small")
    png, svg = P._save(fig, out, f"samplesize-{P.slug(dataset)}")
    return P.Plot("samplesize", dataset, "sample size", png, svg,
                  "FID and MMHM against n over nested subsets of each model's MMHM-best cell (bootstrap spread as "
                  "bars): a difference below the spread at the n you ran is not a claim.")
