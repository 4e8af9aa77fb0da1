"""The fair comparison (bench.report.fair, bench.report.headline, bench.report.context): matched settings with a
per-model "natural" CFG column, matched NFE budgets and their winners, the generated headline, and the suite's
``natural_cfg`` as report metadata that never enters a cell key.

Frames are built by hand with their MMHM given (the fair views read the stored ``mmhm`` column), so every
expected leader, rank and sentence below is worked out from the numbers in this file.
"""

import math
import re
import shutil
import subprocess
import sys
from html.parser import HTMLParser
from pathlib import Path

import pandas as pd
import pytest

from bench.outputs import Output
from bench.report import directions as D
from bench.report import fair as F
from bench.report import headline as H
from bench.report import plots as P
from bench.report.context import ReportContext, context_for
from bench.suite import Suite, SuiteError

ROOT = Path(__file__).resolve().parent.parent
PAPER = ROOT / "suites" / "paper.yaml"
CUR = Path("/work/notes/cur.duckdb")
# The paper's natural scales (PROTOCOL.md, "Paper grid")
NATURAL = {"sit-xl2": 1.5, "meanflow-b4": 1.0, "imf-xl2": 6.0, "soflow-xl2": 2.0, "rae-ditdh-xl": 1.42,
           "scale-rae": 1.42, "sd3.5-large": 3.5, "flux.1-dev": 3.5}
SPECS = D.from_declared([Output("fid", False, "FID", fmt=".2f"), Output("is", True, "IS"),
                         Output("clip_score", True, "CLIP Score"), Output("pickscore", True, "PickScore")])
EVIL = "<b>x"
MT, FT = "mmhm-best", "fid-best"


def cell(model, steps, cfg, nfe, mmhm, fid=20.0, clip=30.0, pick=2.0, *, dataset="d", status="ok",
         family="flow", limit=pd.NA, key=None, solver=None):
    return {"key": key or f"{dataset}-{model}-{steps}-{cfg}-{nfe}-{solver}-{limit}", "suite": "s", "model": model,
            "family": family, "dataset": dataset, "steps": steps, "cfg": cfg, "solver": solver, "status": status,
            "limit": limit, "nfe": nfe if status == "ok" else float("nan"),
            **({"mmhm": mmhm, "fid": fid, "is": 3.0, "clip_score": clip, "pickscore": pick} if status == "ok" else
               {"mmhm": float("nan"), "fid": float("nan"), "is": float("nan"), "clip_score": float("nan"),
                "pickscore": float("nan")})}


def frame(rows) -> pd.DataFrame:
    df = pd.DataFrame(rows)
    df["steps"] = df["steps"].astype("Int32")
    df["limit"] = df["limit"].astype("Int64")
    return df


# A one-step model that wins at 1 NFE and loses at 8; a multi-step model with CFG that doubles its NFE.
ONE_VS_MULTI = frame([
    cell("one", 1, 1.0, 1, 0.80, fid=10.0), cell("one", 2, 1.0, 2, 0.82, fid=11.0),
    cell("multi", 1, 1.0, 1, 0.10, fid=50.0), cell("multi", 2, 1.0, 2, 0.50, fid=16.0),
    cell("multi", 4, 1.0, 4, 0.70, fid=9.0),             # FID leader at 4 NFE while "one" leads by MMHM
    cell("multi", 4, 3.0, 8, 0.90, fid=12.0),            # cfg 3 doubles NFE: 8, not 4
    cell("multi", 8, 1.0, 8, 0.60, fid=5.0),              # FID-best of "multi" within 8 NFE
    cell("real-vs-real", None, None, 0, float("nan"), fid=0.3, family="real"),
])


def row(boards, budget, model):
    r = boards[(boards["budget"] == budget) & (boards["model"] == model)]
    assert len(r) == 1
    return r.iloc[0]


# ---------------------------------------------------------------- NFE budgets


