"""The report (`bench report`): leaderboards, Markdown, plots, sample grids and the self-contained page.

A known small sweep is written straight into a store (two models, two datasets, a few steps and CFG scales,
one cell without PickScore, one failed cell, kept sample PNGs, a real-vs-real floor), reported once through
the CLI, and checked against picks worked out by hand below.
"""

import base64
import io
import re
import subprocess
import sys
import xml.etree.ElementTree as ET
from html.parser import HTMLParser
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pandas as pd
import pytest
from PIL import Image

import bench
from bench.cli import main
from bench.outputs import Output
from bench.report import directions as D
from bench.report.leaderboard import leaderboard
from bench.report.source import snapshot
from bench.store import ResultStore

EVIL = "<script>alert(1)</script>"
EVIL_ESCAPED = "&lt;script&gt;alert(1)&lt;/script&gt;"
ERROR = "RuntimeError: CUDA out of memory <at step 2> & more"
WHY = "MMHM needs fid, is, clip_score and pickscore"
KINDS = ("steps", "cfg", "tradeoff", "latency", "correlation")

# (dataset, model, family, steps, cfg) -> (fid, is, clip_score, pickscore); None = not stored
SWEEP = {
    # d1, bounds over MMHM-eligible rows: fid [10, 40], is [2, 5], clip [20, 35], pick [1, 4]
    ("d1", "alpha", "flow", 1, 1.0): (30.0, 2.0, 20.0, 1.0),
    ("d1", "alpha", "flow", 1, 3.0): (40.0, 3.0, 30.0, 3.0),
    ("d1", "alpha", "flow", 4, 1.0): (10.0, 4.0, 25.0, 2.0),   # alpha's FID-best
    ("d1", "alpha", "flow", 4, 3.0): (12.0, 5.0, 35.0, 4.0),   # alpha's MMHM-best: u = (28/30, 1, 1, 1)
    ("d1", EVIL, "meanflow", 1, 1.0): (20.0, 3.0, 28.0, 2.5),  # EVIL's only MMHM: its MMHM-best
    ("d1", EVIL, "meanflow", 2, 1.0): (15.0, 3.5, 29.0, None),  # no PickScore -> no MMHM; EVIL's FID-best
    ("d1", "real-vs-real", "real", None, None): (0.5, 6.0, 40.0, 5.0),
    # d2: bounds fid [8, 25], is [2, 4], clip [20, 30], pick [1, 3]
    ("d2", "alpha", "flow", 1, 1.0): (25.0, 2.0, 20.0, 1.0),
    ("d2", "alpha", "flow", 4, 1.0): (8.0, 4.0, 30.0, 3.0),    # best at everything: both picks, MMHM 1.001
    ("d2", EVIL, "meanflow", 1, 1.0): (18.0, 3.0, 25.0, 2.0),  # best of EVIL on both
    ("d2", EVIL, "meanflow", 2, 1.0): (22.0, 2.5, 22.0, 1.5),
}
FAILED = ("d1", EVIL, "meanflow", 2, 3.0)
LABELS = [3, 1, 4]                      # the labels of sample ids 0, 1, 2 (same seed, so same for every cell)
# What the fixture's metric values are, as a metric would declare them (stored beside every value).
OUTPUTS = {o.name: o for o in (Output("fid", False, "FID"), Output("is", True, "IS"), Output("kid", False, "KID"),
                               Output("clip_score", True, "CLIP Score"), Output("pickscore", True, "PickScore"))}
SPECS = D.from_declared(OUTPUTS.values())


def key_of(dataset, model, steps, cfg):
    return f"k-{dataset}-{'evil' if model == EVIL else model}-{steps}-{cfg}"


def checker_png(color) -> bytes:
    """16x16, alternating 1-pixel checker of `color` and black: any smoothing on upscaling would blur it."""
    a = np.zeros((16, 16, 3), np.uint8)
    a[(np.indices((16, 16)).sum(0) % 2) == 0] = color
    buf = io.BytesIO()
    Image.fromarray(a).save(buf, format="PNG")
    return buf.getvalue()


