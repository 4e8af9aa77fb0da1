"""Install the demo plugin (tests/fixtures/plugin/stepbench_tinyflow) into a temporary site folder the way pip
would leave it: the package plus a ``*.dist-info`` with METADATA and entry_points.txt, so
`importlib.metadata.entry_points` finds its ``stepbench.*`` groups when the folder is on sys.path."""

from __future__ import annotations

import shutil
from pathlib import Path

PLUGIN = Path(__file__).resolve().parent / "fixtures" / "plugin" / "stepbench_tinyflow"

ENTRY_POINTS = """[stepbench.adapters]
tinyflow = stepbench_tinyflow.adapter:TinyFlow

[stepbench.metrics]
brightness = stepbench_tinyflow.metric:Brightness
"""


def install(site: Path, entry_points: str = ENTRY_POINTS, name: str = "stepbench-tinyflow") -> Path:
    site.mkdir(parents=True, exist_ok=True)
    shutil.copytree(PLUGIN, site / "stepbench_tinyflow", dirs_exist_ok=True)
    info = site / f"{name.replace('-', '_')}-0.1.dist-info"
    info.mkdir(exist_ok=True)
    (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {name}\nVersion: 0.1\n")
    (info / "entry_points.txt").write_text(entry_points)
    return site