def test_budgets_are_powers_of_two_up_to_the_largest_counted_nfe():
    assert F.budgets_for(1) == [1]
    assert F.budgets_for(8) == [1, 2, 4, 8]
    assert F.budgets_for(9) == [1, 2, 4, 8, 16]
    assert F.budgets_for(37.5) == [1, 2, 4, 8, 16, 32, 64]      # adaptive solvers average a fractional NFE
    assert sorted(F.budget_boards(ONE_VS_MULTI, SPECS)["budget"].unique()) == [1, 2, 4, 8]


def test_one_step_model_wins_at_one_nfe_and_loses_at_eight():
    b = F.budget_boards(ONE_VS_MULTI, SPECS)
    assert "real-vs-real" not in set(b["model"])
    assert row(b, 1, "one")[f"{MT} mmhm"] == 0.80 and row(b, 1, "one")[f"{MT} lead"]
    assert row(b, 1, "multi")[f"{MT} rank"] == 2
    assert row(b, 4, "one")[f"{MT} lead"] and row(b, 4, "multi")[f"{MT} mmhm"] == 0.70
    # CFG 3 at 4 steps counts 8 NFE: within 8, not within 4
    assert row(b, 4, "multi")[f"{MT} cfg"] == 1.0 and row(b, 8, "multi")[f"{MT} cfg"] == 3.0
    assert row(b, 8, "multi")[f"{MT} lead"] and not row(b, 8, "one")[f"{MT} lead"]
    # FID picks its own cells, lower is better
    assert row(b, 4, "multi")[f"{FT} fid"] == 9.0 and row(b, 4, "multi")[f"{FT} lead"]
    assert row(b, 8, "multi")[f"{FT} steps"] == 8 and row(b, 8, "multi")[f"{FT} fid"] == 5.0
    one, multi = F.winners(b)
    assert one.models == ("one",) and one.budget == 1 and one.runner_up == "multi"
    assert math.isclose(one.margin, 0.70)
    assert multi.models == ("multi",) and multi.budget == 8 and math.isclose(multi.margin, 0.08)
    assert [(x.budget, x.models) for x in F.leader_changes(b, MT)] == [(1, ("one",)), (8, ("multi",))]


def test_a_model_without_a_cell_within_a_budget_has_no_pick_and_no_rank():
    df = frame([cell("fast", 1, 1.0, 1, 0.3), cell("fast", 2, 1.0, 2, 0.4),
                cell("slow", 4, 1.0, 4, 0.9), cell("slow", 2, 1.0, 2, float("nan"), status="failed")])
    b = F.budget_boards(df, SPECS)
    for budget in (1, 2):
        r = row(b, budget, "slow")
        assert r["within"] == 0 and pd.isna(r[f"{MT} mmhm"]) and pd.isna(r[f"{MT} rank"]) and not r[f"{MT} lead"]
    assert row(b, 4, "slow")[f"{MT} lead"]
    assert F.winners(b)[0].models == ("fast",) and F.winners(b)[0].runner_up is None
    page = F.fair_html(df, "d", SPECS)
    assert 'title="no configuration within 1 NFE"' in page and 'title="no configuration within 4 NFE"' not in page


def test_no_model_usable_at_one_nfe_gives_no_one_step_winner():
    df = frame([cell("a", 2, 1.0, 2, 0.5), cell("b", 4, 1.0, 4, 0.6)])
    b = F.budget_boards(df, SPECS)
    one, multi = F.winners(b)
    assert one is None and multi.models == ("b",)
    lines = dict(H.winner_lines(b, SPECS))
    assert lines["One-step winner"].startswith("none: no model has an ok cell with MMHM within 1 NFE")