def _row(dataset, model, family, steps, cfg, status="ok", error=None):
    return {"run_id": "run1", "suite": "fx", "model_id": model, "adapter": "toy", "family": family,
            "dataset": dataset, "steps": steps, "cfg": cfg, "solver": None, "seed": 42, "plan": "per_class:3",
            "n": 30, "status": status, "error": error,
            "config": {"model": model, "steps": steps, "cfg": cfg, "dataset": dataset},
            "provenance": {"weights": "sha256:feed", "adapter_version": "toy-1"}, "seconds": 1.0}


def build_store(db):
    with ResultStore(db) as st:
        st.begin_run("fx", "fx.yaml", "0" * 64, {"git_sha": "abc123", "device": "cpu"})
        for i, ((dataset, model, family, steps, cfg), vals) in enumerate(SWEEP.items()):
            values = dict(zip(("fid", "is", "kid", "clip_score", "pickscore"), (*vals[:2], vals[0] / 100, *vals[2:])))
            metrics = {name: (v, "src", "v1", {}, OUTPUTS[name]) for name, v in values.items() if v is not None}
            nfe = (steps or 1) * (2 if (cfg or 1.0) > 1 else 1)
            timings = {"nfe": (nfe, "evals/image"), "nfe_declared": (nfe, "evals/image"),
                       "latency_s": (0.01 * nfe + 0.001 * i, "s"), "throughput_ips": (100.0 / nfe, "images/s")}
            samples = [(j, LABELS[j], checker_png((40 + 20 * i, 200 - 15 * i, 90 + 10 * j))) for j in range(3)]
            st.write(key_of(dataset, model, steps, cfg), _row(dataset, model, family, steps, cfg), metrics,
                     timings, samples)
        d, m, fam, s, c = FAILED
        st.write(key_of(d, m, s, c), _row(d, m, fam, s, c, status="failed", error=ERROR), {}, {})


class Tables(HTMLParser):
    """Every table's body rows: per cell its text, data-v and title; per row its title."""

    def __init__(self):
        super().__init__()
        self.tables, self._row, self._cell, self._depth = {}, None, None, 0
        self._table_id, self.srcs = None, []

    def handle_starttag(self, tag, attrs):
        a = dict(attrs)
        for name in ("src", "href"):
            if name in a:
                self.srcs.append(a[name])
        if tag == "table":
            prefix = "lb" if "lb" in (a.get("class") or "").split() else "t"
            self._table_id = a.get("id") or f"{prefix}{len(self.tables)}"
            self.tables[self._table_id] = []
        elif tag == "tr" and self._table_id:
            self._row = SimpleNamespace(title=a.get("title"), cells=[], cls=a.get("class"))
        elif tag in ("td", "th") and self._row is not None:
            self._cell = SimpleNamespace(text="", v=a.get("data-v"), title=a.get("title"), tag=tag)

    def handle_endtag(self, tag):
        if tag in ("td", "th") and self._cell is not None:
            self._cell.text = self._cell.text.strip()
            self._row.cells.append(self._cell)
            self._cell = None
        elif tag == "tr" and self._row is not None:
            if self._row.cells and self._row.cells[0].tag == "td":
                self.tables[self._table_id].append(self._row)
            self._row = None
        elif tag == "table":
            self._table_id = None

    def handle_data(self, data):
        if self._cell is not None:
            self._cell.text += data


