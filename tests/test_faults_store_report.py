"""Hostile conditions around the store and the report: disk full, read-only folders, spreadsheet formula
injection, very long names, repeated sweep values, and float32-exact metric numerics (issue 23, items 2, 3, 5, 6,
7, 11). Each ends in one clear line and exit 2 (or a safe file), no traceback, nothing stored lost."""

import csv
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import duckdb
import pandas as pd
import pytest
import torch

import bench
from bench.cli import main
from bench.metrics.base import STRICT_NUMERICS, PerSampleAccumulator, fixed_shape_forward, numerics_flags
from bench.outputs import Output
from bench.report.sanitize import MAX_NAME, file_name, spreadsheet_safe
from bench.store import ResultStore, StoreError, StoreWriteError
from bench.suite import Suite, SuiteError
from tests.conftest import ROOT, TOY_SUITE

FID = Output("fid", False, "FID")
NO_SPACE = 'IO Error: Could not write file "b.duckdb.wal": No space left on device'


def _suite_file(tmp: Path, steps="[1, 2]", keep=2) -> Path:
    p = tmp / "s.yaml"
    p.write_text(TOY_SUITE.format(n=4, steps=steps, cfg="[1.0]").replace("keep_samples: 2", f"keep_samples: {keep}"))
    os.chmod(p, 0o644)
    return p


def _run(capsys, *argv) -> tuple[int, str]:
    code = main(["run", *map(str, argv), "--include", "tests/toy_extractor.py", "-q"])
    return code, capsys.readouterr().err


def _error_lines(err: str) -> list[str]:
    return [ln for ln in err.splitlines() if ln.startswith("error:")]


def _ok_cells(db) -> int:
    df = bench.load(db)
    return int((df["status"] == "ok").sum())


# -- 2. disk full ----------------------------------------------------------------------------------------------
class _Con:
    """A store connection whose COMMIT fails as a full disk makes DuckDB's fail (the transaction is then over,
    so ROLLBACK fails too: 'no transaction is active')."""

    def __init__(self, con):
        self._con, self.commits = con, 0

    def execute(self, sql, *a):
        if sql == "COMMIT":
            self.commits += 1
            self._con.execute("ROLLBACK")             # what DuckDB does on a failed commit
            raise duckdb.IOException(NO_SPACE)
        return self._con.execute(sql, *a)

    def __getattr__(self, name):
        return getattr(self._con, name)


def _cell_row(model="m", dataset="d", suite="s"):
    return {"run_id": "r", "suite": suite, "model_id": model, "adapter": "toy", "family": "flow", "dataset": dataset,
            "steps": 1, "cfg": 1.0, "solver": None, "seed": 1, "plan": "p", "n": 4, "status": "ok", "error": None,
            "config": {}, "provenance": {}, "seconds": 1.0}


def test_a_failed_commit_reports_its_own_cause_not_the_failed_rollback(tmp_path):
    """Disk full by patching the write path: COMMIT raises DuckDB's own 'No space left on device'."""
    with ResultStore(tmp_path / "b.duckdb") as st:
        st.write("k0", _cell_row("kept"), {"fid": (1.0, "fid", "v", {}, FID)}, {})
        real, st.con = st.con, _Con(st.con)
        with pytest.raises(StoreWriteError) as e:
            st.write("k1", _cell_row("lost"), {"fid": (2.0, "fid", "v", {}, FID)}, {})
        st.con = real
    msg = str(e.value)
    assert "No space left on device" in msg and str(tmp_path / "b.duckdb") in msg and "rollback" not in msg.lower()
    assert "\n" not in msg
    assert _ok_cells(tmp_path / "b.duckdb") == 1


def test_disk_full_mid_run_stops_with_one_line_and_keeps_stored_cells(tmp_path, capsys, monkeypatch):
    """Disk full by patching the write path (`ResultStore._write_cell`): the second cell's write fails."""
    db, calls = tmp_path / "b.duckdb", []
    real = ResultStore._write_cell

    def flaky(self, *a):
        calls.append(1)
        if len(calls) == 2:
            raise duckdb.IOException(NO_SPACE)
        return real(self, *a)

    monkeypatch.setattr(ResultStore, "_write_cell", flaky)
    code, err = _run(capsys, _suite_file(tmp_path, steps="[1, 2, 3]"), "--db", db)
    assert code == 2, err
    lines = _error_lines(err)
    assert len(lines) == 1 and "Traceback" not in err, err
    assert str(db) in lines[0] and "No space left on device" in lines[0] and "after storing 1 cell " in lines[0]
    monkeypatch.undo()
    assert _ok_cells(db) == 1


