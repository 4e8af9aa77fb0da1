"""Saved MMHM bounds: computed from one store, written, read back (ours and the paper's JSON shape) and applied
to another store; `bench show` / `bench report` --mmhm-bounds / --save-mmhm-bounds; the bounds and stability
note beside an MMHM table (bench.report.mmhm_view).

Store A's full cells of dataset "d" span fid [10, 30], is [1, 3], clip [20, 30], pick [2, 6]; store B's cells
are scored against those bounds by hand below.
"""

import json
import math

import pandas as pd
import pytest

import bench
from bench import composite as C
from bench.cli import main
from bench.outputs import Output
from bench.report import mmhm_view as V
from bench.store import ResultStore

EPS = 1e-3
OUTPUTS = {o.name: o for o in (Output("fid", False, "FID"), Output("is", True, "IS"),
                               Output("clip_score", True, "CLIP Score"), Output("pickscore", True, "PickScore"))}
# (model, family, steps, limit) -> (fid, is, clip, pick)
A = {("a1", "flow", 1, None): (10.0, 3.0, 30.0, 6.0),
     ("a2", "flow", 1, None): (30.0, 1.0, 20.0, 2.0),
     ("a3", "flow", 1, None): (20.0, 2.0, 25.0, 4.0),
     ("rr", "real", None, None): (0.5, 9.0, 40.0, 9.0)}          # a floor: shapes no bounds
B = {("b1", "flow", 1, None): (20.0, 2.0, 25.0, 4.0),            # u = 0.5 for every input
     ("b2", "flow", 1, None): (5.0, 4.0, 35.0, 8.0),             # beyond A's bounds: u = 1.25, 1.5, 1.5, 1.5
     ("b3", "flow", 1, None): (30.0, 3.0, 30.0, 6.0),            # u = 0, 1, 1, 1
     ("b1", "flow", 1, 2): (16.0, 1.0, 21.0, 3.0),               # a smoke run (limit 2): its own bounds
     ("b2", "flow", 1, 2): (12.0, 2.0, 23.0, 5.0)}
HAND_B = {"b1": 4 / (4 / (EPS + 0.5)),
          "b2": 4 / (1 / (EPS + 1.25) + 3 / (EPS + 1.5)),
          "b3": 4 / (1 / EPS + 3 / (EPS + 1))}


def build(db, cells, dataset="d", suite="s"):
    with ResultStore(db) as st:
        for (model, family, steps, limit), vals in cells.items():
            config = {"model": model, "steps": steps, **({"limit": limit} if limit else {})}
            row = {"run_id": "r", "suite": suite, "model_id": model, "adapter": "toy", "family": family,
                   "dataset": dataset, "steps": steps, "cfg": 1.0, "solver": None, "seed": 42, "plan": "p", "n": 9,
                   "status": "ok", "error": None, "config": config, "provenance": {}, "seconds": 1.0}
            metrics = {n: (v, "src", "v1", {}, OUTPUTS[n]) for n, v in zip(OUTPUTS, vals)}
            st.write(f"{suite}-{dataset}-{model}-{limit}", row, metrics, {"nfe": (1.0, "evals/image")})
    return db


@pytest.fixture
def stores(tmp_path):
    return build(tmp_path / "a.duckdb", A), build(tmp_path / "b.duckdb", B)


def full(df, model):
    r = df[(df["model"] == model) & df["limit"].isna()]
    assert len(r) == 1
    return float(r["mmhm"].iloc[0])


def smoke(df, model):
    return float(df[(df["model"] == model) & (df["limit"] == 2)]["mmhm"].iloc[0])