def test_ties_name_every_leader_and_equal_cells_prefer_fewer_nfe():
    df = frame([cell("a", 1, 1.0, 1, 0.5, fid=10.0), cell("b", 1, 1.0, 1, 0.5, fid=12.0),
                cell("c", 1, 1.0, 1, 0.2, fid=10.0),
                cell("a", 2, 1.0, 2, 0.5, fid=10.0)])          # a tie inside "a": its 1-NFE cell stays the pick
    b = F.budget_boards(df, SPECS)
    lead = H.lead_at(b, 1, MT)
    assert lead.models == ("a", "b") and lead.name == "a and b (tied)" and lead.runner_up == "c"
    assert math.isclose(lead.margin, 0.3)
    assert list(b[b["budget"] == 1][f"{MT} rank"]) == [1, 1, 3]
    assert row(b, 2, "a")[f"{MT} nfe"] == 1 and row(b, 2, "a")[f"{MT} steps"] == 1
    assert H.lead_at(b, 1, FT).models == ("a", "c")                          # FID 10 = 10


def test_failed_and_smoke_cells_are_never_picked():
    df = frame([cell("a", 1, 1.0, 1, 0.4), cell("b", 1, 1.0, 1, 0.3),
                cell("a", 1, 3.0, 1, 0.99, limit=10),                     # smoke run: dropped beside full cells
                cell("b", 1, 3.0, 1, float("nan"), status="failed")])
    b = F.budget_boards(df, SPECS)
    assert row(b, 1, "a")[f"{MT} mmhm"] == 0.4 and row(b, 1, "a")["within"] == 1
    t = F.matched_settings(df, SPECS)
    assert F.settings_of(t) == [(1, 1.0)]                          # (1, 3.0): b's cell failed, a's is a smoke cell
    assert F.budget_boards(frame([cell("a", 1, 1.0, 1, 0.4, limit=10), cell("b", 1, 1.0, 1, 0.3, limit=10)]),
                           SPECS)[f"{MT} lead"].tolist() == [True, False]      # smoke cells alone: compared alone


# ---------------------------------------------------------------- matched settings


MATCHED = frame([
    cell("A", 1, 1.5, 2, 0.61), cell("A", 1, 7.0, 2, 0.62), cell("A", 1, 3.0, 2, 0.63),
    cell("A", 25, 1.5, 50, 0.64), cell("A", 25, 7.0, 50, 0.65),
    cell("B", 1, 4.0, 1, 0.71), cell("B", 1, 7.0, 1, 0.72), cell("B", 1, 3.0, 1, 0.73),
    cell("B", 25, 4.0, 25, 0.74), cell("B", 25, 7.0, 25, 0.75),
    cell("C", 1, 7.0, 2, 0.81), cell("C", 1, 2.0, 2, 0.82),          # no natural scale; (1, 2.0) is C's alone
    cell("C", 25, 7.0, float("nan"), float("nan"), status="failed"),
])
CTX = ReportContext(["d"], ["C", "B", "A"], {"A": 1.5, "B": 4.0, "C": 9.0})   # C's natural scale has no cell


def test_matched_columns_are_shared_settings_with_natural_resolved_per_model():
    t = F.matched_settings(MATCHED, SPECS, CTX)
    assert F.settings_of(t) == [(1, 3.0), (1, 7.0), (1, F.NATURAL), (25, 7.0), (25, F.NATURAL)]
    assert list(t.index) == ["C", "B", "A"]                               # the context's model order
    assert t.loc["A", (1, F.NATURAL, "mmhm")] == 0.61 and t.loc["A", (1, F.NATURAL, "cfg")] == 1.5
    assert t.loc["B", (1, F.NATURAL, "mmhm")] == 0.71 and t.loc["B", (1, F.NATURAL, "cfg")] == 4.0
    assert t.loc["B", (1, F.NATURAL, "nfe")] == 1
    assert t.loc["C", (1, F.NATURAL, "cells")] == 0 and pd.isna(t.loc["C", (1, F.NATURAL, "mmhm")])
    assert pd.isna(t.loc["C", (1, 3.0, "mmhm")])
    assert t.loc["C", (25, 7.0, "status")] == "failed" and pd.isna(t.loc["C", (25, 7.0, "mmhm")])
    assert t.loc["B", (25, 7.0, "fid")] == 20.0 and t.loc["B", (25, 7.0, "pickscore")] == 2.0
    # without natural scales the natural columns are gone and nothing else changes
    plain = F.matched_settings(MATCHED, SPECS, ReportContext(["d"], ["A", "B", "C"], {}))
    assert F.settings_of(plain) == [(1, 3.0), (1, 7.0), (25, 7.0)]