def test_disk_full_on_a_real_small_tmpfs(tmp_path, capsys):
    """A real 1 MiB tmpfs (needs `mount -t tmpfs`, i.e. root with CAP_SYS_ADMIN; skipped where it fails): runs
    fill it until a write fails; then one line naming the store and 'No space left on device', exit 2, and every
    cell stored before is still there and readable."""
    mnt = tmp_path / "mnt"
    mnt.mkdir()
    if shutil.which("mount") is None or subprocess.run(["mount", "-t", "tmpfs", "-o", "size=1m", "tmpfs", str(mnt)],
                                                        capture_output=True).returncode != 0:
        pytest.skip("cannot mount a tmpfs here (needs privileges); the patched variants above cover the write path")
    try:
        suite, db = _suite_file(tmp_path, steps="[1, 2, 3, 4, 5, 6]", keep=64), mnt / "b.duckdb"
        before, code, err = 0, 0, ""
        for _ in range(8):
            code, err = _run(capsys, suite, "--db", db, "--overwrite", "always")
            if code != 0:
                break
            before = _ok_cells(db)
        assert code == 2, err
        lines = _error_lines(err)
        assert len(lines) == 1 and "Traceback" not in err and "No space left on device" in lines[0], err
        assert str(db) in lines[0]
        assert before > 0 and _ok_cells(db) == before       # --overwrite always: the old rows were not lost
    finally:
        subprocess.run(["umount", str(mnt)], capture_output=True)


# -- 3. read-only places ---------------------------------------------------------------------------------------
def _no_override(cmd: list[str]) -> list[str]:
    """Root without the capabilities that override file permissions (a non-root user cannot run this venv's
    Python here: it lives under /root, mode 0700)."""
    caps = "-dac_override,-dac_read_search"
    return ["setpriv", f"--inh-caps={caps}", f"--bounding-set={caps}", *cmd]


@pytest.fixture
def ro_folder():
    if shutil.which("setpriv") is None:
        pytest.skip("no setpriv")
    d = Path(tempfile.mkdtemp(dir="/tmp"))
    os.chmod(d, 0o755)
    ro = d / "ro"
    ro.mkdir()
    ResultStore(ro / "b.duckdb").close()
    os.chmod(ro, 0o555)
    probe = subprocess.run(_no_override(["touch", str(ro / "probe")]), capture_output=True)
    if probe.returncode == 0:
        shutil.rmtree(d, ignore_errors=True)
        pytest.skip("setpriv could not drop the permission-override capabilities here")
    yield d
    os.chmod(ro, 0o755)
    shutil.rmtree(d, ignore_errors=True)


@pytest.mark.parametrize("where,expect", [("ro/new/b.duckdb", "cannot create the store's folder"),
                                          ("ro/b.duckdb", "is not writable")])
def test_read_only_folder_gives_one_line_and_exit_2(ro_folder, where, expect):
    """chmod 555 plus a subprocess without CAP_DAC_OVERRIDE (see `_no_override`): a real permission refusal."""
    suite = _suite_file(ro_folder)
    db = ro_folder / where
    out = subprocess.run(_no_override([sys.executable, "-m", "bench.cli", "run", str(suite), "--db", str(db), "-q",
                                       "--include", "tests/toy_extractor.py"]),
                         cwd=ROOT, capture_output=True, text=True, timeout=120,
                         env={**os.environ, "OMP_NUM_THREADS": "1"})
    lines = _error_lines(out.stderr)
    assert out.returncode == 2 and len(lines) == 1 and "Traceback" not in out.stderr, out.stderr
    assert str(db) in lines[0] and expect in lines[0] and "--db" in lines[0]


def test_read_only_refusals_by_patching(tmp_path, monkeypatch):
    """The same refusals in process, by patching mkdir and os.access (root passes every permission check)."""
    monkeypatch.setattr(Path, "mkdir", lambda self, *a, **k: (_ for _ in ()).throw(PermissionError(13, "Permission "
                                                                                                    "denied")))
    with pytest.raises(StoreError, match="cannot create the store's folder .*Permission denied"):
        ResultStore(tmp_path / "new" / "b.duckdb")
    monkeypatch.undo()
    ResultStore(tmp_path / "b.duckdb").close()
    monkeypatch.setattr("bench.store.os.access", lambda *a: False)
    with pytest.raises(StoreError, match="is not writable, so stepbench cannot open the store for writing"):
        ResultStore(tmp_path / "b.duckdb")
    ResultStore(tmp_path / "b.duckdb", read_only=True).close()    # reading needs no writable folder


