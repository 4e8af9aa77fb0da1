"""Presentation reads what each metric is from the store: a whole `bench report` and `bench show` in a fresh
interpreter import no torch (nor any metric or the registry), and every ranked metric in the store, including a
made-up third-party one and the built-ins once left out (fd_dinov2, precision, recall), appears in `bench show`,
the HTML sweep table, the leaderboards and the plots, with its stored label and direction."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

import pytest

ROOT = Path(__file__).resolve().parent.parent

# Runs in a fresh interpreter: writes a small store through the store API (fake values, outputs declared as
# data), builds the whole report as `bench report` does (snapshot, load, write_report), then runs the CLI's
# `bench show` and `bench report`, and says which heavy modules each step left imported.
CHILD = r"""
import contextlib, io, json, sys
sys.path.insert(0, sys.argv[1])
from bench.outputs import Output
from bench.store import ResultStore

HEAVY = ("torch", "torch_fidelity", "transformers", "open_clip", "bench.metrics", "bench.models")
db, out = sys.argv[2], sys.argv[3]
OUT = [Output("fid", False, "FID"), Output("is", True, "IS"), Output("kid", False, "KID"),
       Output("precision", True, "Precision"), Output("recall", True, "Recall"),
       Output("clip_score", True, "CLIP Score"), Output("pickscore", True, "PickScore"),
       Output("fd_dinov2", False, "FD-DINOv2"), Output("my_metric", True, "My Metric"),
       Output("my_metric_std", None, "My Metric std")]
with ResultStore(db) as st:
    for i, (model, steps, cfg) in enumerate([(m, s, c) for m in ("a", "b") for s in (1, 2, 4) for c in (1.0, 2.0)]):
        row = {"run_id": "r", "suite": "fx", "model_id": model, "adapter": "toy", "family": "flow", "dataset": "d",
               "steps": steps, "cfg": cfg, "seed": 42, "plan": "per_class:1", "n": 10, "status": "ok",
               "config": {}, "provenance": {}, "seconds": 1.0}
        vals = [30.0 - i, 2.0 + i / 7, 0.3 - i / 100, 0.5 + i / 50, 0.4 + i / 60, 20.0 + i, 1.0 + i / 3,
                300.0 - 7 * i, 0.25 + (i % 5) / 10, 0.01]
        st.write(f"k{i}", row, {o.name: (v, "plugin" if o.name.startswith("my") else "builtin", "v1", {}, o)
                                for o, v in zip(OUT, vals)},
                 {"nfe": (float(steps), "evals/image"), "latency_s": (0.01 * steps + i / 1000, "s")})
from bench.report import snapshot, write_report
from bench.store import load
with snapshot(db) as path:
    write_report(load(path), out + "/api", db=path)
api = [m for m in HEAVY if m in sys.modules]
from bench.cli import main
shown = io.StringIO()
with contextlib.redirect_stdout(shown):
    assert main(["show", "--db", db]) == 0
with contextlib.redirect_stdout(io.StringIO()):
    assert main(["report", "--db", db, "--out", out + "/cli"]) == 0
