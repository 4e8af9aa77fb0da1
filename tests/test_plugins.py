"""A third-party package adds an adapter and a metric by entry point, and they work everywhere a built-in does.

The demo plugin (tests/fixtures/plugin/stepbench_tinyflow, installed by `tests.plugin_site` into a temporary
site folder with its dist-info) is used from fresh interpreters, as a user's shell would: a suite naming
``tinyflow`` and ``brightness`` validates, runs locally and under ``--executor ray`` with the same stored values,
and the metric appears in ``bench show``, the HTML report and a plot.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import duckdb
import pytest

from tests.plugin_site import install

ROOT = Path(__file__).resolve().parent.parent

SUITE = """
suite: plugin
seed: 7
batch_size: 16
samples: {plan: per_reference, n: 24}
keep_samples: 2
timing: {warmup: 0, repeats: 1, throughput_repeats: 1}
datasets:
  - {id: mini-val, options: {size: 24}}
metrics:
  brightness: {channel: all}
models:
  - id: tiny
    adapter: tinyflow
    options: {resolution: 12}
    steps: [1, 3]
    cfg: [1.0, 2.0]
"""


@pytest.fixture(scope="module")
def plugin(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("plugin")
    site = install(tmp / "site")
    suite = tmp / "plugin.yaml"
    suite.write_text(SUITE)
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(site), str(ROOT)]), "OMP_NUM_THREADS": "1",
           "STEPBENCH_HASH_CACHE": str(tmp / "hashes.json")}
    return tmp, suite, env


def bench(env, *args, cwd=None) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "bench.cli", *args], env=env, cwd=cwd or ROOT,
                          capture_output=True, text=True, timeout=600)


def values(db: Path) -> dict:
    con = duckdb.connect(str(db), read_only=True)
    try:
        rows = con.execute("SELECT c.steps, c.cfg, m.metric, m.value FROM metrics m JOIN cells c USING (key) "
                           "WHERE c.status = 'ok'").fetchall()
    finally:
        con.close()
    return {(s, c, m): v for s, c, m, v in rows}


def test_plugin_suite_validates_and_a_typo_in_its_options_is_refused(plugin):
    tmp, suite, env = plugin
    r = bench(env, "validate", str(suite))
    assert r.returncode == 0, r.stderr
    assert "4 cells" in r.stdout and "tinyflow" in r.stdout and "true CFG on the velocity" in r.stdout
    bad = tmp / "typo.yaml"
    bad.write_text(SUITE.replace("resolution: 12", "resolutoin: 12").replace("channel: all", "channel: al"))
    r = bench(env, "validate", str(bad))
    lines = r.stderr.splitlines()
    assert r.returncode == 2 and "Traceback" not in r.stderr, r.stderr
    assert any("models[0].options.resolutoin: unknown option (did you mean 'resolution'?)" in ln for ln in lines)
    assert any("metrics.brightness.channel:" in ln and "'all'" in ln for ln in lines), lines


def test_plugin_runs_locally_and_on_ray_with_the_same_values_and_shows_everywhere(plugin):
    tmp, suite, env = plugin
    local, on_ray = tmp / "local.duckdb", tmp / "ray.duckdb"
    r = bench(env, "run", str(suite), "--db", str(local), "-q")
    assert r.returncode == 0, r.stderr
    r = bench(env, "run", str(suite), "--db", str(on_ray), "-q", "--executor", "ray", "--workers", "1",
              "--shards-per-cell", "2")
    assert r.returncode == 0, r.stderr[-3000:]
    a, b = values(local), values(on_ray)
    assert len([k for k in a if k[2] == "brightness"]) == 4
    assert a == b
    assert a[(1, 1.0, "brightness")] != a[(3, 1.0, "brightness")]          # the steps axis changes the images

    r = bench(env, "show", "--db", str(local))
    assert r.returncode == 0 and "brightness" in r.stdout.splitlines()[0], r.stdout
    out = tmp / "reports"
    r = bench(env, "report", "--db", str(local), "--out", str(out))
    assert r.returncode == 0, r.stderr
    html = next(out.rglob("index.html")).read_text()
    assert "Brightness" in html
    svg = next(out.rglob("steps-mini-val.svg")).read_text()      # the metrics-against-steps plot has its panel
    assert "Brightness (higher is better, 0-255)" in svg             # label, direction and unit, from the store


def test_the_readme_quotes_the_plugin_adapter_verbatim():
    """The README's 'Add your own model' example is the adapter these tests install and run, not a copy that
    can drift."""
    adapter = (ROOT / "tests" / "fixtures" / "plugin" / "stepbench_tinyflow" / "adapter.py").read_text()
    readme = (ROOT / "README.md").read_text()
    assert f"```python\n{adapter}```" in readme
    assert len(adapter.splitlines()) <= 45
