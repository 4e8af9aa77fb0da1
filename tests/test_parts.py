"""`bench run --part i/N` (`bench.parts`): the N parts of a suite are disjoint and cover every cell, are the same
in every process, keep expansion order and are balanced by declared cost (NFE x samples) on the paper's grid
(plan only: the declared NFE and the dataset cards' sizes, no weights or data); bad --part values are one line."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from bench import parts
from bench.cell import canonical_json
from bench.cli import main
from bench.runner import Runner
from bench.store import ResultStore
from bench.suite import Suite

ROOT = Path(__file__).resolve().parent.parent
PAPER = ROOT / "suites" / "paper.yaml"
NS = (1, 2, 3, 4, 7, 16, 95, 96, 97, 200)
BALANCE = 1.05          # heaviest part / mean part on paper.yaml for N in 2..16 (measured: <= 1.003)
LPT = 4 / 3             # Graham's bound: heaviest part <= 4/3 * max(mean part, costliest cell), for every N


@pytest.fixture(scope="module")
def paper():
    cells = Suite.load(PAPER).expand()
    return cells, parts.costs(cells)


def ident(cell) -> str:
    return canonical_json(cell.config())


@pytest.mark.parametrize("n", NS)
def test_parts_are_disjoint_cover_every_cell_and_keep_expansion_order(paper, toy_suite_text, n):
    toy = Suite.parse(toy_suite_text(steps="[1, 2, 3]", cfg="[1.0, 2.0, 4.0]"), "toy.yaml").expand()
    for cells in (paper[0], toy):
        ps = parts.partition(cells, n)
        assert len(ps) == n
        flat = [j for p in ps for j in p]
        assert sorted(flat) == list(range(len(cells))), "every cell in exactly one part"
        assert all(p == sorted(p) for p in ps), "a part keeps the expansion order"
        selected = [parts.select(cells, i, n) for i in range(n)]
        assert sorted(ident(c) for s in selected for c in s) == sorted(ident(c) for c in cells)
        assert (min(map(len, ps)) == 0) == (n > len(cells)), "a part is empty only when N exceeds the cells"


def test_cost_is_declared_nfe_times_planned_samples(paper):
    cells, cost = paper
    by = {(c.model.id, c.dataset, c.steps, c.cfg): k for c, k in zip(cells, cost)}
    assert by[("sit-xl2", "imagenet-val", 25, 7.0)] == 50 * 50_000      # 2 NFE per step with CFG
    assert by[("flux.1-dev", "imagenet-v2", 1, 3.5)] == 1 * 10_000      # embedded guidance: 1 NFE
    assert by[("rae-ditdh-xl", "imagenet-val", 25, 7.0)] == 25 * 50_000   # NFE NaN before loading: the steps
    assert by[("imf-xl2", "relaionet", 1, 6.0)] == 1 * 30_000            # no card size: the sized cells' mean


@pytest.mark.parametrize("n", (2, 4, 8, 16))
def test_parts_of_the_paper_grid_are_balanced_by_declared_cost(paper, n):
    cells, cost = paper
    loads = [sum(cost[j] for j in p) for p in parts.partition(cells, n, cost)]
    mean = sum(cost) / n
    assert max(loads) <= BALANCE * mean, (n, max(loads) / mean)
    if n >= 4:      # the cost model is what balances: dealing cells out in turn (equal counts) piles up the 25-step
        dealt = [sum(cost[i::n]) for i in range(n)]                     # cells in some parts (~2x the mean)
        assert max(dealt) > 1.5 * mean


def test_the_heaviest_part_stays_within_grahams_bound_for_every_n(paper):
    cells, cost = paper
    for n in range(1, 130):
        loads = [sum(cost[j] for j in p) for p in parts.partition(cells, n, cost)]
        assert max(loads) <= LPT * max(sum(cost) / n, max(cost)), n


def test_the_partition_is_the_same_in_another_process(paper):
    """What every machine computes: another interpreter (other hash seed) gets the same parts of paper.yaml."""
    cells, cost = paper
    here = [[ident(cells[j]) for j in p] for p in parts.partition(cells, 16, cost)]
    code = ("import json, sys; from bench import parts; from bench.cell import canonical_json; "
            "from bench.suite import Suite; cells = Suite.load(sys.argv[1]).expand(); "
            "print(json.dumps([[canonical_json(cells[j].config()) for j in p] for p in parts.partition(cells, 16)]))")
    env = {**os.environ, "PYTHONPATH": str(ROOT), "PYTHONHASHSEED": "12345", "OMP_NUM_THREADS": "1"}
    r = subprocess.run([sys.executable, "-c", code, str(PAPER)], cwd=ROOT, capture_output=True, text=True, env=env,
                       timeout=300)
    assert r.returncode == 0, r.stderr[-2000:]
    assert json.loads(r.stdout) == here


@pytest.mark.parametrize("bad", ["4/4", "-1/4", "1/0", "a/b", "3", "1/2/3", "", " /4", "1.0/4"])
def test_a_bad_part_is_one_line_and_exit_2(tmp_path, toy_suite_text, capsys, bad):
    suite = tmp_path / "toy.yaml"
    suite.write_text(toy_suite_text())
    db = tmp_path / "b.duckdb"
    with pytest.raises(parts.PartError):
        parts.parse_part(bad)
    for cmd in (["run", str(suite), "--db", str(db), "-q", f"--part={bad}"], ["validate", str(suite), f"--part={bad}"]):
        assert main(cmd) == 2
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and err[0].startswith("error: --part"), err
    assert not db.exists(), "a refused --part never opens the store"


def test_parse_part_reads_zero_based_indices():
    assert parts.parse_part("0/16") == (0, 16) and parts.parse_part("15/16") == (15, 16)
    assert parts.parse_part(" 3 / 4 ") == (3, 4)


def test_validate_prints_each_parts_plan_and_the_parts_add_up(capsys):
    total = 0
    for i in range(4):
        assert main(["validate", str(PAPER), "--part", f"{i}/4", "--max-rows", "200", "--plan-only"]) == 0
        out = capsys.readouterr().out
        head = out.splitlines()[0]
        assert head.startswith(f"part {i}/4: ") and " of 96 cells" in head
        k = int(head.split(": ")[1].split(" of ")[0])
        assert f"{k} cells, 3 datasets" in out
        total += k
    assert total == 96


def test_the_runner_runs_only_its_part(tmp_path, toy_suite_text):
    suite = Suite.parse(toy_suite_text(n=2, steps="[1, 2, 3]", cfg="[1.0]"), "toy.yaml")
    cells = suite.expand()
    mine = parts.select(cells, 1, 2)
    runner = Runner(suite, db=tmp_path / "p.duckdb", progress=False, part=(1, 2), cache_dir=tmp_path / "shared")
    s = runner.run()
    assert (s.planned, s.ran, s.failed) == (len(mine), len(mine), 0) and 0 < len(mine) < len(cells)
    with ResultStore(tmp_path / "p.duckdb", read_only=True) as st:
        stored = sorted(st.frame("SELECT steps FROM cells")["steps"].tolist())
        env = json.loads(st.frame("SELECT environment FROM runs")["environment"][0])
    assert stored == sorted(c.steps for c in mine)
    assert env["part"] == "1/2"
    assert list((tmp_path / "shared" / "refstats").glob("*.safetensors")), "--cache holds the reference statistics"
    assert not (tmp_path / "cache").exists()
