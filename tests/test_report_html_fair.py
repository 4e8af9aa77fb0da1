"""The report page and leaderboard.md as one honest, readable report (issue 18, item 8).

A hand-made store (`build_fair_store`: two mini-world datasets listed in the suite file in non-alphabetical
order, a many-step model, a one-step model, a real-vs-real row, stored CIs, kept samples) is reported once;
each test checks one promise against numbers fixed here: suite order, one self-contained file, the headline
and the fair tables before the per-model boards, the MMHM bounds beside them (computed and saved), ties where
stored intervals overlap, flagged latencies marked, class names in the sample grids, and a Markdown file of
narrow tables with NFE and without cell keys. `tests/test_browser.py` drives the same page in Chromium.
"""

from __future__ import annotations

import base64
import io
import re
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
from PIL import Image

import bench
from bench.cli import main
from bench.mini.data import CLASSES
from bench.outputs import Output
from bench.report import write_report
from bench.store import ResultStore

SUITE = "hf"
DATASETS = ("mini-val", "mini-ood")                   # the suite file's order: not alphabetical
LABELS = (3, 1, 4)                                    # classes of sample ids 0, 1, 2: star, square, ring
# quality of each cell: every metric is monotone in it, so each model's best cell is best at everything
QUALITY = {("multi", 1): 0.2, ("multi", 4): 0.6, ("multi", 8): 1.0, ("one", 1): 0.8, ("one", 2): 0.9}
CFG_FACTOR = {1.0: 0.9, 3.0: 1.0}
OOD = 0.95                                            # mini-ood: every quality scaled by this
CLIP_HALF = {"multi": 0.5, "one": 0.8}                # CI half-widths: one's best CLIP interval overlaps multi's
PICK_HALF = 0.1                                       # narrow: one's best PickScore does not tie multi's
OUTPUTS = [Output("fid", False, "FID"), Output("is", True, "IS"), Output("clip_score", True, "CLIP Score"),
           Output("clip_score_ci_low", None, "CLIP Score CI low"),
           Output("clip_score_ci_high", None, "CLIP Score CI high"), Output("pickscore", True, "PickScore"),
           Output("pickscore_ci_low", None, "PickScore CI low"), Output("pickscore_ci_high", None, "PickScore CI high")]
SUITE_YAML = """suite: hf
datasets:
  - {id: mini-val}
  - {id: mini-ood}
models:
  - {id: multi, adapter: toy, natural_cfg: 3.0}
  - {id: one, adapter: toy}
  - {id: real-vs-real, adapter: real}
"""


def values(q: float, model: str) -> dict[str, float]:
    clip, pick = 20 + 10 * q, 4 * q
    return {"fid": 45 - 40 * q, "is": 1 + 4 * q, "clip_score": clip, "clip_score_ci_low": clip - CLIP_HALF[model],
            "clip_score_ci_high": clip + CLIP_HALF[model], "pickscore": pick, "pickscore_ci_low": pick - PICK_HALF,
            "pickscore_ci_high": pick + PICK_HALF}


def tile_png(color) -> bytes:
    a = np.zeros((16, 16, 3), np.uint8)
    a[::2, ::2] = color
    buf = io.BytesIO()
    Image.fromarray(a).save(buf, format="PNG")
    return buf.getvalue()


def cells():
    """(key, dataset, model, family, steps, cfg, values, latency, latency IQR) of every stored cell."""
    out = []
    for d in DATASETS:
        scale = 1.0 if d == "mini-val" else OOD
        for (model, steps), q in QUALITY.items():
            for cfg, f in CFG_FACTOR.items():
                nfe = steps * (2 if cfg > 1 else 1)
                noisy = model == "multi" and steps == 8 and cfg == 3.0      # IQR/median 0.6: flagged
                lat = 0.01 * nfe
                out.append((f"k-{d}-{model}-{steps}-{cfg}", d, model, "flow" if model == "multi" else "meanflow",
                            steps, cfg, values(q * f * scale, model), lat, 0.6 * lat if noisy else 0.01 * lat))
        out.append((f"k-{d}-real", d, "real-vs-real", "real", None, None,
                    {"fid": 0.5, "is": 6.0, "clip_score": 33.0, "pickscore": 5.0}, None, None))
    return out


