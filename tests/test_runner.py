import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

import bench
from bench import registry
from bench.models.toy import ToyFlow
from bench.runner import Runner
from bench.store import ResultStore
from bench.suite import Suite

ROOT = Path(__file__).resolve().parent.parent


class Flaky(ToyFlow):
    """Fails on cfg == 2 (raises) and on steps == 3 (returns float images)."""
    version = "flaky-1"

    def generate(self, labels, sample_ids, s):
        if s.cfg == 2.0:
            raise RuntimeError("simulated failure at cfg=2")
        out = super().generate(labels, sample_ids, s)
        return out.float() if s.steps == 3 else out


registry.register("model adapter", "flaky", "tests.test_runner:Flaky")


def _suite(text, name="toy.yaml"):
    return Suite.parse(text, name)


def test_second_run_generates_nothing(tmp_path, toy_suite_text, monkeypatch):
    calls = []
    orig = ToyFlow.generate
    monkeypatch.setattr(ToyFlow, "generate", lambda self, *a: calls.append(1) or orig(self, *a))
    db = tmp_path / "b.duckdb"
    s1 = Runner(_suite(toy_suite_text()), db=db, progress=False).run()
    assert (s1.ran, s1.failed, s1.exit_code) == (4, 0, 0) and calls
    first = bench.load(db)
    calls.clear()
    s2 = Runner(_suite(toy_suite_text()), db=db, progress=False).run()
    assert (s2.ran, s2.skipped, calls) == (0, 4, [])
    again = bench.load(db)
    assert again[["key", "fid", "is", "kid"]].equals(first[["key", "fid", "is", "kid"]])


def test_nfe_is_counted_and_matches_declared(tmp_path, toy_suite_text):
    db = tmp_path / "b.duckdb"
    Runner(_suite(toy_suite_text(steps="[1, 3]")), db=db, progress=False).run()
    df = bench.load(db).sort_values(["steps", "cfg"])
    assert list(df["nfe"]) == [1.0, 2.0, 3.0, 6.0]
    assert list(df["nfe"]) == list(df["nfe_declared"])
    assert (df["latency_s"] > 0).all() and (df["throughput_ips"] > 0).all()


def test_failing_cells_are_recorded_and_the_sweep_goes_on(tmp_path, toy_suite_text):
    db = tmp_path / "b.duckdb"
    text = toy_suite_text(steps="[1, 3]").replace("adapter: toy", "adapter: flaky")
    s = Runner(_suite(text), db=db, progress=False).run()
    assert (s.ran, s.failed, s.exit_code) == (1, 3, 1)
    df = bench.load(db).set_index(["steps", "cfg"])
    assert df.loc[(1, 1.0), "status"] == "ok" and df.loc[(1, 1.0), "fid"] > 0
    assert "simulated failure at cfg=2" in df.loc[(1, 2.0), "error"]
    assert "dtype torch.float32, expected torch.uint8" in df.loc[(3, 1.0), "error"]
    # 'missing' re-runs only failed cells; 'never' re-runs nothing; 'always' re-runs everything
    assert Runner(_suite(text), db=db, progress=False, overwrite="never").run().ran == 0
    again = Runner(_suite(text), db=db, progress=False).run()
    assert (again.skipped, again.failed) == (1, 3)
    assert Runner(_suite(text), db=db, progress=False, overwrite="always").run().ran == 1


def _samples_suite(toy_text, tmp_path, folder):
    return toy_text.split("models:")[0] + (
        f"models:\n  - id: npz\n    adapter: samples\n    weights: {tmp_path / 's.npz'}\n"
        f"  - id: folder\n    adapter: samples\n    weights: {folder}\n"
        f"  - id: real\n    adapter: real\n")


def test_samples_adapter_reads_npz_with_labels_and_folders(tmp_path, toy_suite_text):
    from bench.mini import data
    imgs, labels = data.batch("val-holdout", 0, 40)
    np.savez(tmp_path / "s.npz", arr_0=imgs, arr_1=labels)
    folder = tmp_path / "pngs"
    folder.mkdir()
    for i, im in enumerate(imgs):
        Image.fromarray(im).save(folder / f"{i:05d}.png")
    text = _samples_suite(toy_suite_text(), tmp_path, folder)
    db = tmp_path / "b.duckdb"
    s = Runner(_suite(text), db=db, progress=False).run()
    assert s.exit_code == 0, s.failures
    df = bench.load(db).set_index("model")
    # the same real images, once with their own labels, once from PNGs: identical FID (lossless)
    assert df.loc["npz", "fid"] == pytest.approx(df.loc["folder", "fid"], rel=1e-9)
    assert df.loc["real", "nfe"] == 0
    too_few = _samples_suite(toy_suite_text(n=9), tmp_path, folder)   # 90 samples wanted, 40 given
    s = Runner(_suite(too_few), db=tmp_path / "c.duckdb", progress=False).run()
    assert s.failed == 2 and "needs 90 images but only 40" in s.failures[0]


