"""Reports built from the tidy store frame: Markdown leaderboards (HTML and plots grow here)."""

from bench.report.leaderboard import write_report

__all__ = ["write_report"]
