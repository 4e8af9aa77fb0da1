"""``write_report``: everything for each suite in a frame, into ``<out_dir>/<suite>/``.

index.html (the page: the whole report in one file, figures and sample tiles embedded), leaderboard.md,
sweep.csv, and each plot as PNG and SVG beside them for reuse. With ``db`` the store is read (read-only) once
more for what each metric is (`bench.report.directions.from_store`), each cell's config and provenance, the
kept sample PNGs and the suite file a run recorded (for the dataset order and natural CFG scales,
`bench.report.context`). A large suite's figures are drawn in a second process meanwhile
(`bench.report.background`). Nothing here imports a metric or torch, except the rank intervals of a store with kept
features (`bench.report.ranks`: FID and IS recomputed from them).
"""

from __future__ import annotations

from pathlib import Path
from typing import Mapping

import pandas as pd

from bench import composite
from bench.report import background
from bench.report import directions as D
from bench.report import grids as G
from bench.report import html as H
from bench.report import plots as P
from bench.report import ranks as R
from bench.report.classnames import class_names, kept_prompts
from bench.report.context import ReportContext, context_for
from bench.report.leaderboard import markdown
from bench.report.sanitize import write_csv
from bench.report.source import read_extras
from bench.store import ResultStore

MAX_SAMPLES = 8
# a suite of this many cells or more gets its figures drawn in a second process (`bench.report.background`): a
# few-cell report draws in well under the ~1.5 s a process takes to start
BACKGROUND_CELLS = 40


def recorded_suite_path(db: str | Path | None, suite: str) -> str | None:
    """The suite file the newest run of ``suite`` recorded (it may not exist on this machine), or None."""
    if db is None:
        return None
    with ResultStore(db, read_only=True) as st:
        row = st.con.execute("SELECT suite_path FROM runs WHERE suite = ? AND suite_path IS NOT NULL "
                             "ORDER BY started DESC NULLS LAST LIMIT 1", [suite]).fetchone()
    return row[0] if row else None


def write_report(df: pd.DataFrame, out_dir: str | Path, db: str | Path | None = None,
                 max_samples: int = MAX_SAMPLES, shown_db: str | None = None,
                 specs: D.Specs | None = None, context: ReportContext | None = None,
                 mmhm_bounds: Mapping | str | Path | None = None, mmhm_source: str | None = None) -> list[Path]:
    """Write each suite's report; returns the paths written (page, Markdown, CSV, then plots).

    ``db``: the store to read metric outputs, provenance and samples from (a path safe to read: see
    ``snapshot``); ``shown_db``: the store's name as printed on the page (default ``db``); ``specs``: what each
    metric column is, when not read from ``db`` (one of the two is needed). ``context``: the dataset and model
    order and natural CFG scales (default per suite: `context_for` the suite file its newest run recorded, which
    falls back to the frame's order). ``mmhm_bounds``: the saved bounds ``df``'s MMHM was computed with (a
    mapping ``{dataset or "*": bounds}`` or a bounds file), shown beside each MMHM table with ``mmhm_source``
    (default: the file's path); without them the page shows the bounds recomputed from the cells.
    """
    if specs is None:
        if db is None:
            raise ValueError("write_report needs db (to read what each metric is) or specs")
        specs = D.from_store(db)
    applied = composite.as_dataset_bounds(mmhm_bounds)
    if applied is not None and mmhm_source is None:
        mmhm_source = str(mmhm_bounds) if isinstance(mmhm_bounds, (str, Path)) else "given bounds"
    written: list[Path] = []
    for suite, sdf in df.groupby("suite", sort=True):
        d = Path(out_dir) / P.slug(str(suite))
        d.mkdir(parents=True, exist_ok=True)
        ctx = context or context_for(recorded_suite_path(db, str(suite)), sdf)
        prov, samples = read_extras(db, list(sdf["key"]), max_samples) if db is not None else (None, None)
        full = _full_cells(sdf)
        # a large suite's figures are drawn in a second process while this one computes the rest (background)
        with background.call(P.make_plots, full, d, specs, big=len(sdf) >= BACKGROUND_CELLS) as job:
            # rank intervals and sample-size guidance: only where cells have kept features (bench.report.ranks)
            home = shown_db if shown_db and Path(shown_db).is_file() else db
            stats = R.board_stats(db, full, specs, ctx.dataset_order, feature_db=home) if db else None
            md = d / "leaderboard.md"
            md.write_text(markdown(sdf, str(suite), specs, ctx, applied, mmhm_source, stats), encoding="utf-8")
            csv = d / "sweep.csv"
            write_csv(sdf, csv)                      # no text cell runs as a formula in a spreadsheet
            plots, skipped = job.result()
        plots += [p for (ds, _), bs in (stats or {}).items() if (p := R.size_plot(bs, str(ds), d)) is not None]
        grids = (G.make_grids(sdf, samples, max_samples, class_names=class_names(prov),
                              dataset_order=ctx.dataset_order, prompts=kept_prompts(prov))
                 if samples is not None else [])
        page = d / "index.html"
        page.write_text(H.page(str(suite), sdf, plots, skipped, grids, prov, specs, ctx,
                               shown_db or (str(db) if db is not None else None), applied, mmhm_source, stats),
                        encoding="utf-8")
        written += [page, md, csv] + [p for pl in plots for p in (pl.png, pl.svg)]
    return written


def _full_cells(sdf: pd.DataFrame) -> pd.DataFrame:
    """The cells plots draw: the full ones where a suite has both (a smoke run's few-sample numbers beside them
    would read as measurements), else all (a smoke run alone still gets its plots)."""
    if "limit" not in sdf.columns or not sdf["limit"].notna().any() or sdf["limit"].notna().all():
        return sdf
    return sdf[sdf["limit"].isna()]
