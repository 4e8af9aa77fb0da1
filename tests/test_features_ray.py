"""The Ray executor with kept features and per-sample scores: shards stay as they were (accumulator states); the
driver's merged cell writes the same features files (byte for byte) and ``sample_scores`` rows as a local run."""

from __future__ import annotations

import pytest

import bench.store
from bench import features, persample
from bench.runner import Runner
from tests.test_persample_store import run, suite

ray = pytest.importorskip("ray")
from bench.dist.ray_executor import RayExecutor, RayOptions  # noqa: E402


def test_ray_shards_keep_the_same_features_and_scores_as_a_local_run(tmp_path):
    (tmp_path / "local").mkdir()
    (tmp_path / "ray").mkdir()
    local, db = tmp_path / "local" / "b.duckdb", tmp_path / "ray" / "b.duckdb"
    run(local, keep=True, steps="[1]")
    from tests.test_ray_executor import ROOT
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False, configure_logging=False,
             runtime_env={"env_vars": {"PYTHONPATH": str(ROOT)}})
    try:
        s = RayExecutor(Runner(suite(keep=True, steps="[1]"), db=db, progress=False),
                        RayOptions(shards_per_cell=2, workers=1, imports=("tests.toy_extractor",))).run()
    finally:
        ray.shutdown()
    assert (s.ran, s.failed) == (1, 0), s.failures
    keys = sorted(bench.store.load(db)["key"])
    with bench.store.ResultStore(db, read_only=True) as st:
        assert '"shards"' in st.con.execute("SELECT provenance FROM cells").fetchone()[0]     # two shards merged
    assert keys == sorted(bench.store.load(local)["key"])
    assert persample.many(db).equals(persample.many(local)) and len(persample.many(db)) == 30
    for key in keys:
        assert features.available(features.root_for(db), key) == ["clip_score", "fid_is_kid"]
        for m in ("clip_score", "fid_is_kid"):
            assert features.path_for(features.root_for(db), key, m).read_bytes() == \
                features.path_for(features.root_for(local), key, m).read_bytes()
