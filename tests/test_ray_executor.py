"""The Ray executor (`bench run --executor ray`) on a local Ray with 2 CPUs and no GPU.

Same planning, accumulators and store code as the local runner: a sweep run with K = 1, 2, 3 shards per cell
stores exactly the local executor's values; a worker killed mid-task is restarted and the cell completes; a
killed driver loses nothing stored and a rerun resumes without duplicates."""

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

import bench
from bench import registry
from bench.models.toy import ToyFlow
from bench.runner import Runner
from bench.store import ResultStore
from bench.suite import Suite

ray = pytest.importorskip("ray")
from bench.dist.ray_executor import RayExecutor, RayOptions, split  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
IMPORTS = ("tests.toy_extractor",)


class DieOnce(ToyFlow):
    """Kills its own worker process the first time it generates sample 0 (a marker file makes it once only)."""
    version = "toy-1"          # the same network and version as `toy`: the same images and values

    class Options(ToyFlow.Options):
        marker: str

    def load(self, spec, device):
        super().load(spec, device)
        self.marker = Path(self.opts.marker)

    def weights_id(self, spec):
        return "toy-init:0"

    def generate(self, labels, sample_ids, s):
        if int(sample_ids[0]) == 0 and not self.marker.exists():
            self.marker.write_text(str(os.getpid()))
            os._exit(137)                          # as abrupt as the OOM killer
        return super().generate(labels, sample_ids, s)


registry.register("model adapter", "die-once", "tests.test_ray_executor:DieOnce")


@pytest.fixture(scope="module")
def local_ray():
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False, configure_logging=False,
             runtime_env={"env_vars": {"PYTHONPATH": str(ROOT)}})
    yield ray
    ray.shutdown()


def _metrics(db: Path):
    with ResultStore(db, read_only=True) as st:
        return st.frame("SELECT c.model_id, c.steps, c.cfg, m.metric, m.value FROM metrics m JOIN cells c USING (key) "
                        "ORDER BY c.model_id, c.steps, c.cfg, m.metric")


def test_split_covers_the_range_disjointly():
    for n in (1, 7, 40):
        for k in (1, 2, 3, 50):
            r = split(n, k)
            assert r[0][0] == 0 and r[-1][1] == n and all(a[1] == b[0] for a, b in zip(r, r[1:]))
            assert all(hi > lo for lo, hi in r) and len(r) == min(k, n)


def test_ray_executor_equals_local_for_1_2_3_shards(tmp_path, toy_suite_text, local_ray):
    text = toy_suite_text(n=5, steps="[1, 2]", cfg="[1.0, 2.0]")      # 4 cells of 50 samples, batch 16
    local = tmp_path / "local.duckdb"
    assert Runner(Suite.parse(text, "toy.yaml"), db=local, progress=False).run().exit_code == 0
    expected = _metrics(local)
    for k in (1, 2, 3):
        db = tmp_path / f"ray{k}.duckdb"
        s = RayExecutor(Runner(Suite.parse(text, "toy.yaml"), db=db, progress=False),
                        RayOptions(shards_per_cell=k, workers=2, imports=IMPORTS)).run()
        assert (s.ran, s.failed) == (4, 0), s.failures
        got = _metrics(db)
        assert got.equals(expected), f"K={k}: merged shard values differ from the local run"
        df = bench.load(db)
        assert (df["nfe"] == df["nfe_declared"]).all()
        with ResultStore(db, read_only=True) as st:
            prov = st.frame("SELECT provenance FROM cells")["provenance"]
        assert all(('"shards"' in p) == (k > 1) for p in prov)


def test_killed_worker_is_retried_and_the_cell_completes(tmp_path, toy_suite_text, local_ray):
    marker = tmp_path / "died"
    text = toy_suite_text(n=5, steps="[1]", cfg="[1.0]").split("models:")[0] + (
        f"models:\n  - {{id: toy, adapter: die-once, steps: [1], cfg: [1.0], options: {{marker: '{marker}'}}}}\n")
    db = tmp_path / "b.duckdb"
    s = RayExecutor(Runner(Suite.parse(text, "toy.yaml"), db=db, progress=False),
                    RayOptions(shards_per_cell=2, workers=1, imports=IMPORTS)).run()
    assert marker.exists(), "the worker really died once"
    assert (s.ran, s.failed) == (1, 0), s.failures
    ref = tmp_path / "ref.duckdb"
    plain = text.replace("adapter: die-once", "adapter: toy").replace(f", options: {{marker: '{marker}'}}", "")
    Runner(Suite.parse(plain, "toy.yaml"), db=ref, progress=False).run()
    assert _metrics(db)["value"].tolist() == _metrics(ref)["value"].tolist()


def test_driver_killed_then_rerun_resumes_without_duplicates(tmp_path, toy_suite_text):
    suite = tmp_path / "toy.yaml"
    suite.write_text(toy_suite_text(n=5, steps="[1, 2, 3]", cfg="[1.0, 2.0]"))     # 6 cells
    db = tmp_path / "b.duckdb"
    code = ("import sys, tests.toy_extractor; from bench.cli import main; "
            f"sys.exit(main(['run', {str(suite)!r}, '--db', {str(db)!r}, '--executor', 'ray', '--workers', '1', "
            "'--ray-import', 'tests.toy_extractor']))")
    env = {**os.environ, "PYTHONPATH": str(ROOT), "RAY_ADDRESS": ""}
    p = subprocess.Popen([sys.executable, "-c", code], cwd=ROOT, stderr=subprocess.PIPE, text=True, env=env,
                         start_new_session=True)
    done, deadline = 0, time.time() + 300
    for line in p.stderr:
        done += " nfe=" in line
        if done >= 2 or time.time() > deadline:
            break
    os.killpg(p.pid, signal.SIGKILL)          # the driver and the local Ray it started
    p.wait()
    assert done >= 2
    with ResultStore(db, read_only=True) as st:
        stored = int(st.frame("SELECT count(*) AS n FROM cells WHERE status = 'ok'")["n"][0])
    assert 2 <= stored < 6
    r = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, env=env,
                       start_new_session=True, timeout=600)
    assert r.returncode == 0, r.stderr[-3000:]
    assert f"{6 - stored} ran, {stored} already stored" in r.stdout
    df = bench.load(db)
    assert len(df) == 6 and df["key"].is_unique and (df["status"] == "ok").all()
