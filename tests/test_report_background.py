"""`bench.report.background`: a call run in a second interpreter gives what it gives inline (the figures written
byte for byte the same), raises what it raises, falls back to running here when the process cannot do it, and is
stopped, not waited for, when the caller fails."""

from __future__ import annotations

import os
import time

import numpy as np
import pandas as pd
import pytest

from bench.cores import usable_cores
from bench.outputs import Output
from bench.report import background
from bench.report import directions as D
from bench.report import plots as P

SPECS = D.from_declared([Output("fid", False, "FID"), Output("is", True, "IS"),
                         Output("clip_score", True, "CLIP Score")])
two_cores = pytest.mark.skipif(usable_cores() < 2, reason="the second process is used only with a second core")


def frame() -> pd.DataFrame:
    rows = [{"suite": "s", "dataset": d, "model": m, "family": "flow", "status": "ok", "steps": s, "cfg": c,
             "solver": None, "seed": 42, "nfe": float(s * 2), "fid": 30.0 - s - c - i, "is": 2.0 + s + i,
             "clip_score": 20.0 + c + s, "latency_s": 0.01 * s}
            for d in ("a", "b") for i, m in enumerate(("one", "multi")) for s in (1, 2, 4) for c in (1.0, 2.0)]
    return pd.DataFrame(rows)


def tree(folder) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted(folder.iterdir())}


@two_cores
def test_figures_drawn_in_the_background_are_the_same_files_and_plots(tmp_path):
    df = frame()
    with background.call(P.make_plots, df, tmp_path / "bg", SPECS) as job:
        assert job.in_background
        bg_plots, bg_skipped = job.result()
    here_plots, here_skipped = P.make_plots(df, tmp_path / "here", SPECS)
    assert [(p.kind, p.dataset, p.title, p.caption, p.png.name) for p in bg_plots] == \
           [(p.kind, p.dataset, p.title, p.caption, p.png.name) for p in here_plots]
    assert bg_skipped == here_skipped
    files = tree(tmp_path / "bg")
    assert len(files) >= 8 and files == tree(tmp_path / "here")
    assert not list(tmp_path.glob("stepbench-background-*"))


@two_cores
def test_an_exception_in_the_background_is_raised_by_result():
    with background.call(int, "not a number") as job:
        assert job.in_background
        with pytest.raises(ValueError, match="not a number"):
            job.result()


def test_small_work_runs_here_at_once(tmp_path):
    job = background.call(np.add, 2, 3, big=False)
    assert not job.in_background and job.result() == 5


@two_cores
def test_the_call_runs_in_another_process():
    with background.call(os.getpid) as job:
        assert job.in_background and job.result() != os.getpid()


@two_cores
def test_the_second_process_prints_no_warning_of_its_own(capfd):
    # run as `python -m` it loaded this module twice and runpy's RuntimeWarning reached every large report's output
    with background.call(os.getpid) as job:
        assert job.in_background
        job.result()
    err = capfd.readouterr().err
    assert "Warning" not in err and "sys.modules" not in err, err


def _not_importable_there(x):
    return x * 2, os.getpid()


_not_importable_there.__module__ = "no_such_module_for_stepbench"     # what the second interpreter imports


@two_cores
def test_a_function_the_process_cannot_import_runs_here_without_a_traceback(capfd):
    with background.call(_not_importable_there, 21) as job:
        assert job.in_background
        assert job.result() == (42, os.getpid())
    assert "Traceback" not in capfd.readouterr().err


@two_cores
def test_a_failure_in_the_caller_stops_the_process_instead_of_waiting():
    t0 = time.perf_counter()
    with pytest.raises(KeyError):
        with background.call(time.sleep, 60) as job:
            assert job.in_background
            raise KeyError("the caller failed")
    assert time.perf_counter() - t0 < 30 and job.proc.poll() is not None
