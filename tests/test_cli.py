from pathlib import Path
from types import SimpleNamespace

import pandas as pd
import pytest

from bench.cli import main

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture
def _bench(capsys):
    """Run the CLI in-process; returns (returncode, stdout, stderr) like a subprocess would."""
    def run(*args):
        code = main(list(args))
        out = capsys.readouterr()
        return SimpleNamespace(returncode=code, stdout=out.out, stderr=out.err)
    return run


def test_run_show_ls_export_report(tmp_path, toy_suite_text, _bench):
    suite = tmp_path / "toy.yaml"
    suite.write_text(toy_suite_text())
    db = str(tmp_path / "b.duckdb")
    r = _bench("run", str(suite), "--db", db, "-q")
    assert r.returncode == 0, r.stderr
    assert "4 cells planned, 4 ran, 0 already stored, 0 failed" in r.stdout
    r = _bench("ls", "--db", db)
    assert r.returncode == 0 and "toy" in r.stdout and " 4 " in r.stdout
    r = _bench("show", "--db", db, "--suite", str(suite))
    lines = r.stdout.strip().splitlines()
    assert r.returncode == 0 and len(lines) == 5 and "fid" in lines[0] and "nfe" in lines[0]
    out = tmp_path / "x.csv"
    r = _bench("export", "--db", db, "--format", "csv", "--out", str(out))
    assert r.returncode == 0
    df = pd.read_csv(out)
    assert len(df) == 4 and {"fid", "is", "kid", "nfe", "latency_s", "key"} <= set(df.columns)
    r = _bench("report", "--db", db, "--suite", "toy", "--out", str(tmp_path / "rep"))
    assert r.returncode == 0, r.stderr
    md = (tmp_path / "rep" / "toy" / "leaderboard.md").read_text()
    assert "## mini-val" in md and "| toy |" in md


def test_missing_store_is_a_clear_error(tmp_path, _bench):
    r = _bench("show", "--db", str(tmp_path / "none.duckdb"))
    assert r.returncode == 2 and "no such result store" in r.stderr and "Traceback" not in r.stderr


@pytest.mark.parametrize("path", sorted(str(p.relative_to(ROOT)) for p in (ROOT / "suites").glob("*.yaml")))
def test_every_shipped_suite_validates_and_prints_its_plan(path, capsys):
    assert main(["validate", str(ROOT / path), "--plan-only"]) == 0     # the plan alone: weights and data may be absent
    out = capsys.readouterr().out
    assert " cells, " in out and "total images:" in out
    if path.endswith("paper.yaml"):
        assert "96 cells" in out and "soflow-xl2 (soflow): the cfg axis is ignored" in out


@pytest.fixture
def one_cell_store(tmp_path, toy_suite_text, _bench):
    suite = tmp_path / "toy.yaml"
    suite.write_text(toy_suite_text(n=2, steps="[1]", cfg="[1.0]"))
    db = tmp_path / "store" / "b.duckdb"
    assert _bench("run", str(suite), "--db", str(db), "-q").returncode == 0
    return db


def test_export_follows_the_extension_and_refuses_a_contradiction(tmp_path, one_cell_store, _bench):
    db = str(one_cell_store)
    r = _bench("export", "--db", db, "--out", str(tmp_path / "y.parquet"))
    assert r.returncode == 0 and "(parquet)" in r.stdout
    assert (tmp_path / "y.parquet").read_bytes()[:4] == b"PAR1" and len(pd.read_parquet(tmp_path / "y.parquet")) == 1
    for fmt, out in (("csv", "x.parquet"), ("parquet", "x.csv")):
        r = _bench("export", "--db", db, "--format", fmt, "--out", str(tmp_path / out))
        assert r.returncode == 2 and "contradicts" in r.stderr and len(r.stderr.splitlines()) == 1
        assert not (tmp_path / out).exists()
    r = _bench("export", "--db", db, "--out", str(tmp_path / "x.txt"))
    assert r.returncode == 2 and "cannot tell the format" in r.stderr
    assert _bench("export", "--db", db, "--format", "csv", "--out", str(tmp_path / "x.txt")).returncode == 0
    assert len(pd.read_csv(tmp_path / "x.txt")) == 1


def test_export_default_file_is_beside_the_store(tmp_path, one_cell_store, _bench, monkeypatch):
    monkeypatch.chdir(tmp_path)
    r = _bench("export", "--db", str(one_cell_store))
    assert r.returncode == 0 and (one_cell_store.parent / "export.csv").is_file()
    assert not (tmp_path / "results").exists()
    assert _bench("export", "--db", str(one_cell_store), "--format", "parquet").returncode == 0
    assert (one_cell_store.parent / "export.parquet").read_bytes()[:4] == b"PAR1"


def test_ls_without_a_kind_still_lists_stored_suites(one_cell_store, _bench):
    r = _bench("ls", "--db", str(one_cell_store))
    assert r.returncode == 0 and "toy" in r.stdout and "adapters" not in r.stdout
