"""``write_report``: everything for each suite in a frame, into ``<out_dir>/<suite>/``.

index.html (the page), leaderboard.md, sweep.csv, and each plot as PNG and SVG beside them. With ``db`` the
store is read (read-only) once more for what each metric is (`bench.report.directions.from_store`), each
cell's config and provenance and the kept sample PNGs. Nothing here imports a metric or torch.
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from bench.report import directions as D
from bench.report import grids as G
from bench.report import html as H
from bench.report import plots as P
from bench.report.leaderboard import markdown
from bench.report.sanitize import write_csv
from bench.report.source import read_extras

MAX_SAMPLES = 8


def write_report(df: pd.DataFrame, out_dir: str | Path, db: str | Path | None = None,
                 max_samples: int = MAX_SAMPLES, shown_db: str | None = None,
                 specs: D.Specs | None = None) -> list[Path]:
    """Write each suite's report; returns the paths written (page, Markdown, CSV, then plots).

    ``db``: the store to read metric outputs, provenance and samples from (a path safe to read: see
    ``snapshot``); ``shown_db``: the store's name as printed on the page (default ``db``); ``specs``: what each
    metric column is, when not read from ``db`` (one of the two is needed).
    """
    if specs is None:
        if db is None:
            raise ValueError("write_report needs db (to read what each metric is) or specs")
        specs = D.from_store(db)
    written: list[Path] = []
    for suite, sdf in df.groupby("suite", sort=True):
        d = Path(out_dir) / P.slug(str(suite))
        d.mkdir(parents=True, exist_ok=True)
        prov, samples = read_extras(db, list(sdf["key"]), max_samples) if db is not None else (None, None)
        md = d / "leaderboard.md"
        md.write_text(markdown(sdf, str(suite), specs), encoding="utf-8")
        csv = d / "sweep.csv"
        write_csv(sdf, csv)                      # no text cell runs as a formula in a spreadsheet
        plots, skipped = P.make_plots(_full_cells(sdf), d, specs)
        grids = G.make_grids(sdf, samples, max_samples) if samples is not None else []
        page = d / "index.html"
        page.write_text(H.page(str(suite), sdf, plots, skipped, grids, prov, d, specs, shown_db or
                               (str(db) if db is not None else None)), encoding="utf-8")
        written += [page, md, csv] + [p for pl in plots for p in (pl.png, pl.svg)]
    return written


def _full_cells(sdf: pd.DataFrame) -> pd.DataFrame:
    """The cells plots draw: the full ones where a suite has both (a smoke run's few-sample numbers beside them
    would read as measurements), else all (a smoke run alone still gets its plots)."""
    if "limit" not in sdf.columns or not sdf["limit"].notna().any() or sdf["limit"].notna().all():
        return sdf
    return sdf[sdf["limit"].isna()]

