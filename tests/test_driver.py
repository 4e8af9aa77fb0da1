"""The driver / worker split: a `CellSpec` is all a worker needs (it pickles), the engine's shards merge to the
same values as one shard, and a crash outside any cell marks the run failed, never ok."""

from __future__ import annotations

import pickle

import pytest

from bench.cell import CellSpec
from bench.engine import Engine
from bench.runner import Runner
from bench.store import ResultStore
from bench.suite import Suite


def _spec(runner: Runner, cell) -> CellSpec:
    adapter = __import__("bench.registry", fromlist=["resolve"]).resolve("model adapter", cell.model.adapter)()
    wid = adapter.weights_id(cell.model)
    return CellSpec(cell, runner.key(cell, adapter, wid), wid)


def test_a_cell_spec_crosses_processes_and_shards_merge_exactly(tmp_path, toy_suite_text):
    suite = Suite.parse(toy_suite_text(n=5, steps="[2]", cfg="[2.0]"), "toy.yaml")
    runner = Runner(suite, db=tmp_path / "r.duckdb", progress=False)
    cs = _spec(runner, suite.expand()[0])
    again = pickle.loads(pickle.dumps(cs))
    assert again == cs and again.key == cs.key
    worker = Engine(runner.settings)                     # a second engine, as a Ray actor holds
    whole = worker.finish(cs, [worker.run_shard(cs, 0, None, with_latency=False)])
    n = worker.count(cs)
    parts = [worker.run_shard(again, lo, hi, with_latency=False) for lo, hi in ((0, 7), (7, 31), (31, n))]
    split = runner.engine.finish(cs, parts[::-1])          # the driver's engine merges, in any arrival order
    assert n == 50 and whole.n == split.n == n
    assert {k: v[0] for k, v in whole.values.items()} == {k: v[0] for k, v in split.values.items()}
    assert whole.nfe == split.nfe == 4.0                   # 2 steps x CFG (2 rows)
    assert all(v[4].name == k or v[4].name.endswith("/*") for k, v in whole.values.items())


def test_a_crash_outside_any_cell_marks_the_run_failed(tmp_path, toy_suite_text, monkeypatch):
    suite = Suite.parse(toy_suite_text(), "toy.yaml")
    runner = Runner(suite, db=tmp_path / "c.duckdb", progress=False)

    def broken(cells):
        raise RuntimeError("the planner broke")

    monkeypatch.setattr(runner, "plan_model", broken)
    with pytest.raises(RuntimeError, match="the planner broke"):
        runner.run()
    with ResultStore(tmp_path / "c.duckdb", read_only=True) as st:
        assert st.frame("SELECT status FROM runs")["status"].tolist() == ["failed"]
