"""``write_report``: everything for each suite in a frame, into ``<out_dir>/<suite>/``.

index.html (the page), leaderboard.md, sweep.csv, and each plot as PNG and SVG beside them. With ``db`` the
store is read (read-only) once more for each cell's config and provenance and for the kept sample PNGs.
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from bench.report import grids as G
from bench.report import html as H
from bench.report import plots as P
from bench.report.leaderboard import markdown
from bench.report.source import read_extras

MAX_SAMPLES = 8


def write_report(df: pd.DataFrame, out_dir: str | Path, db: str | Path | None = None,
                 max_samples: int = MAX_SAMPLES, shown_db: str | None = None) -> list[Path]:
    """Write each suite's report; returns the paths written (page, Markdown, CSV, then plots).

    ``db``: the store to read provenance and samples from (a path safe to read: see ``snapshot``);
    ``shown_db``: the store's name as printed on the page (default ``db``).
    """
    written: list[Path] = []
    for suite, sdf in df.groupby("suite", sort=True):
        d = Path(out_dir) / P.slug(str(suite))
        d.mkdir(parents=True, exist_ok=True)
        prov, samples = read_extras(db, list(sdf["key"]), max_samples) if db is not None else (None, None)
        md = d / "leaderboard.md"
        md.write_text(markdown(sdf, str(suite)), encoding="utf-8")
        csv = d / "sweep.csv"
        sdf.to_csv(csv, index=False)
        plots, skipped = P.make_plots(sdf, d)
        grids = G.make_grids(sdf, samples, max_samples) if samples is not None else []
        page = d / "index.html"
        page.write_text(H.page(str(suite), sdf, plots, skipped, grids, prov, d, shown_db or
                               (str(db) if db is not None else None)), encoding="utf-8")
        written += [page, md, csv] + [p for pl in plots for p in (pl.png, pl.svg)]
    return written