def test_bounds_saved_from_store_a_and_applied_to_store_b_equal_a_hand_computation(stores, tmp_path):
    a, b = stores
    used = C.bounds_used(bench.load(a))
    assert used == {"d": {"fid": [10, 30], "is": [1, 3], "clip": [20, 30], "pick": [2, 6]}}
    C.write_bounds_file(used, tmp_path / "a.json", source="store A")
    assert C.read_bounds_file(tmp_path / "a.json") == used
    own = bench.load(b)
    got = bench.load(b, mmhm_bounds=tmp_path / "a.json")
    for m, want in HAND_B.items():
        assert full(got, m) == pytest.approx(want, rel=1e-12)
    assert full(got, "b2") > 1.001, "reused bounds are not clipped"
    assert full(own, "b1") != pytest.approx(HAND_B["b1"]), "B's own bounds give other values"
    # the smoke cells keep the bounds of their own cap: b1 worst on all four, b2 best on all four
    for df in (own, got):
        assert smoke(df, "b1") == pytest.approx(EPS) and smoke(df, "b2") == pytest.approx(1 + EPS)
    # a dict works as a path does, per dataset or for every dataset ("*")
    for arg in (used, {"*": used["d"]}, used["d"], json.loads((tmp_path / "a.json").read_text())):
        assert full(bench.load(b, mmhm_bounds=arg), "b2") == pytest.approx(HAND_B["b2"], rel=1e-12)


def test_bounds_used_reproduces_the_store_computed_values_exactly(stores, tmp_path):
    _, b = stores
    own = bench.load(b)
    C.write_bounds_file(C.bounds_used(own), tmp_path / "b.json")
    again = bench.load(b, mmhm_bounds=tmp_path / "b.json")
    pd.testing.assert_series_equal(again["mmhm"], own["mmhm"], check_exact=True)
    assert C.bounds_used(again, C.read_bounds_file(tmp_path / "b.json")) == C.bounds_used(own)


def test_full_floats_are_written(tmp_path):
    b = {"d": {"fid": [0.1 + 0.2, 1 / 3], "is": [1.0, 2.0], "clip": [math.pi, 4.0], "pick": [-1e-17, 1e300]}}
    C.write_bounds_file(b, tmp_path / "f.json")
    assert C.read_bounds_file(tmp_path / "f.json") == b           # exact: nothing rounded


def test_the_papers_bounds_file_reads_with_its_five_significant_figures(stores, tmp_path):
    _, b = stores
    paper = {"FID": {"min": 10.000, "max": 30.000}, "IS": {"min": 1.0000, "max": 3.0000},
             "CLIP Score": {"min": 20.000, "max": 30.000}, "Pick Score": {"min": 1.9999, "max": 6.0001}}
    (tmp_path / "paper.json").write_text(json.dumps(paper))
    got = C.read_bounds_file(tmp_path / "paper.json")
    assert got == {"*": {"fid": [10.0, 30.0], "is": [1.0, 3.0], "clip": [20.0, 30.0], "pick": [1.9999, 6.0001]}}
    u_pick = (4.0 - 1.9999) / (6.0001 - 1.9999)
    want = 4 / (3 / (EPS + 0.5) + 1 / (EPS + u_pick))
    assert full(bench.load(b, mmhm_bounds=tmp_path / "paper.json"), "b1") == pytest.approx(want, rel=1e-12)


def test_the_older_single_set_file_applies_to_every_dataset(tmp_path):
    C.save_bounds({"fid": [10, 30], "is": [1, 3], "clip": [20, 30], "pick": [2, 6]}, tmp_path / "old.json")
    assert C.read_bounds_file(tmp_path / "old.json") == {"*": {"fid": [10, 30], "is": [1, 3], "clip": [20, 30],
                                                                "pick": [2, 6]}}