# -- 5. spreadsheet formula injection --------------------------------------------------------------------------
EVIL_IDS = ['=HYPERLINK("http://x","y")', "+SUM(1,2)", "@SUM(1,2)", "-2+3", "\tTAB", "\rCR"]


def _evil_store(db: Path, suite="s", dataset="d") -> None:
    with ResultStore(db) as st:
        for i, m in enumerate(["plain", *EVIL_IDS]):
            row = {**_cell_row(m, dataset, suite), "cfg": -1.5 if i == 0 else 1.0, "steps": 1 + i}
            st.write(f"k{i}", row, {"fid": (-2.0 + i, "fid", "v", {}, FID)}, {})


def _csv_cells(path: Path) -> list[list[str]]:
    with open(path, newline="", encoding="utf-8") as f:
        return list(csv.reader(f))


def _assert_safe(rows: list[list[str]]) -> None:
    header, body = rows[0], rows[1:]
    col = {h: i for i, h in enumerate(header)}
    models = [r[col["model"]] for r in body]
    assert sorted(models) == sorted(["plain", *("'" + m for m in EVIL_IDS)])
    for r in body:
        for cell in r:
            assert not cell.startswith(("=", "+", "@", "\t", "\r")), r
            if cell.startswith("-"):                       # only numbers may start with a minus
                float(cell)
    assert "-1.5" in [r[col["cfg"]] for r in body]          # numbers untouched
    assert {r[col["fid"]] for r in body} >= {"-2.0", "-1.0"}


def test_export_csv_prefixes_formula_text_and_leaves_numbers(tmp_path, capsys):
    db = tmp_path / "b.duckdb"
    _evil_store(db)
    assert main(["export", "--db", str(db), "--out", str(tmp_path / "x.csv")]) == 0
    _assert_safe(_csv_cells(tmp_path / "x.csv"))
    assert main(["export", "--db", str(db), "--out", str(tmp_path / "x.parquet")]) == 0
    assert set(pd.read_parquet(tmp_path / "x.parquet")["model"]) == {"plain", *EVIL_IDS}    # Parquet: exact


def test_sweep_csv_prefixes_formula_text(tmp_path, capsys):
    db = tmp_path / "b.duckdb"
    _evil_store(db)
    assert main(["report", "--db", str(db), "--out", str(tmp_path / "r")]) == 0
    _assert_safe(_csv_cells(tmp_path / "r" / "s" / "sweep.csv"))


def test_spreadsheet_safe_touches_only_formula_text():
    df = pd.DataFrame({"a": ["=1", "x", None, "-", 3], "n": [-1.0, 2.0, 3.0, 4.0, 5.0], "=c": [1, 2, 3, 4, 5]})
    out = spreadsheet_safe(df)
    assert list(out["a"][:2]) == ["'=1", "x"] and out["a"][2] is None and out["a"][3] == "'-" and out["a"][4] == 3
    assert out["n"].tolist() == df["n"].tolist() and list(out.columns) == ["a", "n", "'=c"]
    assert df["a"][0] == "=1"                               # the caller's frame is not changed


# -- 6. long names ---------------------------------------------------------------------------------------------
def test_report_with_very_long_suite_and_dataset_names(tmp_path, capsys):
    suite, dataset = "s" * 10_000, "d" * 300
    db = tmp_path / "b.duckdb"
    _evil_store(db, suite=suite, dataset=dataset)
    assert main(["report", "--db", str(db), "--out", str(tmp_path / "r")]) == 0, capsys.readouterr().err
    written = [p for p in (tmp_path / "r").rglob("*")]
    assert written and all(len(p.name.encode()) <= 255 for p in written)
    (folder,) = (tmp_path / "r").iterdir()
    assert folder.name == file_name(suite) and len(folder.name) <= MAX_NAME
    assert any(p.suffix == ".png" for p in folder.iterdir())
    page = (folder / "index.html").read_text(encoding="utf-8")
    assert suite in page and dataset in page                # the page shows the full names