print(json.dumps({"api": api, "cli": [m for m in HEAVY if m in sys.modules], "show": shown.getvalue()}))
"""


@pytest.fixture(scope="module")
def child(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("report-outputs")
    db, out = tmp / "b.duckdb", tmp / "rep"
    r = subprocess.run([sys.executable, "-c", CHILD, str(ROOT), str(db), str(out)], capture_output=True, text=True,
                       timeout=600, cwd=tmp)
    assert r.returncode == 0, r.stderr
    res = json.loads(r.stdout.strip().splitlines()[-1])
    return SimpleNamespace(**res, api_dir=out / "api" / "fx", cli_dir=out / "cli" / "fx")


def test_building_a_report_imports_no_torch(child):
    assert child.api == [], f"building a report imported {child.api}"


def test_the_cli_show_and_report_import_no_torch(child):
    assert child.cli == [], f"`bench show` and `bench report` imported {child.cli}"


def test_bench_show_lists_every_ranked_metric_in_stored_order(child):
    header = child.show.splitlines()[0].split()
    ranked = ["fid", "is", "kid", "precision", "recall", "clip_score", "pickscore", "fd_dinov2", "my_metric", "mmhm"]
    assert [c for c in header if c in ranked] == ranked                  # every ranked one, in the stored order
    assert "my_metric_std" not in header                                  # a companion statistic is not ranked


def test_html_markdown_and_plots_show_every_ranked_metric(child):
    d = child.api_dir
    html = (d / "index.html").read_text(encoding="utf-8")
    head = html.split("id=sweep-table")[1].split("</thead>")[0]
    for label, arrow in (("My Metric", "↑"), ("FD-DINOv2", "↓"), ("Precision", "↑"), ("Recall", "↑")):
        assert f">{label} {arrow}</th>" in head, label
    assert "My Metric (higher is better); declared by plugin" in head
    boards = html.split("id=leaderboards")[1].split("id=mmhm")[0]
    assert ">My Metric ↑</th>" in boards and ">FD-DINOv2 ↓</th>" in boards
    md = (d / "leaderboard.md").read_text(encoding="utf-8")
    for pick in ("MMHM", "FID"):                                          # each pick's tables name them all
        board = md.split(f"### {pick}-best configuration per model: d")[1].split("###")[0]
        assert "| My Metric ↑ |" in board and "| FD-DINOv2 ↓ |" in board, pick
    for kind in ("steps", "cfg"):                                         # one panel per ranked metric
        svg = (d / f"{kind}-d.svg").read_text(encoding="utf-8")
        for title in ("My Metric (higher is better)", "FD-DINOv2 (lower is better)", "Precision (higher is better)",
                      "Recall (higher is better)", "MMHM (higher is better)"):
            assert title in svg, (kind, title)
        assert "My Metric std" not in svg
        assert f"({kind}-d.png, {kind}-d.svg)" in html and (d / f"{kind}-d.png").is_file()
    assert "My Metric ↑" in (d / "correlation-d.svg").read_text(encoding="utf-8")


def test_a_store_without_outputs_for_a_name_shows_it_nowhere_as_ranked(tmp_path):
    """A name with no stored direction (a version-1 row of a metric it did not ship) is never ranked."""
    from bench.report import directions as D
    from bench.store import ResultStore
    db = tmp_path / "b.duckdb"
    with ResultStore(db) as st:
        st.write("k", {"suite": "s", "model_id": "m", "dataset": "d", "status": "ok"},
                 {"fid": (1.0, "fid_is_kid", "v", {}), "plugin_value": (2.0, "plugin", "v", {})}, {})
    specs = D.from_store(db)
    assert specs.ranked() == ["fid", "mmhm"] and specs.label("plugin_value") == "plugin_value"


def test_directions_come_from_the_store_not_from_metric_classes(tmp_path):
    """Directions and labels are what the metric stored beside its values, whatever a class declares today."""
    from bench.outputs import Output
    from bench.report import directions as D
    from bench.store import ResultStore
    db = tmp_path / "b.duckdb"
    with ResultStore(db) as st:
        st.write("k", {"suite": "s", "model_id": "m", "dataset": "d", "status": "ok"}, {
            "fid": (3.0, "src", "v1", {}, Output("fid", True, "Fidelity")),       # as a (made-up) metric stored it
            "kid": (0.1, "src", "v1", {}, Output("kid", False, "KID")),
            "kid_std": (0.01, "src", "v1", {}, Output("kid_std", None, "KID std"))}, {})
    specs = D.from_store(db)
    assert specs.title("fid") == "Fidelity (higher is better)" and specs.arrow("kid") == "↓"
    assert specs.ranked() == ["fid", "kid", "mmhm"] and specs.higher_is_better("mmhm")
    assert specs.title("kid_std") == "KID std" and "kid_std" not in specs.ranked()   # shown, never ranked
    assert specs.better("fid", 4.0, 3.0) and specs.better("kid", 0.1, 0.2)