def build_fair_store(db: Path, suite_file: Path) -> None:
    suite_file.write_text(SUITE_YAML, encoding="utf-8")
    by_name = {o.name: o for o in OUTPUTS}
    with ResultStore(db) as st:
        run = st.begin_run(SUITE, str(suite_file), "0" * 64, {"git_sha": "abc123", "device": "cpu"})
        for i, (key, d, model, fam, steps, cfg, vals, lat, iqr) in enumerate(cells()):
            row = {"run_id": run, "suite": SUITE, "model_id": model, "adapter": "toy", "family": fam, "dataset": d,
                   "steps": steps, "cfg": cfg, "seed": 42, "plan": "per_class:3", "n": 30, "status": "ok",
                   "config": {"model": {"id": model}, "dataset": d, "dataset_source": d, "steps": steps, "cfg": cfg},
                   "provenance": {"weights": f"sha256:{model}", "adapter_version": "toy-1"}, "seconds": 1.0}
            metrics = {n: (v, "src", "v1", {}, by_name[n]) for n, v in vals.items()}
            timings = {} if lat is None else {
                "nfe": ((steps or 1) * (2 if (cfg or 1) > 1 else 1), "evals/image"),
                "latency_s": (lat, "s"), "latency_iqr_s": (iqr, "s"), "throughput_ips": (1 / lat, "images/s")}
            samples = [(j, LABELS[j], tile_png((30 + 9 * i, 200 - 5 * i, 60 * j))) for j in range(3)]
            st.write(key, row, metrics, timings, samples)


def _frame(db: Path):
    df = bench.load(db)
    df["latency_flagged"] = (df["latency_iqr_s"] / df["latency_s"]) > 0.5      # as tidy flags it (by hand here)
    return df