@pytest.fixture(scope="module")
def report(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("report")
    db = tmp / "b.duckdb"
    build_store(db)
    out = tmp / "rep"
    code = main(["report", "--db", str(db), "--suite", "fx", "--out", str(out)])
    assert code == 0
    d = out / "fx"
    html = (d / "index.html").read_text(encoding="utf-8")
    parser = Tables()
    parser.feed(html)
    return SimpleNamespace(db=db, dir=d, html=html, md=(d / "leaderboard.md").read_text(encoding="utf-8"),
                           tables=parser.tables, srcs=parser.srcs, df=bench.load(db))


def _pick(lb, model, tag):
    r = lb[lb["model"] == model].iloc[0]
    return r[f"{tag} key"], r["picks agree"]


def test_leaderboard_picks_match_the_hand_worked_fixture(report):
    df = report.df
    d1 = leaderboard(df[df["dataset"] == "d1"], SPECS)
    assert list(d1["model"]) == ["alpha", EVIL, "real-vs-real"]            # by MMHM-best; no-MMHM floor last
    assert _pick(d1, "alpha", "mmhm-best") == (key_of("d1", "alpha", 4, 3.0), False)
    assert _pick(d1, "alpha", "fid-best")[0] == key_of("d1", "alpha", 4, 1.0)
    assert _pick(d1, EVIL, "mmhm-best") == (key_of("d1", EVIL, 1, 1.0), False)
    assert _pick(d1, EVIL, "fid-best")[0] == key_of("d1", EVIL, 2, 1.0)   # the cell without PickScore
    best = d1.iloc[0]["mmhm-best mmhm"]
    assert best == pytest.approx(4 / (1 / (1e-3 + 28 / 30) + 3 / (1 + 1e-3)), rel=1e-9)
    floor = d1[d1["model"] == "real-vs-real"].iloc[0]
    assert pd.isna(floor["mmhm-best key"]) and floor["fid-best fid"] == 0.5 and pd.isna(floor["picks agree"])
    d2 = leaderboard(df[df["dataset"] == "d2"], SPECS)
    assert list(d2["model"]) == ["alpha", EVIL]
    assert _pick(d2, "alpha", "mmhm-best") == (key_of("d2", "alpha", 4, 1.0), True)
    assert _pick(d2, EVIL, "fid-best") == (key_of("d2", EVIL, 1, 1.0), True)
    assert d2.iloc[0]["mmhm-best mmhm"] == pytest.approx(1.001)


def test_html_leaderboards_mark_disagreement(report):
    lbs = [t for name, t in report.tables.items() if name.startswith("lb")]
    # per dataset two boards: MMHM-best (model, config, MMHM and the five stored ranked metrics, NFE, latency)
    # and FID-best (the same with FID first, and whether the two picks are the same cell)
    assert len(lbs) == 4 and [len(t[0].cells) for t in lbs] == [10, 11, 10, 11]
    d1m, d1f, d2m, d2f = lbs
    assert [r.cells[0].v for r in d1m] == ["alpha", EVIL, "real-vs-real"]  # parser unescapes: v is the name
    assert [r.cells[0].v for r in d1f] == ["alpha", EVIL, "real-vs-real"]  # FID 10, 15; the reference last
    alpha, alpha_f = d1m[0], d1f[0]
    assert alpha.cells[1].text == "4 steps, cfg 3" and alpha_f.cells[1].text == "4 steps, cfg 1"
    assert alpha.cells[1].title == f"cell key {key_of('d1', 'alpha', 4, 3.0)}"
    assert [alpha.cells[i].text for i in (2, 3)] == ["0.9835", "12"]                      # MMHM, FID
    assert [alpha_f.cells[i].text for i in (2, 3)] == ["10", "0.4718"]                    # FID, MMHM
    assert alpha_f.cls == "disagree" and alpha_f.cells[-1].text == "differ"
    assert [r.cells[-1].text for r in d2f] == ["yes", "yes"] and not any(r.cls for r in d2f)
    floor_m, floor_f = d1m[2], d1f[2]
    assert floor_m.cells[1].text == "–" and "by design" in floor_m.cells[1].title
    assert floor_f.cells[1].text == "(no steps or CFG)" and [floor_f.cells[i].text for i in (2, 3)] == ["0.5", "–"]
    assert "by design" in floor_f.cells[3].title


def _md_row(md, pick, model):
    board = md.split(f"### {pick}-best configuration per model:")[1]
    line = next(line for line in board.splitlines() if line.startswith(f"| {model} |"))
    return [c.strip() for c in line.strip("|").split("|")]


def test_markdown_leaderboard(report):
    md = report.md
    assert "## d1" in md and "## d2" in md and "# fx: leaderboards" in md
    d1, d2 = md.split("## d2")
    mm, fid = _md_row(d1, "MMHM", "alpha"), _md_row(d1, "FID", "alpha")
    assert mm[1:4] == ["4 steps, cfg 3", "8", "**0.9835**"]          # config, NFE, MMHM (4 significant digits)
    assert fid[1:4] == ["4 steps, cfg 1", "4", "**10**"]
    assert f"picks are different cells for: alpha, {EVIL_ESCAPED}." in d1 and "different cells for: none." in d2
    assert EVIL not in md and EVIL_ESCAPED in md
    assert WHY in md and "(no pickscore)" in md
    assert "1 failed cell(s)" in md and "CUDA out of memory &lt;at step 2&gt; &amp; more" in md


def test_every_plot_exists_as_a_valid_png_and_svg(report):
    for dataset in ("d1", "d2"):
        for kind in KINDS:
            png, svg = report.dir / f"{kind}-{dataset}.png", report.dir / f"{kind}-{dataset}.svg"
            with Image.open(png) as im:
                im.verify()
            with Image.open(png) as im:
                assert im.format == "PNG" and im.width > 300 and im.height > 200
            root = ET.parse(svg).getroot()
            assert root.tag.endswith("svg")
            assert f"({png.name}, {svg.name})" in report.html              # named under its embedded copy


def test_plot_titles_carry_declared_directions(report):
    steps = (report.dir / "steps-d1.svg").read_text()
    for t in ("FID (lower is better)", "IS (higher is better)", "KID (lower is better)",
              "CLIP Score (higher is better)", "PickScore (higher is better)", "MMHM (higher is better)"):
        assert t in steps, t
    assert "FID (lower is better)" in (report.dir / "tradeoff-d2.svg").read_text()
    assert "Pareto front" in (report.dir / "latency-d1.svg").read_text()


def test_page_is_self_contained(report):
    html = report.html
    for bad in ("http://", "https://", "//cdn", "<link", "@import", "url(", "<script src", "<iframe"):
        assert bad not in html, bad
    assert report.srcs, "the page embeds its plots"
    for ref in report.srcs:
        assert ref.startswith(("#", "data:image/png;base64,")), ref      # one file: no reference to another
    assert html.count("<script>") == 1 and "table.sortable" in html     # the one inline sorting script


def test_names_and_errors_are_escaped(report):
    assert EVIL not in report.html
    assert EVIL_ESCAPED in report.html
    assert "CUDA out of memory &lt;at step 2&gt; &amp; more" in report.html


def test_sweep_rows_trace_to_keys_and_show_missing_as_missing(report):
    rows = report.tables["sweep-table"]
    assert len(rows) == len(SWEEP) + 1
    by_key = {r.cells[-1].v: r for r in rows}
    assert set(by_key) == set(report.df["key"])
    for k, r in by_key.items():
        assert r.title.startswith(f"cell key {k}\n")
        assert r.cells[-1].text.startswith(k[:12]) and f'key = "{k}"' in r.cells[-1].text
    cols = ["dataset", "model", "family", "steps", "cfg", "solver", "seed", "status", "fid", "is", "kid",
            "clip_score", "pickscore", "mmhm"]
    no_pick = by_key[key_of("d1", EVIL, 2, 1.0)]
    assert no_pick.cells[cols.index("pickscore")].text == "–"
    mm = no_pick.cells[cols.index("mmhm")]
    assert mm.text == "–" and mm.v == "" and mm.title == f"{WHY}; this cell lacks pickscore"
    ok = by_key[key_of("d1", EVIL, 1, 1.0)].cells[cols.index("mmhm")]
    assert ok.text != "–" and float(ok.v) > 0
    failed = by_key[key_of(*FAILED[:2], *FAILED[3:])]
    assert failed.cls == "failed" and failed.cells[cols.index("status")].text == "failed"
    assert ERROR in failed.cells[cols.index("status")].title
    assert WHY in report.html.split("id=mmhm")[1].split("<h2")[0]       # the page says why, in its own section
    failed_section = report.html.split("id=failed")[1].split("<h2")[0]
    assert "CUDA out of memory &lt;at step 2&gt;" in failed_section and key_of(*FAILED[:2], *FAILED[3:])[:12] in \
        failed_section


def test_sample_grids_align_sample_ids_and_upscale_nearest(report):
    tiles = re.findall(r"<td class=tile data-class='[^']*'><img src='data:image/png;base64,([A-Za-z0-9+/=]+)'",
                       report.html)
    assert len(tiles) == 3 * len(SWEEP)                                   # per ok cell a tile per sample, none failed
    assert "#0<br>class 3" in report.html and "#2<br>class 4" in report.html   # no class names known: the ids
    im = Image.open(io.BytesIO(base64.b64decode(tiles[0]))).convert("RGB")
    assert im.size == (64, 64)
    tile = np.asarray(im)
    assert (tile[:4, :4] == tile[0, 0]).all() and (tile[4:8, 4:8] == tile[0, 0]).all()   # 4x4 blocks, crisp
    assert (tile[0, 0] != tile[0, 4]).any() and tile[0, 4].sum() == 0                     # black neighbour block
    grids = report.html.split("id=grids")[1].split("id=sweep")[0]
    assert grids.count("<h3>") == 2                                       # one grid per dataset (one seed)
    assert grids.index("real-vs-real") < grids.index("alpha")             # the real floor leads each grid


def test_report_reads_a_copy_while_a_writer_holds_the_store(tmp_path):
    db = tmp_path / "b.duckdb"
    build_store(db)
    code = ("import sys, time; sys.path.insert(0, sys.argv[2]); from bench.store import ResultStore; "
            "st = ResultStore(sys.argv[1]); "
            "st.write('late', {'suite': 'fx', 'model_id': 'late', 'dataset': 'd1', 'status': 'ok'}, "
            "{'fid': (1.0, 's', 'v', {})}, {}); print('held', flush=True); time.sleep(60)")
    root = str(Path(bench.__file__).resolve().parents[1])
    holder = subprocess.Popen([sys.executable, "-c", code, str(db), root], stdout=subprocess.PIPE, text=True)
    notes = []
    try:
        assert holder.stdout.readline().strip() == "held"
        with snapshot(db, notify=notes.append) as path:
            assert path != db and notes and "locked" in notes[0]
            df = bench.load(path)
            assert "late" in set(df["key"]) and len(df) == len(SWEEP) + 2   # the writer's committed cell too
        assert not path.exists()                                            # the copy is gone afterwards
    finally:
        holder.kill()
        holder.wait()
    with ResultStore(db) as st:                                             # the store itself is intact
        assert st.status("late") == "ok"
    with snapshot(db) as path:
        assert path == db                                                   # unlocked: read in place


def test_importing_the_cli_and_report_does_not_import_matplotlib():
    r = subprocess.run([sys.executable, "-c", "import sys, bench.cli, bench.report; "
                        "print('matplotlib' in sys.modules)"], capture_output=True, text=True)
    assert r.returncode == 0 and r.stdout.strip() == "False", r.stderr


def _synthetic_frame(n_models, steps=(1, 2, 4), cfgs=(1.0, 2.0, 3.0), holes=()):
    """One dataset's ok cells: every model x steps x CFG, metrics from a fixed generator; ``holes``: (model
    index, steps, cfg) whose CLIP Score is missing."""
    rng = np.random.default_rng(0)
    rows = []
    for mi in range(n_models):
        for s in steps:
            for c in cfgs:
                fid, clip = rng.uniform(5, 50), np.nan if (mi, s, c) in holes else rng.uniform(20, 35)
                rows.append({"suite": "syn", "dataset": "d", "model": f"m{mi:02d}", "family": "flow", "status": "ok",
                             "steps": s, "cfg": c, "solver": None, "seed": 42, "fid": fid, "is": rng.uniform(2, 9),
                             "clip_score": clip, "latency_s": rng.uniform(0.01, 0.1)})
    return pd.DataFrame(rows)


@pytest.fixture
def figures(monkeypatch, tmp_path):
    """The plot functions' figures as they would be saved (saving skipped: these tests inspect artists)."""
    from bench.report import plots as P
    figs = []
    monkeypatch.setattr(P, "_save", lambda fig, out, name: (figs.append(fig), (out / f"{name}.png",
                                                                            out / f"{name}.svg"))[1])
    return SimpleNamespace(P=P, figs=figs, out=tmp_path)


def _legend_texts(fig):
    (legend,) = fig.legends
    return [t.get_text() for t in legend.get_texts()]


def test_many_models_get_small_multiples_with_one_legend_entry_per_setting(figures):
    P = figures.P
    df = _synthetic_frame(25)                                             # 25 models x 3 CFG = 75 series
    for x in ("steps", "cfg"):
        assert isinstance(P.against(df, "d", x, figures.out, SPECS), P.Plot)
    assert isinstance(P.tradeoff(df, "d", figures.out, SPECS), P.Plot)
    keys = (["cfg 1", "cfg 2", "cfg 3"], ["steps 1", "steps 2", "steps 4"], ["steps=1", "steps=2", "steps=4"])
    for fig, want, panels in zip(figures.figs, keys, (3 * 25, 3 * 25, 25)):
        assert _legend_texts(fig) == want                                 # one entry per setting, not per series
        assert "one panel per model" in fig.get_suptitle()
        assert len([a for a in fig.axes if a.get_visible()]) == panels   # a panel per model (and metric)
    small = _synthetic_frame(3, steps=(1, 2), cfgs=(1.0, 2.0))            # 6 series: one panel, every series
    figures.figs.clear()
    P.against(small, "d", "steps", figures.out, SPECS)
    P.tradeoff(small, "d", figures.out, SPECS)
    steps_fig, trade_fig = figures.figs
    assert _legend_texts(steps_fig) == [f"m{i:02d} cfg {c:g}" for i in range(3) for c in (1.0, 2.0)]
    assert _legend_texts(trade_fig) == [f"m{i:02d} steps={s}" for i in range(3) for s in (1, 2)]
    assert "one panel" not in steps_fig.get_suptitle() and "one panel" not in trade_fig.get_suptitle()


def test_tradeoff_draws_one_arrow_per_finite_consecutive_pair_along_cfg(figures):
    from matplotlib.quiver import Quiver
    P = figures.P
    holes = {(0, 1, 2.0), (1, 4, 1.0), (2, 2, 3.0), (2, 2, 1.0)}
    df = _synthetic_frame(3, cfgs=(3.0, 1.0, 2.0), holes=holes)          # stored out of CFG order
    assert isinstance(P.tradeoff(df, "d", figures.out, SPECS), P.Plot)
    (fig,) = figures.figs
    expected = []
    for (_m, _s), g in df.groupby(["model", "steps"]):
        xy = g.sort_values("cfg")[["clip_score", "fid"]].to_numpy(float)
        for a, b in zip(xy[:-1], xy[1:]):
            if np.isfinite(a).all() and np.isfinite(b).all():
                expected.append((*a, *(b - a)))
    assert len(expected) == 3 * 3 * 2 - 5                                # 18 pairs, 5 touch a hole
    axes = [a for a in fig.axes if a.get_visible()]                      # PickScore absent: a panel per model
    assert len(axes) == 3
    quivers = [[c for c in ax.collections if isinstance(c, Quiver)] for ax in axes]
    assert all(len(q) == 1 for q in quivers)                              # each panel's arrows: one artist
    got = np.concatenate([np.column_stack([q.X, q.Y, q.U, q.V]) for (q,) in quivers])
    np.testing.assert_allclose(got[np.lexsort(got.T[::-1])], np.array(sorted(expected)))