@pytest.mark.timeout(240)
def test_sigkill_mid_suite_then_resume_completes_only_missing_cells(tmp_path, toy_suite_text):
    suite = tmp_path / "toy.yaml"
    suite.write_text(toy_suite_text(n=40, steps="[1, 2, 3, 4]", cfg="[1.0, 2.0, 3.0]"))   # 12 cells
    db = tmp_path / "b.duckdb"
    code = ("import sys, tests.toy_extractor; from bench.cli import main; "
            f"sys.exit(main(['run', {str(suite)!r}, '--db', {str(db)!r}]))")
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    p = subprocess.Popen([sys.executable, "-c", code], cwd=ROOT, stderr=subprocess.PIPE, text=True, env=env)
    done = 0
    deadline = time.time() + 120
    for line in p.stderr:
        done += " nfe=" in line
        if done >= 3 or time.time() > deadline:
            break
    p.send_signal(signal.SIGKILL)
    p.wait()
    assert done >= 3
    with ResultStore(db, read_only=True) as st:
        stored = st.frame("SELECT count(*) AS n FROM cells WHERE status = 'ok'")["n"][0]
        assert st.frame("SELECT count(*) AS n FROM cells WHERE status <> 'ok'")["n"][0] == 0
    assert 3 <= stored < 12
    r = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, env=env)
    assert r.returncode == 0, r.stderr[-2000:]
    assert f"{12 - stored} ran, {stored} already stored" in r.stdout
    df = bench.load(db)
    assert len(df) == 12 and df["key"].is_unique and (df["status"] == "ok").all()
    with ResultStore(db, read_only=True) as st:
        per_cell = st.frame("SELECT key, count(*) AS n FROM metrics GROUP BY key")
    assert len(per_cell) == 12 and (per_cell["n"] == per_cell["n"].iloc[0]).all(), "no partial cells"


def test_bulk_throughput_mode_adds_no_generation_at_suite_batch_size(tmp_path, toy_suite_text, monkeypatch):
    sizes = []
    orig = ToyFlow.generate
    monkeypatch.setattr(ToyFlow, "generate", lambda self, y, i, s: sizes.append(len(y)) or orig(self, y, i, s))
    text = toy_suite_text(steps="[2]", cfg="[1.0]").replace(
        "timing: {warmup: 0, repeats: 2, throughput_repeats: 1}",
        "timing: {warmup: 0, repeats: 2, throughput: bulk, iqr_target: null}")   # the fixed rule: 2 calls
    Runner(_suite(text), db=tmp_path / "b.duckdb", progress=False).run()
    assert sizes == [16, 16, 8, 1, 1], "bulk batches, then only the two batch-1 latency calls"
    df = bench.load(tmp_path / "b.duckdb")
    assert df["throughput_ips"].iloc[0] > 0 and df["latency_s"].iloc[0] > 0


@pytest.mark.timeout(240)
def test_sigint_stops_cleanly_keeps_written_cells_and_exits_130(tmp_path, toy_suite_text):
    suite = tmp_path / "toy.yaml"
    suite.write_text(toy_suite_text(n=40, steps="[1, 2, 3, 4]", cfg="[1.0, 2.0, 3.0]"))
    db = tmp_path / "b.duckdb"
    # a shell that started us in the background may have set SIGINT to "ignore", which children inherit:
    # restore Python's own handler, as in a terminal
    code = ("import signal, sys, tests.toy_extractor; from bench.cli import main; "
            "signal.signal(signal.SIGINT, signal.default_int_handler); "
            f"sys.exit(main(['run', {str(suite)!r}, '--db', {str(db)!r}]))")
    p = subprocess.Popen([sys.executable, "-c", code], cwd=ROOT, stderr=subprocess.PIPE, stdout=subprocess.PIPE,
                         text=True, env={**os.environ, "PYTHONPATH": str(ROOT)})
    for line in p.stderr:
        if " nfe=" in line:
            break
    p.send_signal(signal.SIGINT)
    out, err = p.communicate(timeout=120)
    assert p.returncode == 130, err[-2000:]
    assert "run the same command again to resume" in err
    with ResultStore(db, read_only=True) as st:
        runs = st.frame("SELECT status FROM runs")
        ok = st.frame("SELECT count(*) AS n FROM cells WHERE status = 'ok'")["n"][0]
    assert list(runs["status"]) == ["interrupted"] and 1 <= ok < 12