def test_file_name_keeps_short_names_and_hashes_changed_ones():
    assert file_name("mini-val") == "mini-val"
    a, b = file_name("x" * 500 + "a"), file_name("x" * 500 + "b")
    assert a != b and len(a) <= MAX_NAME and len(b) <= MAX_NAME
    assert file_name("a/b") == "a_b-" + __import__("hashlib").sha1(b"a/b").hexdigest()[:6]   # as before
    assert file_name("y" * MAX_NAME) == "y" * MAX_NAME and file_name("y" * (MAX_NAME + 1)) != "y" * (MAX_NAME + 1)


# -- 7. repeated sweep values ----------------------------------------------------------------------------------
@pytest.mark.parametrize("field,text,where", [
    ("seed", "seed: [7, 7]", "seed: lists the seed 7 more than once"),
    ("steps", "steps: [4, 4]", "models[0].steps: lists the step count 4 more than once"),
    ("cfg", "cfg: [1.0, 2.0, 1.0]", "models[0].cfg: lists the guidance scale 1.0 more than once"),
    ("solver", "solver: [euler, heun, euler]", "models[0].solver: lists the solver 'euler' more than once"),
])
def test_repeated_sweep_values_are_refused(field, text, where):
    base = TOY_SUITE.format(n=4, steps="[1]", cfg="[1.0]")
    if field == "seed":
        bad = base.replace("seed: 42", text)
    elif field == "solver":
        bad = base + "    " + text + "\n"
    else:
        bad = base.replace(f"    {field}: [1{'.0' if field == 'cfg' else ''}]", "    " + text)
    assert bad != base
    with pytest.raises(SuiteError) as e:
        Suite.parse(bad, "dup.yaml")
    assert any(where in ln for ln in e.value.lines), e.value.lines
    assert len(e.value.lines) == 1


def test_distinct_sweep_values_still_plan_every_cell():
    text = TOY_SUITE.format(n=4, steps="[1, 2]", cfg="[1.0, 2.0]").replace("seed: 42", "seed: [1, 2]")
    assert len(Suite.parse(text, "ok.yaml").expand()) == 8


# -- 11. float32-exact metric numerics -------------------------------------------------------------------------
@pytest.fixture
def tf32_on():
    before = numerics_flags()
    torch.set_float32_matmul_precision("high")
    torch.backends.cuda.matmul.allow_tf32 = True
    torch.backends.cudnn.allow_tf32 = True
    yield numerics_flags()
    torch.set_float32_matmul_precision(before["float32_matmul_precision"])
    torch.backends.cuda.matmul.allow_tf32 = before["matmul_allow_tf32"]
    torch.backends.cudnn.allow_tf32 = before["cudnn_allow_tf32"]


def test_metric_forwards_run_without_tf32_and_restore_the_flags(tf32_on):
    assert tf32_on == {"matmul_allow_tf32": True, "cudnn_allow_tf32": True, "float32_matmul_precision": "high"}
    seen = []

    def forward(x):                                 # a metric network that records the flags it runs under
        seen.append(numerics_flags())
        return x * 2

    out = fixed_shape_forward(forward, torch.ones(5, 3), 2)[0]
    assert out.shape == (5, 3) and seen and all(s == STRICT_NUMERICS for s in seen)
    assert numerics_flags() == tf32_on

    acc = PerSampleAccumulator(lambda im, y, p: (seen.append(numerics_flags()), {"f": im.float()})[1],
                               lambda rows, labels: {"n": float(len(rows["f"]))}, chunk=2)
    seen.clear()
    acc.update(torch.zeros(3, 2), torch.zeros(3), ["", "", ""], torch.arange(3))
    assert acc.result() == {"n": 3.0} and seen and all(s == STRICT_NUMERICS for s in seen)
    assert numerics_flags() == tf32_on

    def boom(x):
        raise RuntimeError("forward failed")

    with pytest.raises(RuntimeError):
        fixed_shape_forward(boom, torch.ones(2, 3), 2)
    assert numerics_flags() == tf32_on                # restored after an error too


def test_run_provenance_records_generation_and_metric_precision(tmp_path, capsys, tf32_on):
    db = tmp_path / "b.duckdb"
    code, err = _run(capsys, _suite_file(tmp_path, steps="[1]"), "--db", db)
    assert code == 0, err
    with ResultStore(db, read_only=True) as st:
        env = st.frame("SELECT environment FROM runs")["environment"][0]
    import json
    num = json.loads(env)["numerics"]
    assert num == {"mode": "strict", "generation": tf32_on, "metrics": STRICT_NUMERICS}