@pytest.fixture(scope="module")
def rep(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("fair-report")
    db = tmp / "b.duckdb"
    build_fair_store(db, tmp / "hf.yaml")
    df = _frame(db)
    write_report(df, tmp / "rep", db=db)
    d = tmp / "rep" / SUITE
    return SimpleNamespace(db=db, dir=d, df=df, html=(d / "index.html").read_text(encoding="utf-8"),
                           md=(d / "leaderboard.md").read_text(encoding="utf-8"), tmp=tmp)


def section(html: str, dataset: str) -> str:
    """One dataset's part of the page: from its heading to the next dataset's (or MMHM coverage)."""
    start = html.index(f"<h2 id=ds-{dataset}>")
    ends = [i for i in (html.find("<h2 id=ds-", start + 1), html.find("<h2 id=mmhm>", start)) if i > 0]
    return html[start:min(ends)]


def test_datasets_follow_the_suite_file_not_the_alphabet(rep):
    html, md = rep.html, rep.md
    assert html.index("<h2 id=ds-mini-val>") < html.index("<h2 id=ds-mini-ood>")
    assert html.index("id=plots-mini-val") < html.index("id=plots-mini-ood")
    nav = html.split("<nav>")[1].split("</nav>")[0]
    assert nav.index("#ds-mini-val") < nav.index("#ds-mini-ood")
    assert md.index("## mini-val") < md.index("## mini-ood")
    sweep = html.split("id=sweep-table")[1]
    first_ood, last_val = sweep.index(">mini-ood<"), sweep.rindex(">mini-val<")
    assert last_val < first_ood                                          # the sweep too, dataset by dataset


def test_one_file_is_the_whole_report(rep):
    html = rep.html
    refs = re.findall(r"""(?:src|href)=['"]?([^'" >]+)""", html)
    assert refs and all(r.startswith(("#", "data:image/png;base64,")) for r in refs), \
        [r[:40] for r in refs if not r.startswith(("#", "data:"))]
    for bad in ("http://", "https://", "url(", "@import", "<link", "<iframe", "<script src"):
        assert bad not in html, bad
    figures = re.findall(r"<figure><img src='data:image/png;base64,([A-Za-z0-9+/=]+)'", html)
    files = sorted(rep.dir.glob("*.png"))
    assert len(figures) == len(files) > 0                                # every figure, embedded
    with Image.open(files[0]) as f:
        size = f.size
    assert size in {Image.open(io.BytesIO(base64.b64decode(u))).size for u in figures}


def test_headline_leads_and_every_link_resolves(rep):
    html = rep.html
    head = html.split("<div class=headline>")[1].split("</div>")[0]
    assert html.index("<div class=headline>") < html.index("<h2 id=ds-")
    links = re.findall(r"href=['\"]#([^'\"]+)['\"]", head)
    assert links, "the headline links each sentence to its table"
    for a in links:
        assert re.search(rf"id=['\"]?{re.escape(a)}['\" >]", html), a


def test_fair_tables_come_before_each_models_best_cells(rep):
    for d in DATASETS:
        s = section(rep.html, d)
        assert s.index(f'id="matched-{d}"') < s.index(f'id="budget-{d}"') < s.index(f"id=lb-{d}")


def _bounds(sec: str) -> dict[str, tuple[float, float]]:
    aside = sec.split("<aside>")[1].split("</aside>")[0]
    rows = re.findall(r"<tr><td>([^<]+)</td><td>[^<]+</td><td class=num>([^<]+)</td><td class=num>([^<]+)</td>",
                      aside)
    return {n: (float(lo), float(hi)) for n, lo, hi in rows}


def test_mmhm_bounds_sit_beside_each_dataset_and_are_those_used(rep):
    # mini-val's model cells: q from 0.2 * 0.9 = 0.18 to 1.0, so FID 45 - 40q in [5, 37.8], IS 1 + 4q in [1.72, 5]
    b = _bounds(section(rep.html, "mini-val"))
    assert b["FID"] == pytest.approx((5.0, 37.8)) and b["IS"] == pytest.approx((1.72, 5.0))
    assert b["CLIP Score"] == pytest.approx((21.8, 30.0)) and b["Pick Score"] == pytest.approx((0.72, 4.0))
    ood = _bounds(section(rep.html, "mini-ood"))
    assert ood["FID"] == pytest.approx((45 - 40 * OOD, 45 - 40 * 0.18 * OOD))
    assert "computed from 10 ok cells" in section(rep.html, "mini-val")
    assert "Stability" in section(rep.html, "mini-ood")


@pytest.fixture
def no_plots(monkeypatch):
    """A second report of the same store needs no figures (the first one checked them): skip drawing."""
    from bench.report import plots
    monkeypatch.setattr(plots, "make_plots", lambda df, out, specs: ([], []))


def test_saved_bounds_are_shown_as_saved(rep, tmp_path, no_plots):
    saved = {"*": {"fid": [1.0, 50.0], "is": [1.0, 9.0], "clip": [10.0, 40.0], "pick": [0.0, 6.0]}}
    df = _frame(rep.db)
    out = tmp_path / "saved"
    write_report(df, out, db=rep.db, mmhm_bounds=saved, mmhm_source="paper-bounds.json")
    html = (out / SUITE / "index.html").read_text(encoding="utf-8")
    sec = section(html, "mini-val")
    assert "saved bounds from paper-bounds.json" in sec and _bounds(sec)["FID"] == (1.0, 50.0)
    assert "saved bounds from paper-bounds.json" in (out / SUITE / "leaderboard.md").read_text(encoding="utf-8")


def _board_rows(sec: str, cls: str) -> dict[str, list[str]]:
    """model -> its cells (raw HTML) in one of a section's boards (``m``: MMHM-best, ``f``: FID-best)."""
    table = sec.split(f"class='sortable lb {cls}-board'>")[1].split("</table>")[0]
    head = re.findall(r"<th[^>]*>([^<]*)</th>", table.split("</thead>")[0])
    rows = {}
    for tr in re.findall(r"<tr[^>]*>(.*?)</tr>", table.split("<tbody>")[1]):
        tds = re.findall(r"<td[^>]*>.*?</td>", tr)
        rows[re.sub(r"<[^>]+>", " ", tds[0]).split()[0]] = dict(zip(head, tds))
    return rows


def md_row(md: str, pick: str, dataset: str, model: str) -> str:
    """The first row of ``model`` in a pick's Markdown board ('MMHM' or 'FID') of ``dataset``."""
    board = md.split(f"### {pick}-best configuration per model: {dataset}")[1]
    return next(line for line in board.splitlines() if line.startswith(f"| {model} |"))


def test_overlapping_intervals_show_as_ties_and_the_best_in_bold(rep):
    rows = _board_rows(section(rep.html, "mini-val"), "m")
    assert list(rows) == ["multi", "one", "real-vs-real"]
    # best cells: multi q=1 (CLIP 30 ± 0.5, Pick 4 ± 0.1), one q=0.9 (CLIP 29 ± 0.8, Pick 3.6 ± 0.1)
    multi, one = rows["multi"], rows["one"]
    assert "class=\"m best\"" in multi["CLIP Score ↑"] and "≈" not in multi["CLIP Score ↑"]
    assert "≈" in one["CLIP Score ↑"] and "interval 28.2 to 29.8" in one["CLIP Score ↑"]   # 29.8 > 29.5: a tie
    assert "≈" not in one["PickScore ↑"] and "best" not in one["PickScore ↑"]            # 3.7 < 3.9: apart
    assert "≈" not in one["FID ↓"] and "class=\"m best\"" in multi["FID ↓"]               # no interval: no tie
    assert "best" not in rows["real-vs-real"]["CLIP Score ↑"]                            # a reference, not a rival
    one_line, multi_line = md_row(rep.md, "MMHM", "mini-val", "one"), md_row(rep.md, "MMHM", "mini-val", "multi")
    assert "| 29 ≈ |" in one_line and "| 3.6 |" in one_line and "| **30** |" in multi_line


def test_flagged_latency_is_marked_with_its_rule(rep):
    rows = _board_rows(section(rep.html, "mini-val"), "m")
    flagged, calm = rows["multi"]["latency s"], rows["one"]["latency s"]       # multi 8 steps cfg 3: IQR/median 0.6
    assert "⚠" in flagged and "IQR" in flagged and "median" in flagged and "0.60" in flagged
    assert "⚠" not in calm
    sweep = rep.html.split("id=sweep-table")[1]
    assert sweep.count("<sup class=flag>") == 2                                 # the noisy cell, on both datasets
    assert "⚠" in md_row(rep.md, "MMHM", "mini-val", "multi") and "⚠" not in md_row(rep.md, "MMHM", "mini-val", "one")


def test_sample_grids_name_classes_and_offer_a_class_filter(rep):
    grids = rep.html.split("<h2 id=grids>")[1].split("<h2 id=sweep>")[0]
    names = [CLASSES[i] for i in LABELS]
    for i, name in enumerate(names):
        assert f"#{i}<br>{name}</th>" in grids
    assert "label 3" not in grids and "class 3" not in grids
    options = re.findall(r"<option value='([^']*)'>", grids.split("</select>")[0])
    assert options == ["", *sorted(names)]
    assert grids.index("<h3>mini-val") < grids.index("<h3>mini-ood")
    tiles = re.findall(r"<td class=tile data-class='([^']+)'><img src='data:image/png;base64,([^']+)'", grids)
    assert len(tiles) == 3 * len(cells()) and [t[0] for t in tiles[:3]] == names
    im = np.asarray(Image.open(io.BytesIO(base64.b64decode(tiles[0][1]))).convert("RGB"))
    assert im.shape == (64, 64, 3) and (im[:4, :4] == im[0, 0]).all() and im[0, 4].sum() == 0   # nearest x4


def test_leaderboard_md_is_narrow_with_nfe_and_no_keys(rep):
    md = rep.md
    widths = [line.count("|") - 1 for line in md.splitlines() if line.startswith("|")]
    assert widths and max(widths) <= 10
    headers = [line for line in md.splitlines() if line.startswith("| model |")]
    assert any("| NFE |" in h for h in headers) and not any("key" in h for h in headers)
    for k in rep.df["key"]:
        assert k not in md
    multi = md_row(md, "MMHM", "mini-val", "multi")
    assert multi.split("|")[2].strip() == "8 steps, cfg 3" and multi.split("|")[3].strip() == "16"    # NFE 16


def test_cli_report_takes_the_suite_files_order(rep, tmp_path, no_plots):
    out = tmp_path / "cli"
    suite = rep.tmp / "reversed.yaml"
    suite.write_text(SUITE_YAML.replace("  - {id: mini-val}\n  - {id: mini-ood}", "  - {id: mini-ood}\n"
                                        "  - {id: mini-val}"), encoding="utf-8")
    assert main(["report", "--db", str(rep.db), "--suite", str(suite), "--out", str(out)]) == 0
    html = (out / SUITE / "index.html").read_text(encoding="utf-8")
    assert html.index("<h2 id=ds-mini-ood>") < html.index("<h2 id=ds-mini-val>")