@pytest.mark.parametrize("text, says", [
    ("{", "not valid JSON"),
    ("[1, 2]", "expected a JSON object"),
    ('{"datasets": {"d": {"fid": [1, 2], "is": [1, 2], "clip": [1, 2]}}}', "lacks pick"),
    ('{"FID": {"min": 1, "max": 2}, "IS": {"min": 1}, "CLIP Score": {"min": 1, "max": 2}, '
     '"Pick Score": {"min": 1, "max": 2}}', "IS must give a numeric min and max"),
    ('{"bounds": {"fid": [3, 2], "is": [1, 2], "clip": [1, 2], "pick": [1, 2]}}', "fid min 3.0 is above its max"),
    ('{"bounds": {"fid": ["a", 2], "is": [1, 2], "clip": [1, 2], "pick": [1, 2]}}', "fid must give a numeric"),
    ('{"bounds": {"fid": [1, 2, 3], "is": [1, 2], "clip": [1, 2], "pick": [1, 2]}}', "fid must give a numeric"),
    ('{"eps": 0.01, "bounds": {"fid": [1, 2], "is": [1, 2], "clip": [1, 2], "pick": [1, 2]}}', "eps 0.01"),
    ('{"datasets": {}}', "at least one dataset"),
    ('{"hello": 1}', "not an MMHM bounds file"),
])
def test_bad_bounds_files_name_the_file_and_what_is_wrong(tmp_path, text, says):
    p = tmp_path / "bad.json"
    p.write_text(text)
    with pytest.raises(ValueError, match=says) as e:
        C.read_bounds_file(p)
    assert str(e.value).startswith(str(p)) and "\n" not in str(e.value)


def test_a_dataset_the_bounds_do_not_cover_is_named(stores):
    _, b = stores
    with pytest.raises(ValueError, match="no MMHM bounds for dataset 'd' .*cover other"):
        bench.load(b, mmhm_bounds={"other": {"fid": [1, 2], "is": [1, 2], "clip": [1, 2], "pick": [1, 2]}})


# -- CLI --------------------------------------------------------------------------------------------------------
def _mmhm_column(out: str) -> list[str]:
    lines = out.strip().splitlines()
    col = lines[0].split().index("mmhm")
    return [ln.split()[col] for ln in lines[1:]]


def test_cli_report_saves_the_bounds_show_reuses_them_to_the_same_mmhm(stores, tmp_path, capsys):
    _, b = stores
    f = tmp_path / "f.json"
    assert main(["report", "--db", str(b), "--out", str(tmp_path / "r"), "--save-mmhm-bounds", str(f)]) == 0
    assert C.read_bounds_file(f) == C.bounds_used(bench.load(b))
    capsys.readouterr()
    assert main(["show", "--db", str(b)]) == 0
    plain = capsys.readouterr().out
    assert main(["show", "--db", str(b), "--mmhm-bounds", str(f)]) == 0
    assert capsys.readouterr().out == plain


def test_cli_show_applies_store_a_bounds_to_store_b(stores, tmp_path, capsys):
    a, b = stores
    f = tmp_path / "a.json"
    assert main(["show", "--db", str(a), "--save-mmhm-bounds", str(f)]) == 0
    assert "wrote MMHM bounds of 1 dataset(s)" in capsys.readouterr().err
    assert main(["show", "--db", str(b), "--mmhm-bounds", str(f)]) == 0
    df = bench.load(b)
    shown = _mmhm_column(capsys.readouterr().out)
    want = [f"{HAND_B[m]:.4g}" if pd.isna(lim) else f"{v:.4g}" for m, lim, v in
            zip(df["model"], df["limit"], df["mmhm"])]
    assert shown == want


@pytest.mark.parametrize("cmd", ["show", "report"])
@pytest.mark.parametrize("text, says", [("{", "not valid JSON"), ('{"bounds": {"fid": [1, 2]}}', "lacks is"),
                                        ('{"datasets": {"x": {"fid": [1, 2], "is": [1, 2], "clip": [1, 2], '
                                         '"pick": [1, 2]}}}', "no MMHM bounds for dataset 'd'")])
def test_cli_bad_bounds_file_is_one_line_and_exit_2(stores, tmp_path, capsys, cmd, text, says):
    _, b = stores
    f = tmp_path / "bad.json"
    f.write_text(text)
    argv = [cmd, "--db", str(b), "--mmhm-bounds", str(f)] + (["--out", str(tmp_path / "r")] if cmd == "report"
                                                             else [])
    assert main(argv) == 2
    cap = capsys.readouterr()
    lines = cap.err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(f"error: {f}") and says in lines[0], cap.err
    assert not (tmp_path / "r").exists()


