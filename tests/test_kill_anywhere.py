"""Kill anywhere: SIGKILL `bench run` at random moments, resume each time, and lose nothing.

At the end every planned cell is stored exactly once, none partially, and every stored value equals an
uninterrupted run's. The fast version (toy suite, a few kills) runs in `make test`; the long loop (a reduced mini
suite with the real mini generators and metric networks, >= 20 kills) in `make test-slow`.
"""

import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from bench.store import ResultStore
from bench.suite import Suite

ROOT = Path(__file__).resolve().parent.parent

MINI_SMALL = """
suite: mini-kill
seed: 42
batch_size: 100
samples: {plan: per_reference, n: 100}
keep_samples: 2
timing: {warmup: 0, repeats: 1, throughput: bulk}
datasets:
  - {id: mini-val, options: {size: 200}}
metrics:
  fid_is_kid: {feature_extractor: mini-classifier, kid_subset_size: 50, kid_subsets: 10, batch_size: 100}
  clip_score: {backend: mini, model: clip, batch_size: 100}
  pickscore: {backend: mini, model: pick, batch_size: 100}
models:
  - {id: mini-sit, adapter: mini-sit, steps: [1, 2, 4], cfg: [1.0, 3.0], solver: [euler]}
  - {id: mini-meanflow, adapter: mini-meanflow, steps: [1, 2], cfg: [1.0]}
  - {id: mini-distill, adapter: mini-distill, steps: [1], cfg: [1.0, 3.0]}
  - {id: real-vs-real, adapter: real}
"""


def _cmd(suite: Path, db: Path) -> list[str]:
    code = ("import sys, tests.toy_extractor; from bench.cli import main; "
            f"sys.exit(main(['run', {str(suite)!r}, '--db', {str(db)!r}]))")
    return [sys.executable, "-c", code]


def _env() -> dict:
    return {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1"}


def _run(suite: Path, db: Path) -> float:
    t0 = time.perf_counter()
    r = subprocess.run(_cmd(suite, db), cwd=ROOT, capture_output=True, text=True, env=_env())
    assert r.returncode == 0, r.stderr[-3000:]
    return time.perf_counter() - t0


def _values(db: Path):
    with ResultStore(db, read_only=True) as st:
        cells = st.frame("SELECT key, status FROM cells ORDER BY key")
        metrics = st.frame("SELECT key, metric, value FROM metrics ORDER BY key, metric")
    return cells, metrics


def kill_loop(suite_text: str, tmp_path: Path, kills: int, seed: int) -> dict:
    """Run uninterrupted once, then kill/resume a second run until it has been killed `kills` times and then
    completes; returns counts. Kill moments are uniform over the uninterrupted run's duration; the loop is bounded
    at 2 * kills uninterrupted-run durations (a kill costs at most one)."""
    (tmp_path / "ref").mkdir()
    (tmp_path / "killed").mkdir()
    suite = tmp_path / "suite.yaml"
    suite.write_text(suite_text)
    planned = len(Suite.load(suite).expand())
    ref_db, db = tmp_path / "ref" / "b.duckdb", tmp_path / "killed" / "b.duckdb"
    full_s = _run(suite, ref_db)
    rng = random.Random(seed)
    killed = stored_during = 0
    deadline = time.monotonic() + 2 * kills * full_s + 60
    while killed < kills:
        assert time.monotonic() < deadline, f"kill loop over its time budget after {killed} kills"
        p = subprocess.Popen(_cmd(suite, db), cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                             env=_env())
        try:
            p.wait(timeout=rng.uniform(0.2, full_s))
        except subprocess.TimeoutExpired:
            p.send_signal(signal.SIGKILL)
            p.wait()
            killed += 1
        if p.returncode == 0:     # finished before the kill: start again from an empty store for more kills
            db.unlink()
            continue
        if db.exists():
            cells, metrics = _values(db)
            ok = cells[cells["status"] == "ok"]
            assert (cells["status"] == "ok").all(), "only complete cells are ever stored"
            assert set(metrics["key"]) <= set(ok["key"])
            stored_during = max(stored_during, len(ok))
    _run(suite, db)
    ref_cells, ref_metrics = _values(ref_db)
    cells, metrics = _values(db)
    assert len(cells) == planned and cells["key"].is_unique and (cells["status"] == "ok").all()
    assert list(cells["key"]) == list(ref_cells["key"])
    assert metrics.equals(ref_metrics), "every stored value equals the uninterrupted run's"
    return {"planned": planned, "kills": killed, "max_stored_between_kills": stored_during}


def test_kill_anywhere_toy_suite_few_kills(tmp_path, toy_suite_text):
    out = kill_loop(toy_suite_text(n=6, steps="[1, 2, 3]", cfg="[1.0, 2.0]"), tmp_path, kills=3, seed=1)
    assert out["kills"] == 3 and out["planned"] == 6


@pytest.mark.slow
def test_kill_anywhere_mini_suite_twenty_kills(tmp_path):
    out = kill_loop(MINI_SMALL, tmp_path, kills=20, seed=2026)
    print(f"\nkill-anywhere: {out}")
    assert out["kills"] >= 20 and out["planned"] == 11
