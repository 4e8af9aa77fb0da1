"""The report page: one HTML file that is the whole report (inline CSS, JS, figures and sample tiles).

Nothing on the page refers to another file or to any URL: figures are PNG data URIs (their PNG and SVG files
are also written beside the page for reuse), sample tiles likewise. Every piece of stored text (model names,
errors, config) goes through ``html.escape``. Missing values are shown as '–' and sort last in either
direction; an MMHM cell without a value says why in its tooltip.

Order: the headline (`bench.report.fair.headline_html`), then per dataset in the suite's order
(`bench.report.context.ReportContext.dataset_order`) its matched-settings table and NFE-budget boards
(`bench.report.fair.fair_html`), then each model's MMHM-best and FID-best cells, with the MMHM bounds used and
their stability (`bench.report.mmhm_view`) beside them; then MMHM coverage, failed cells, plots, sample grids
(class names, a class filter) and the full sweep (sortable, filterable, provenance per row).
"""

from __future__ import annotations

import base64
import io
from datetime import datetime, timezone
from html import escape
from pathlib import Path
from typing import Mapping

import pandas as pd
from PIL import Image

from bench.report import prompt_boards
from bench.report.context import ReportContext
from bench.report.directions import Specs
from bench.report.fair import CSS as FAIR_CSS
from bench.report.fair import fair_html, headline_html
from bench.report.html_cells import col_label, metric_td, mmhm_reason, td
from bench.report.html_static import CSS, JS
from bench.report.html_tables import MARKS_LEGEND, failed_html, leaderboard_html, mmhm_note, sweep_html
from bench.report.leaderboard import PICKS, SMOKE_WHY, boards, fmt, leaderboard, smoke_label, with_images
from bench.report.mmhm_view import note_html
from bench.report.plots import slug
from bench.report.ranks import html_section as rank_html


def data_uri(data: bytes, mime: str = "image/png") -> str:
    return f"data:{mime};base64," + base64.b64encode(data).decode("ascii")


def figure_png(path: Path) -> bytes:
    """A figure's PNG for the page: the file beside it as a 256-colour palette image (a third of its size, the
    same picture to the eye; the file itself stays full colour)."""
    with Image.open(path) as im:
        q = im.convert("RGB").quantize(256, method=Image.Quantize.MEDIANCUT, dither=Image.Dither.NONE)
    buf = io.BytesIO()
    q.save(buf, format="PNG", optimize=True)
    return buf.getvalue()


def _ordered(values, order: list[str]) -> list[str]:
    """The distinct ``values`` in ``order``, any others after it by name."""
    present = {str(v) for v in values if not pd.isna(v)}
    return [v for v in order if v in present] + sorted(present - set(order))


def _header(suite: str, sdf: pd.DataFrame, prov: pd.DataFrame, db: str | None, ctx: ReportContext) -> str:
    n, ok = len(sdf), int((sdf["status"] == "ok").sum())
    datasets = ", ".join(escape(d) for d in _ordered(sdf["dataset"], ctx.dataset_order))
    models = ", ".join(escape(m) for m in _ordered(sdf["model"], ctx.model_order))
    runs = ""
    if prov is not None and not prov.empty:
        rs = prov.drop_duplicates("run_id")
        items = []
        for _, r in rs.iterrows():
            env = r["environment"] if isinstance(r["environment"], dict) else {}
            items.append(f"<code>{escape(str(r['run_id']))}</code> (git {escape(str(env.get('git_sha', '–'))[:10])}, "
                         f"{escape(str(env.get('device_name', env.get('device', '–'))))})")
        runs = f"<br>runs: {'; '.join(items)}"
    when = datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    caps = sorted({int(v) for v in sdf["limit"].dropna()}) if "limit" in sdf.columns else []
    smoke = (f"<p class=note><b>{int(sdf['limit'].notna().sum())} smoke-run cell(s)</b> "
             f"({', '.join(escape(smoke_label(c)) for c in caps)}, from <code>bench run --limit</code>): "
             f"{escape(SMOKE_WHY)}; they are ranked apart from full cells.</p>" if caps else "")
    return (f"<h1>stepbench report: {escape(str(suite))}</h1><p class=meta>{n} cells ({ok} ok, {n - ok} failed) · "
            f"datasets: {datasets} · models: {models}<br>store: <code>{escape(str(db or '–'))}</code> · "
            f"written {when}{runs}</p>{smoke}")