def test_a_natural_scale_equal_to_a_shared_one_fills_both_columns():
    df = frame([cell("A", 1, 7.0, 1, 0.5), cell("B", 1, 7.0, 1, 0.6), cell("B", 1, 2.0, 1, 0.7)])
    t = F.matched_settings(df, SPECS, ReportContext(["d"], ["A", "B"], {"A": 7.0, "B": 2.0}))
    assert F.settings_of(t) == [(1, 7.0), (1, F.NATURAL)]
    assert t.loc["A", (1, 7.0, "mmhm")] == t.loc["A", (1, F.NATURAL, "mmhm")] == 0.5
    assert t.loc["B", (1, F.NATURAL, "mmhm")] == 0.7


def test_matched_html_marks_column_best_failed_and_missing_cells():
    page = F.fair_html(MATCHED, "d", SPECS, CTX)
    assert '<section id="matched-d"' in page and '<section id="budget-d"' in page
    assert '<table class="fair">' in page and "natural CFG" in page
    assert '<td class="failed">failed</td>' in page and 'title="no cell at this setting"' in page
    # B is the best at (1, 7): 0.72 > 0.62; C's 0.81 beats it -> C leads that column
    rows = re.findall(r"<tr><th>(\w)</th>(.*?)</tr>", page.split('id="budget-d"')[0])
    first_col = {m: tds.split("</td>")[1] for m, tds in rows}          # the (1, 7.0) column
    assert 'class="lead"' in first_col["C"] and 'class="lead"' not in first_col["B"]
    assert "0.81" in first_col["C"] and "20.00 · 30 · 2" in first_col["C"]      # FID in its stored format


def test_markdown_splits_a_wide_grid_into_tables_of_at_most_ten_columns():
    rows = [cell(m, s, c, s, 0.1 * i + 0.01 * j) for i, m in enumerate(("a", "b"))
            for j, (s, c) in enumerate((s, c) for s in (1, 2, 4) for c in (1.0, 1.5, 3.0, 5.0))]
    md = F.fair_markdown(frame(rows), "d", SPECS)
    matched = md.split('<a id="budget-d">')[0]
    headers = [ln for ln in matched.splitlines() if ln.startswith("| model |")]
    assert len(headers) == 2
    assert all(ln.count("|") - 1 <= 10 for ln in headers)
    labels = [x.strip() for ln in headers for x in ln.strip("|").split("|")[1:]]
    assert labels == [F.setting_label((s, c)) for s in (1, 2, 4) for c in (1.0, 1.5, 3.0, 5.0)]


# ---------------------------------------------------------------- winners first, escaping


class _Text(HTMLParser):
    def __init__(self):
        super().__init__()
        self.tags, self.text = [], []

    def handle_starttag(self, tag, attrs):
        self.tags.append(tag)

    def handle_data(self, data):
        if data.strip():
            self.text.append(data.strip())


def test_budget_section_opens_with_the_two_winners():
    page = F.fair_html(ONE_VS_MULTI, "d", SPECS)
    section = page.split('<section id="budget-d" class="fair-section">')[1]
    p = _Text()
    p.feed(section)
    assert p.text[0] == "Matched NFE budgets: d"
    assert p.text[1] == "One-step winner" and p.text[2].startswith(": one (leads by MMHM within 1 NFE): MMHM 0.8")
    assert p.text[3] == "Multi-step winner" and p.text[4].startswith(": multi (leads by MMHM within 8 NFE, the "
                                                                        "largest budget): MMHM 0.9")
    md = F.fair_markdown(ONE_VS_MULTI, "d", SPECS).split('<a id="budget-d"></a>')[1]
    lines = [ln for ln in md.splitlines() if ln.strip()]
    assert lines[0] == "### Matched NFE budgets: d"
    assert lines[1].startswith("**One-step winner**: one (") and lines[2].startswith("**Multi-step winner**: multi (")


