"""Reports built from the store: leaderboards (Markdown, HTML), plots (PNG, SVG), sample grids, one page.

``write_report(df, out_dir, db=...)`` writes ``<out_dir>/<suite>/``; ``snapshot(db)`` gives a path that is
safe to read while a writer holds the store. Modules: directions (metric labels and directions, read from
the store, where each metric's declaration is recorded beside its values), source (read-only store access),
leaderboard, plots, grids, html, build.
"""

from bench.report.build import write_report
from bench.report.source import snapshot

__all__ = ["write_report", "snapshot"]
