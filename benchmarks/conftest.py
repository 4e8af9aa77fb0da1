"""`make perf`: print the ratios table at the end of the session and write it to results/perf/summary.md."""

from __future__ import annotations

import datetime
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))

import perfkit  # noqa: E402


def pytest_terminal_summary(terminalreporter, exitstatus, config):
    if not perfkit.SUMMARY.rows:
        return
    table = perfkit.SUMMARY.markdown()
    now = datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    text = (f"# stepbench performance ({now})\n\nDevice: {perfkit.device_label()}. Every figure is a ratio measured "
            f"in this one run; strict mode (targets fail the run): {perfkit.STRICT}.\n\n{table}")
    out = Path(config.rootpath) / perfkit.OUT_DIR if not perfkit.OUT_DIR.is_absolute() else perfkit.OUT_DIR
    out.mkdir(parents=True, exist_ok=True)
    (out / "summary.md").write_text(text, encoding="utf-8")
    terminalreporter.write_sep("=", "stepbench performance summary")
    terminalreporter.write_line(table)
    terminalreporter.write_line(f"(also written to {out / 'summary.md'})")
