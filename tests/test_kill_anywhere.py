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


def _setup(suite_text: str, tmp_path: Path) -> tuple[Path, int, Path, Path]:
    """(suite file, planned cells, the reference store, the store that gets killed)."""
    (tmp_path / "ref").mkdir()
    (tmp_path / "killed").mkdir()
    suite = tmp_path / "suite.yaml"
    suite.write_text(suite_text)
    planned = len(Suite.load(suite).expand())
    ref_db, db = tmp_path / "ref" / "b.duckdb", tmp_path / "killed" / "b.duckdb"
    return suite, planned, ref_db, db


def kill_loop(suite_text: str, tmp_path: Path, kills: int, seed: int) -> dict:
    """Run uninterrupted once, then kill/resume a second run until it has been killed `kills` times and then
    completes; returns counts. Kill moments are uniform over the uninterrupted run's duration; the loop is bounded
    at 2 * kills uninterrupted-run durations (a kill costs at most one)."""
    suite, planned, ref_db, db = _setup(suite_text, tmp_path)
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


def _ok_cells(db: Path) -> int:
    if not db.exists():
        return 0
    cells, _ = _values(db)
    assert (cells["status"] == "ok").all(), "only complete cells are ever stored"
    return len(cells)


def kill_in_the_writing_window(suite_text: str, tmp_path: Path, kills: int, seed: int) -> dict:
    """Kill each run right after its k-th stored cell (k = 1 or 2, read from the per-cell line the runner prints
    once a cell is committed), a random 0-0.2 s into the next cell: the kill lands while cells are generated and
    written, never only during start-up. After each kill the store holds every cell committed before it."""
    suite, planned, ref_db, db = _setup(suite_text, tmp_path)
    _run(suite, ref_db)
    rng = random.Random(seed)
    killed, gained = 0, []
    while killed < kills:
        before = _ok_cells(db)
        target = rng.randint(1, 2)
        p = subprocess.Popen(_cmd(suite, db), cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                             text=True, env=_env())
        seen = 0
        for line in p.stderr:
            seen += " nfe=" in line
            if seen >= target:
                break
        if seen < target:                      # it finished first: start again from an empty store
            assert p.wait() == 0
            db.unlink()
            continue
        time.sleep(rng.uniform(0, 0.2))
        p.send_signal(signal.SIGKILL)
        p.wait()
        p.stderr.close()
        killed += 1
        after = _ok_cells(db)
        assert after >= before + target, (before, target, after)      # cells were stored between kills
        gained.append(after - before)
    _run(suite, db)
    ref_cells, ref_metrics = _values(ref_db)
    cells, metrics = _values(db)
    assert len(cells) == planned and list(cells["key"]) == list(ref_cells["key"])
    assert metrics.equals(ref_metrics), "every stored value equals the uninterrupted run's"
    return {"planned": planned, "kills": killed, "stored_between_kills": gained}


@pytest.mark.timeout(300)
def test_kill_in_the_cell_writing_window_toy_suite(tmp_path, toy_suite_text):
    out = kill_in_the_writing_window(toy_suite_text(n=6, steps="[1, 2, 3, 4]", cfg="[1.0, 2.0]"), tmp_path,
                                     kills=3, seed=1)
    assert out["kills"] == 3 and out["planned"] == 8 and all(g >= 1 for g in out["stored_between_kills"])


@pytest.mark.slow
def test_kill_anywhere_mini_suite_twenty_kills(tmp_path):
    out = kill_loop(MINI_SMALL, tmp_path, kills=20, seed=2026)
    print(f"\nkill-anywhere: {out}")
    assert out["kills"] >= 20 and out["planned"] == 11