def _aside(g: pd.DataFrame, applied: Mapping | None, source: str | None) -> str:
    """The MMHM bounds a table's MMHM values were computed with, and how stable its ranking is under them."""
    note = note_html(g, applied, source)
    return f"<aside>{note or '<p><b>MMHM bounds</b>: none (no ok model cell has all four MMHM inputs).</p>'}</aside>"


def _headline(sdf: pd.DataFrame, specs: Specs, ctx: ReportContext) -> str:
    """The MMHM / FID headline of the sets with images, then a line per prompt-only set's alignment leaders."""
    imaged, lines = with_images(sdf), prompt_boards.headline(sdf, specs)
    top = headline_html(imaged, specs, ctx) if not imaged.empty or not lines else "<h2>Headline</h2>"
    return top + ("<ul>" + "".join(f"<li>{escape(t)}</li>" for t in lines) + "</ul>" if lines else "")


def _dataset(dataset: str, groups, specs: Specs, ctx: ReportContext, applied: Mapping | None,
             source: str | None, ranks: Mapping | None = None) -> str:
    """One dataset's section: the fair comparison first, then the per-model best cells, bounds beside both (a
    smoke run's board, whose MMHM has bounds of its own, gets its own bounds beneath it)."""
    s = slug(dataset)
    out, aside = [], ""
    if all(prompt_boards.is_prompt_only(g) for _, g in groups):     # no FID, no MMHM (bench.report.prompt_boards)
        body = "".join(prompt_boards.html_section(g, dataset, specs) for _, g in groups)
        return f"<h2 id=ds-{s}>{escape(dataset)}</h2><section class=ds><div>{body}</div></section>"
    for n, (cap, g) in enumerate(groups):
        if n == 0:
            aside = _aside(g, applied, source)
            out.append(fair_html(g, dataset, specs, ctx))
        lb = leaderboard(g, specs)
        title = "Best configuration per model" + (
            f" <span class='badge no' title='{escape(SMOKE_WHY)}'>{escape(smoke_label(cap))}</span>" if cap else "")
        out.append(f"<h3 id=lb-{s}{f'-{int(cap)}' if cap else ''}>{title}</h3>")
        if lb.empty:
            out.append("<p class=note>No ok cells: nothing to rank.</p>")
            continue
        out.append("<p class=legend>Each model's best cell by MMHM (blue) and by FID (orange), over any step count "
                   "and CFG scale: the tables above compare models at the same settings and budgets, this one "
                   "at each model's best. Real-vs-real is each metric's reference line (no MMHM by design).</p>")
        out.append(leaderboard_html(lb, g, specs))
        out.append(rank_html((ranks or {}).get((dataset, cap))))
        if n > 0:
            out.append(note_html(g, applied, source))
    return f"<h2 id=ds-{s}>{escape(dataset)}</h2><section class=ds><div>{''.join(out)}</div>{aside}</section>"


def _plots(plots, skipped: list[str], order: list[str]) -> str:
    out = ["<h2 id=plots>Plots</h2>", "<p>Directions in titles come from each metric's declaration, stored beside "
           "its values. Each figure is also written beside this page as a PNG and an SVG file (same name as its "
           "kind and dataset).</p>"]
    for dataset in _ordered({p.dataset for p in plots}, order):
        out.append(f"<h3 id=plots-{slug(dataset)}>{escape(dataset)}</h3>")
        for p in (p for p in plots if p.dataset == dataset):
            uri = data_uri(figure_png(Path(p.png)))
            out.append(f"<figure><img src='{uri}' alt='{escape(p.title)}: {escape(dataset)}'>"
                       f"<figcaption>{escape(p.caption)} <small>({escape(Path(p.png).name)}, "
                       f"{escape(Path(p.svg).name)})</small></figcaption></figure>")
    if skipped:
        out.append("<p class=note>Not drawn: " + "; ".join(escape(s) for s in skipped) + "</p>")
    return "\n".join(out)


def _class_filter(g, gid: str) -> str:
    names = sorted({lab for lab, c in zip(g.labels, g.classes) if c is not None})
    if len(names) < 2:
        return ""
    opts = "".join(f"<option value='{escape(n)}'>{escape(n)} ({g.labels.count(n)})</option>" for n in names)
    return (f"<p><label>show class <select class=classfilter data-grid={gid}><option value=''>all classes"
            f"</option>{opts}</select></label></p>")