@pytest.mark.parametrize("mode", ["per_setting", "per_cell"])
def test_batch1_latency_is_measured_once_per_setting_unless_asked_per_cell(tmp_path, toy_suite_text, monkeypatch,
                                                                           mode):
    calls = []
    orig = ToyFlow.generate
    monkeypatch.setattr(ToyFlow, "generate",
                        lambda self, y, i, s: calls.append((len(y), s.steps)) or orig(self, y, i, s))
    text = toy_suite_text(steps="[1, 2]", cfg="[1.0]").replace(
        "timing: {warmup: 0, repeats: 2, throughput_repeats: 1}",
        f"timing: {{warmup: 0, repeats: 2, throughput: bulk, latency: {mode}, iqr_target: null}}").replace(
        "  - id: mini-val\n    options: {size: 60}",
        "  - id: mini-val\n    options: {size: 60}\n  - id: mini-v2\n    options: {size: 60}")
    Runner(_suite(text), db=tmp_path / "b.duckdb", progress=False).run()
    batch1 = [steps for b, steps in calls if b == 1]
    # two settings (steps 1, 2) x two datasets; 2 timed batch-1 calls per measurement
    assert sorted(batch1) == ([1, 1, 2, 2] if mode == "per_setting" else [1, 1, 1, 1, 2, 2, 2, 2])
    df = bench.load(tmp_path / "b.duckdb").sort_values(["steps", "dataset"])
    assert len(df) == 4 and (df["latency_s"] > 0).all()
    if mode == "per_setting":
        assert sorted(df["latency_shared"]) == [0.0, 0.0, 1.0, 1.0]
        for _, g in df.groupby("steps"):      # the sharing cell reports the measuring cell's figure
            assert g["latency_s"].nunique() == 1
    else:
        assert (df["latency_shared"] == 0).all()


# -- failures at the end of a run: grouped, each printed once ------------------------------------------------------
def test_identical_errors_are_one_line_with_a_count_and_the_cells_and_none_is_printed_twice(tmp_path, toy_suite_text,
                                                                                            capsys):
    from bench.cli import main
    suite = tmp_path / "toy.yaml"    # flaky: cfg 2 raises (3 cells, one error); steps 3 returns float images (2 cells)
    suite.write_text(toy_suite_text(steps="[1, 2, 3]").replace("adapter: toy", "adapter: flaky"))
    code = main(["run", str(suite), "--db", str(tmp_path / "b.duckdb")])          # progress on: the live log too
    out, err = capsys.readouterr()
    assert code == 1 and "6 cells planned, 2 ran, 0 already stored, 4 failed" in out
    raised = [ln for ln in err.splitlines() if "simulated failure at cfg=2" in ln]
    floats = [ln for ln in err.splitlines() if "expected torch.uint8" in ln]
    assert len(raised) == 1 and len(floats) == 1, err
    assert raised[0] == ("  3 cells failed: RuntimeError: simulated failure at cfg=2 [toy: mini-val steps=1 cfg=2.0, "
                         "mini-val steps=2 cfg=2.0, mini-val steps=3 cfg=2.0]")
    assert floats[0].startswith("  1 cell failed: CellError: ") and "[toy: mini-val steps=3 cfg=1.0]" in floats[0]
    assert err.index("3 cells failed") < err.index("1 cell failed")               # the most frequent first


def test_failure_lines_group_by_error_then_model_and_cut_long_cell_lists():
    from bench.cell import Cell, ModelSpec, SamplePlan
    from bench.runner import RunSummary
    s = RunSummary()

    def cell(model, steps, cfg):
        return Cell(suite="s", model=ModelSpec(model, "toy"), dataset="d", dataset_source="d", dataset_options={},
                    steps=steps, cfg=cfg, solver=None, seed=0, plan=SamplePlan(), metrics={}, batch_size=1)
    for k in range(6):
        s.add_failure(cell("a", k, 1.0), "ValueError: weights missing\n  see the docs")
    s.add_failure(cell("b", 1, 1.0), "ValueError: weights missing\n  see the docs")
    s.add_failure(cell("b", 1, 2.0), "OSError: disk full")
    assert s.failed == 8 and len(s.failures) == 8
    assert s.failure_lines() == [
        "7 cells failed: ValueError: weights missing | see the docs [a: d steps=0 cfg=1.0, d steps=1 cfg=1.0, "
        "d steps=2 cfg=1.0, d steps=3 cfg=1.0 and 2 more; b: d steps=1 cfg=1.0]",
        "1 cell failed: OSError: disk full [b: d steps=1 cfg=2.0]"]
