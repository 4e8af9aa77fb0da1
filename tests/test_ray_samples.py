"""`bench run --executor ray` with a ``samples`` model (pre-generated images whose plan needs the loaded files)
stores the same values as the local executor, for one and for two shards per cell."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from bench.runner import Runner
from bench.store import ResultStore
from bench.suite import Suite

ray = pytest.importorskip("ray")
from bench.dist.ray_executor import RayExecutor, RayOptions  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent

SUITE = """
suite: samples-ray
seed: 1
batch_size: 16
samples: {{plan: per_reference, n: 40}}
timing: {{enabled: false}}
datasets:
  - {{id: mini-val, options: {{size: 40}}}}
metrics:
  fid_is_kid: {{feature_extractor: toy-extractor, kid_subset_size: 20, kid_subsets: 10}}
models:
  - {{id: given, adapter: samples, weights: {npz}}}
"""


def _values(db: Path) -> dict:
    with ResultStore(db, read_only=True) as st:
        df = st.frame("SELECT m.metric, m.value, c.status FROM metrics m JOIN cells c USING (key)")
        runs = st.frame("SELECT status FROM runs")["status"].tolist()
    assert runs == ["ok"]
    return dict(zip(df.metric, df.value))


def test_samples_model_on_ray_equals_local(tmp_path):
    rng = np.random.default_rng(0)
    npz = tmp_path / "given.npz"
    np.savez(npz, arr_0=rng.integers(0, 256, (40, 16, 16, 3), dtype=np.uint8), arr_1=rng.integers(0, 10, 40))
    text = SUITE.format(npz=npz)
    local = tmp_path / "local.duckdb"
    s = Runner(Suite.parse(text, "s.yaml"), db=local, progress=False).run()
    assert s.ran == 1 and s.failed == 0, s.failures
    expect = _values(local)
    assert "fid" in expect
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False, configure_logging=False,
             runtime_env={"env_vars": {"PYTHONPATH": str(ROOT)}})
    try:
        for k in (1, 2):
            db = tmp_path / f"ray{k}.duckdb"
            s = RayExecutor(Runner(Suite.parse(text, "s.yaml"), db=db, progress=False),
                            RayOptions(shards_per_cell=k, workers=2, imports=("tests.toy_extractor",))).run()
            assert s.ran == 1 and s.failed == 0, s.failures
            assert _values(db) == expect
    finally:
        ray.shutdown()