def test_every_name_is_escaped():
    df = frame([cell(EVIL, 1, 1.0, 1, 0.9), cell("b|c", 1, 1.0, 1, 0.1), cell(EVIL, 2, 1.0, 2, 0.95),
                cell("b|c", 2, 1.0, 2, 0.2)])
    df["dataset"] = "<i>d"
    outs = [F.fair_html(df, "<i>d", SPECS), F.fair_markdown(df, "<i>d", SPECS), F.headline_html(df, SPECS),
            F.headline_markdown(df, SPECS)]
    for out in outs:
        assert "<b>" not in out and "<i>" not in out and "&lt;b&gt;x" in out
    assert "b\\|c" in outs[1] and "b\\|c" not in outs[0]
    assert f'id="{F.matched_anchor("<i>d")}"' in outs[0] and re.fullmatch(r"matched-[A-Za-z0-9._-]+",
                                                                           F.matched_anchor("<i>d"))
    assert F.budget_anchor("mini-val") == "budget-" + P.slug("mini-val") == "budget-mini-val"


# ---------------------------------------------------------------- headline


def two_datasets() -> pd.DataFrame:
    other = ONE_VS_MULTI.copy()
    other["dataset"] = "e"
    other.loc[other["model"] == "one", "mmhm"] -= 0.75             # on e, multi leads at every budget
    other["key"] = other["key"] + "-e"
    return pd.concat([ONE_VS_MULTI, other], ignore_index=True)


def test_headline_sentences_come_from_the_numbers_with_their_anchors():
    ctx = ReportContext(["d", "e"], ["one", "multi"], {})
    hl = F.headline(two_datasets(), SPECS, ctx)
    assert 3 <= len(hl) <= 5 and hl == F.headline(two_datasets(), SPECS, ctx)      # deterministic
    text = [s for s, _ in hl]
    assert [a for _, a in hl] == ["budget-d", "budget-d", "budget-d", "matched-d", "budget-e"]
    assert text[0] == ("On d at 1 NFE, one leads by MMHM with 0.8 (1 step, cfg 1, 1 NFE), 0.7 ahead of multi; "
                       "by FID it also leads with 10.00, 40.00 better than multi.")
    assert text[1].startswith("At a budget of 8 NFE multi overtakes one by MMHM (0.9 against 0.82); within the "
                              "largest budget (8 NFE) multi leads with 0.9 (4 steps, cfg 3, 8 NFE).")
    assert text[2].startswith("MMHM-best and FID-best name different leaders at 1 of 4 budgets (4 NFE): at 4 NFE "
                              "MMHM picks one (0.82, 2 steps, cfg 1, 2 NFE) but FID picks multi (9.00, 4 steps")
    assert text[3] == ("At the 2 settings on d that at least two models share, one has the best MMHM in 2 "
                       "(1 step, cfg 1; 2 steps, cfg 1).")
    assert text[4].startswith("On e the one-step winner by MMHM is multi (")
    # the context's dataset order decides which dataset the headline reads first
    first = F.headline(two_datasets(), SPECS, ReportContext(["e", "d"], [], {}))
    assert first[0][1] == "budget-e" and first[0][0].startswith("On e at 1 NFE, multi leads")