def _grids(grids, specs: Specs) -> str:
    out, (_, mm), (_, fid) = ["<h2 id=grids>Sample grids</h2>"], *PICKS
    if not grids:
        return out[0] + "<p class=note>No kept samples in the store (suite <code>keep_samples: 0</code>?).</p>"
    out.append("<p>The same sample ids across every model, step count and CFG scale: sample <i>i</i>'s noise and "
               "class depend only on (seed, <i>i</i>), so a column compares like with like; each column is headed "
               "by its sample id and class (on a caption set: its caption, the same prompt for every model). "
               "Small images are upscaled with nearest-neighbour. Click a dataset to "
               "open or close its grid; choose a class to see only its columns.</p>")
    for n, g in enumerate(grids):
        gid = f"grid-{n}"
        heads = "".join(f"<th class=tile data-class='{escape(lab)}' title='sample {i}: {escape(lab)}'>#{i}<br>"
                        f"{escape(lab)}</th>" for i, lab in zip(g.sample_ids, g.labels))
        rows = []
        for r, pngs in g.rows:
            tip = f"cell key {r['key']}"
            tiles = "".join(f"<td class=tile data-class='{escape(lab)}'><img src='{data_uri(png)}' width={g.tile} "
                            f"height={g.tile} alt='sample {i} ({escape(lab)}) of {escape(str(r['model']))}'></td>"
                            for i, lab, png in zip(g.sample_ids, g.labels, pngs))
            rows.append(f"<tr title='{escape(tip)}'>{td(r['model'], 't')}{td(r['steps'])}{td(r['cfg'])}"
                        f"{td(r.get('solver'), 't')}{metric_td(r, fid, specs)}{td(r.get(mm), '', mmhm_reason(r))}"
                        f"{tiles}</tr>")
        note = f"<p class=note>{escape(g.note)}</p>" if g.note else ""
        out.append(f"<details class=gd{' open' if n == 0 else ''}><summary><h3>{escape(g.dataset)} · seed "
                   f"{escape(fmt(g.seed))} <small>({len(g.rows)} cells)</small></h3></summary>{note}"
                   f"{_class_filter(g, gid)}<div class=scroll><table class=grid id={gid}>"
                   f"<thead><tr><th class=t>model</th><th>steps</th><th>cfg</th><th class=t>solver</th>"
                   f"<th>{escape(col_label(fid, specs))}</th><th>{escape(col_label(mm, specs))}</th>{heads}</tr>"
                   f"</thead><tbody>{''.join(rows)}</tbody></table></div></details>")
    return "\n".join(out)


def page(suite: str, sdf: pd.DataFrame, plots, skipped: list[str], grids, prov: pd.DataFrame | None,
         specs: Specs, ctx: ReportContext, db: str | None = None, applied: Mapping | None = None,
         bounds_source: str | None = None, ranks: Mapping | None = None) -> str:
    """The whole page of one suite; ``specs`` (`bench.report.directions`) tells each column what it is, ``ctx``
    the suite's dataset and model order and natural CFG scales; ``applied``: the saved MMHM bounds the frame's
    MMHM was computed with (``{dataset or "*": bounds}``, from ``bounds_source``), None when computed from it;
    ``ranks``: (dataset, cap) -> `bench.report.ranks.BoardStats` (rank intervals under each board)."""
    groups: dict[str, list] = {}
    for dataset, cap, g in boards(sdf, ctx.dataset_order):
        groups.setdefault(str(dataset), []).append((cap, g))
    sections = [_dataset(d, gs, specs, ctx, applied, bounds_source, ranks) for d, gs in groups.items()]
    body = "\n".join([
        _header(suite, sdf, prov, db, ctx), f"<div class=headline>{_headline(sdf, specs, ctx)}</div>",
        f"<div id=leaderboards>{MARKS_LEGEND}{''.join(sections)}</div>", mmhm_note(with_images(sdf)), failed_html(sdf),
        _plots(plots, skipped, ctx.dataset_order), _grids(grids, specs), sweep_html(sdf, prov, specs,
                                                                                  ctx.dataset_order)])
    links = [(f"ds-{slug(d)}", d, "ds") for d in groups] + [
        (a, t, "") for a, t in (("mmhm", "MMHM"), ("failed", "Failed"), ("plots", "Plots"), ("grids", "Samples"),
                                ("sweep", "Sweep"))]
    nav = "".join(f"<a href='#{escape(a)}'{' class=navds' if c else ''}>{escape(t)}</a>" for a, t, c in links)
    return ("<!DOCTYPE html><html lang=en><head><meta charset=utf-8>"
            "<meta name=viewport content='width=device-width,initial-scale=1'>"
            f"<title>stepbench · {escape(str(suite))}</title><style>{CSS}{FAIR_CSS}</style></head><body>"
            f"<nav><b style='color:#fff'>stepbench</b>{nav}</nav><main>{body}</main><script>{JS}</script>"
            "</body></html>\n")