def test_cli_missing_file_and_unwritable_save_are_one_line(stores, tmp_path, capsys):
    _, b = stores
    assert main(["show", "--db", str(b), "--mmhm-bounds", str(tmp_path / "nope.json")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "nope.json: cannot read MMHM bounds" in err[0]
    assert main(["show", "--db", str(b), "--save-mmhm-bounds", str(tmp_path / "no" / "dir" / "f.json")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "--save-mmhm-bounds" in err[0] and "cannot write" in err[0]


def test_cli_dataset_filter_needs_only_the_selected_datasets_bounds(tmp_path, capsys):
    db = build(tmp_path / "two.duckdb", B, dataset="d")
    build(db, A, dataset="e")
    f = tmp_path / "e.json"
    (tmp_path / "e.json").write_text(json.dumps({"datasets": {"e": C.bounds_used(bench.load(db))["e"]}}))
    assert main(["show", "--db", str(db), "--mmhm-bounds", str(f)]) == 2
    assert "no MMHM bounds for dataset 'd'" in capsys.readouterr().err
    assert main(["show", "--db", str(db), "--dataset", "e", "--mmhm-bounds", str(f)]) == 0


# -- the note beside an MMHM table ------------------------------------------------------------------------------
def _frame(rows):
    """One row per (model, fid, pick); IS and CLIP constant (u = 1 for every row)."""
    return pd.DataFrame([{"suite": "s", "dataset": "d", "limit": pd.NA, "status": "ok", "family": "flow",
                          "model": m, "fid": f, "is": 2.0, "clip_score": 30.0, "pickscore": p} for m, f, p in rows])


def test_stability_counts_rank_changes_when_each_model_leaves_the_bounds():
    # all three: B (u 0.5, 0.5) first, A (1, 0) and C (0, 1) tied second.
    # without A: B and C each best at one input, tied -> C moves from 2nd to 1st: 1 change. Without C: likewise
    # A: 1 change. Without B: the bounds stay [10, 30] x [0, 10]: A and C stay tied, 0 changes.
    g = _frame([("A", 10.0, 0.0), ("B", 20.0, 5.0), ("C", 30.0, 10.0)])
    total, detail = V.stability(g)
    assert total == 2
    assert "leaving out A changes the most (1 of the other 2" in detail


def test_stability_zero_when_one_model_dominates_and_too_few_models():
    g = _frame([("A", 10.0, 10.0), ("B", 20.0, 5.0), ("C", 30.0, 0.0), ("D", 25.0, 2.0)])
    # checked against a direct recomputation per left-out model (ranks among the others, ties at the better rank)
    total, detail = V.stability(g)
    by_hand = 0
    for out in "ABCD":
        rest = g[g["model"] != out]
        base = C.add_mmhm(g).set_index("model")["mmhm"].drop(out).rank(ascending=False, method="min")
        new = C.add_mmhm(rest).set_index("model")["mmhm"].rank(ascending=False, method="min")
        by_hand += int((base != new.reindex(base.index)).sum())
    assert total == by_hand
    assert V.stability(_frame([("A", 1.0, 1.0), ("B", 2.0, 2.0)]))[0] == 0


def test_bounds_note_shows_the_four_inputs_and_the_source(stores, tmp_path):
    a, b = stores
    g = bench.load(a)
    html = V.note_html(g)
    for text in ("FID", "IS", "CLIP Score", "Pick Score", ">10<", ">30<", ">2<", ">6<",
                 "computed from 3 ok cells of this store", "Stability: "):
        assert text in html, text
    saved = V.note_html(bench.load(b), C.bounds_used(g), "<a.json>")
    assert "saved bounds from &lt;a.json&gt;" in saved and "do not depend on which models" in saved
    md = V.note_markdown(bench.load(b), C.bounds_used(g), "a.json")
    assert "| FID | lower is better | 10 | 30 |" in md
    sm = bench.load(b)
    assert "this smoke run (2 samples)" in V.note_html(sm[sm["limit"] == 2], C.bounds_used(g), "a.json")
    assert V.note_html(g[g["family"] == "real"]) == ""