def test_headline_says_when_leaders_agree_and_the_pick_differs_inside_the_leader():
    df = frame([cell("a", 1, 1.0, 1, 0.9, fid=5.0), cell("a", 1, 3.0, 1, 0.95, fid=6.0),
                cell("b", 1, 1.0, 1, 0.1, fid=9.0)])
    text = [s for s, _ in F.headline(df, SPECS)]
    assert text[1] == ("No model overtakes a by MMHM up to 1 NFE; within the largest budget (1 NFE) a leads with "
                       "0.95 (1 step, cfg 3, 1 NFE).")
    assert text[2] == ("MMHM-best and FID-best name the same leader at every budget, though at 1 NFE a's FID-best "
                       "cell (1 step, cfg 1, 1 NFE, FID 5.00) is not its MMHM-best (1 step, cfg 3, 1 NFE).")
    assert text[3] == "At the only setting on d that at least two models share (1 step, cfg 1), a has the best MMHM."
    assert len(text) == 4                                           # one dataset: no sentence about others


def test_headline_without_full_cells_says_so_in_one_sentence():
    smoke = frame([cell("a", 1, 1.0, 1, 0.4, limit=10), cell("b", 1, 1.0, 1, 0.3, limit=10)])
    assert F.headline(smoke, SPECS) == [("No full cell to compare: nothing to say yet (a smoke run's numbers are "
                                         "not results).", "")]
    assert "<a href" not in F.headline_html(smoke, SPECS)


def test_without_mmhm_or_cells_every_view_says_so_and_fid_still_ranks():
    nomm = frame([cell("a", 1, 1.0, 1, float("nan"), fid=10.0), cell("b", 1, 1.0, 1, float("nan"), fid=12.0)])
    b = F.budget_boards(nomm, SPECS)
    assert b[f"{MT} rank"].isna().all() and row(b, 1, "a")[f"{FT} lead"] and not row(b, 1, "b")[f"{FT} lead"]
    assert F.winners(b) == (None, None)
    assert [s for s, _ in F.headline(nomm, SPECS)][:3] == [
        "On d no model has an ok cell with MMHM within 1 NFE.", "No model has MMHM at any NFE budget.",
        "No budget has both an MMHM and an FID leader."]
    empty = nomm.iloc[0:0]
    assert F.headline(empty, SPECS) == [("No full cell to compare: nothing to say yet.", "")]
    assert "No (steps, CFG) setting is shared by two models" in F.fair_html(empty, "d", SPECS)
    assert "No ok cell has a counted NFE: no budget to compare." in F.fair_markdown(empty, "d", SPECS)


# ---------------------------------------------------------------- context


def test_context_reads_orders_and_natural_scales_and_follows_the_frame(tmp_path):
    suite = tmp_path / "s.yaml"
    suite.write_text("suite: s\ndatasets: [z-set, {id: a-set}, gone]\nmodels:\n"
                     "  - {id: m2, adapter: x, natural_cfg: 2}\n  - {id: m1, adapter: x, natural_cfg: 1.42}\n"
                     "  - {id: m3, adapter: x, natural_cfg: true}\n  - {id: m4, adapter: x, natural_cfg: -1}\n"
                     "  - {id: m5, adapter: x, natural_cfg: .nan}\n  - {id: m6, adapter: x, natural_cfg: '3'}\n")
    df = pd.DataFrame({"dataset": ["a-set", "new", "z-set"], "model": ["m1", "extra", "m2"]})
    ctx = context_for(suite, df)
    assert ctx.dataset_order == ["z-set", "a-set", "new"]           # file order, the frame's extras after
    assert ctx.model_order == ["m2", "m1", "extra"]
    assert ctx.natural_cfg == {"m2": 2.0, "m1": 1.42}               # booleans, <= 0, NaN and text left out
    assert context_for(str(suite), None).dataset_order == ["z-set", "a-set", "gone"]
    assert ctx.sort_models(["extra", "m1", "zz", "m2"]) == ["m2", "m1", "extra", "zz"]


@pytest.mark.parametrize("content", [None, b"suite: [unclosed\n  - {", b"\xff\xfe\x00garbage", b"- just\n- a list\n",
                                     b"datasets: 3\nmodels: {a: 1}\n", b"x" * (2 << 20)])
def test_context_falls_back_to_the_frames_order_on_any_bad_file(tmp_path, content):
    path = tmp_path / "bad.yaml"
    if content is not None:
        path.write_bytes(content)
    df = pd.DataFrame({"dataset": ["b", "a", "b"], "model": ["y", "x", "y"]})
    ctx = context_for(path, df)
    assert (ctx.dataset_order, ctx.model_order, ctx.natural_cfg) == (["b", "a"], ["y", "x"], {})


def test_the_fair_report_modules_import_no_torch_and_no_registry():
    code = ("import sys; import bench.report.context, bench.report.fair, bench.report.headline; "
            "print(sorted(m for m in ('torch', 'bench.registry') if m in sys.modules))")
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, timeout=300)
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip() == "[]"


# ---------------------------------------------------------------- natural_cfg in the suite file


def test_paper_suite_declares_the_protocols_natural_scales():
    suite = Suite.load(PAPER)
    assert {m.id: m.natural_cfg for m in suite.spec.models} == NATURAL
    assert context_for(PAPER, None).natural_cfg == NATURAL


def test_natural_cfg_never_enters_a_cell_or_its_key():
    text = PAPER.read_text()
    bare = re.sub(r"(?m)^    natural_cfg: .*\n", "", text)
    assert bare != text and "natural_cfg:" not in bare

    def keys(t):
        return [c.key(adapter_version="v", weights_id="w", dataset_fingerprint="f", metric_versions={"m": "1"})
                for c in Suite.parse(t, "paper.yaml").expand()]
    assert keys(text) == keys(bare) and len(keys(text)) == 96


@pytest.mark.parametrize("value", ["0", "-1.5", ".inf", "true", "'2'"])
def test_a_bad_natural_cfg_is_one_clear_error(value):
    text = PAPER.read_text().replace("    natural_cfg: 1.5\n", f"    natural_cfg: {value}\n", 1)
    with pytest.raises(SuiteError) as e:
        Suite.parse(text, "paper.yaml")
    assert "models[0].natural_cfg" in str(e.value) and "\n" not in str(e.value).strip()


# ---------------------------------------------------------------- the default suite's store


def test_on_the_default_store_the_one_step_models_beat_mini_sit_at_one_nfe(tmp_path):
    import bench
    from bench.store import StoreError
    if not CUR.exists():
        pytest.skip(f"{CUR} is absent (the default suite's finished store)")
    db = tmp_path / "cur.duckdb"
    shutil.copy(CUR, db)
    if CUR.with_name(CUR.name + ".wal").exists():
        shutil.copy(CUR.with_name(CUR.name + ".wal"), tmp_path / "cur.duckdb.wal")
    try:
        df = bench.load(db)
    except StoreError as e:
        pytest.skip(f"{CUR} is not a finished store yet ({e})")
    g = df[(df["dataset"] == "mini-val") & (df["suite"] == "mini")]
    if g.empty or not (g["status"] == "ok").all() or g["model"].nunique() < 4:
        pytest.skip(f"{CUR} does not hold the finished mini-val sweep")
    specs = D.from_store(db)
    b = F.budget_boards(g, specs)
    at1 = {m: row(b, 1, m) for m in ("mini-sit", "mini-meanflow", "mini-distill")}
    for m in ("mini-meanflow", "mini-distill"):
        assert at1[m][f"{MT} mmhm"] > at1["mini-sit"][f"{MT} mmhm"]
        assert at1[m][f"{FT} fid"] < at1["mini-sit"][f"{FT} fid"]
    one, _ = F.winners(b)
    assert set(one.models) <= {"mini-meanflow", "mini-distill"}
    t = F.matched_settings(g, specs, context_for(ROOT / "suites" / "mini.yaml", df))
    assert t.loc["mini-distill", (1, 1.0, "mmhm")] > t.loc["mini-sit", (1, 1.0, "mmhm")]
    assert t.loc["mini-meanflow", (1, 1.0, "mmhm")] > t.loc["mini-sit", (1, 1.0, "mmhm")]
