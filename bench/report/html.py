"""The report page: one self-contained HTML file (inline CSS and JS, no external URL of any kind).

Plots are referenced as relative files beside the page; sample-grid strips are embedded as data URIs. Every
piece of stored text (model names, errors, config) goes through ``html.escape``. Missing values are shown as
'–' and sort last in either direction; an MMHM cell without a value says why in its tooltip.
"""

from __future__ import annotations

import base64
import json
from datetime import datetime, timezone
from html import escape
from pathlib import Path

import pandas as pd

from bench.report import directions as D
from bench.report.directions import Specs
from bench.report.leaderboard import (
    COST,
    PICKS,
    SMOKE_WHY,
    TAGS,
    board_metrics,
    board_view,
    boards,
    fmt,
    is_missing,
    lacking_mmhm,
    leaderboard,
    smoke_label,
)

# The sweep table: these cell columns, every ranked metric of the suite (`Specs.ranked`), these timings.
SWEEP_HEAD = ["dataset", "model", "family", "steps", "cfg", "solver", "seed", "status"]
SWEEP_TAIL = ["nfe", "nfe_declared", "latency_s", "throughput_ips"]

CSS = """
body{font:14px/1.45 system-ui,-apple-system,"Segoe UI",Roboto,sans-serif;margin:0;color:#1d2329;background:#fafbfc}
main{max-width:1500px;margin:0 auto;padding:12px 24px 60px}
h1{font-size:24px;margin:8px 0 4px}h2{margin-top:36px;border-bottom:2px solid #d8dee4;padding-bottom:4px}
h3{margin:22px 0 6px}
nav{position:sticky;top:0;background:#24292f;padding:8px 24px;z-index:2}
nav a{color:#fff;margin-right:18px;text-decoration:none;font-weight:600}nav a:hover{text-decoration:underline}
.meta{color:#57606a}.meta code{font-size:12px}
table{border-collapse:collapse;margin:6px 0 10px;background:#fff;font-size:13px}
th,td{border:1px solid #d0d7de;padding:3px 7px;text-align:right;vertical-align:top;white-space:nowrap}
th{background:#f0f3f6}
td.t,th.t{text-align:left}
table.sortable th{cursor:pointer;user-select:none}
table.sortable th:hover{background:#dde4ea}
th[aria-sort=ascending]::after{content:" ▲"}th[aria-sort=descending]::after{content:" ▼"}
tbody tr:nth-child(even){background:#f6f8fa}
.na{color:#8c959f}
.m{background:#eef5ff!important}.f{background:#fff4e8!important}
td.agree{text-align:center}
table.lb,table.compact{font-size:12.5px}
table.lb td,table.lb th,table.compact td,table.compact th{padding:2px 5px}small.fam{color:#57606a;font-size:11px}
table.grid td{vertical-align:middle;padding:1px 6px}
.badge{display:inline-block;padding:0 6px;border-radius:8px;font-size:11px;font-weight:700}
.badge.no{background:#fde2e1;color:#b42318}.badge.yes{background:#dcf3e3;color:#1a7f37}
tr.failed{background:#fff0f0!important}
td.err{white-space:pre-wrap;text-align:left;max-width:700px;color:#b42318;font-family:ui-monospace,monospace;font-size:12px}
.note{background:#fff8c5;border:1px solid #e3d38c;padding:8px 12px;border-radius:6px;max-width:1100px}
.ok-note{background:#dcf3e3;border-color:#9fd4ad}
figure{margin:10px 0 26px;background:#fff;border:1px solid #d0d7de;padding:8px;display:inline-block;max-width:100%}
figure img{max-width:100%;height:auto;display:block}
figcaption{color:#57606a;font-size:12.5px;margin-top:4px}
img.strip{image-rendering:pixelated;display:block}
.ids{display:flex}.ids span{display:inline-block;font-size:11px;text-align:center;color:#57606a;overflow:hidden}
td details summary{cursor:pointer;color:#0969da;font-family:ui-monospace,monospace;font-size:12px}
details.gd summary{cursor:pointer}details.gd summary h3{display:inline-block}
td details pre{text-align:left;white-space:pre-wrap;word-break:break-all;width:460px;font-size:11px;
  background:#f6f8fa;padding:6px;margin:4px 0}
input#filter{padding:4px 8px;width:320px;margin:6px 0}
.scroll{overflow-x:auto}
"""

JS = """
(function(){
  function val(row, i){var c=row.cells[i]; if(!c) return ''; return c.hasAttribute('data-v') ? c.getAttribute('data-v')
    : c.textContent.trim();}
  document.querySelectorAll('table.sortable').forEach(function(t){
    var head=t.tHead.rows[t.tHead.rows.length-1];
    Array.prototype.forEach.call(head.cells, function(th, i){
      th.title = th.title || 'click to sort (missing values stay last)';
      th.addEventListener('click', function(){
        var dir = th.getAttribute('aria-sort')==='ascending' ? 'descending' : 'ascending';
        Array.prototype.forEach.call(head.cells, function(h){h.removeAttribute('aria-sort');});
        th.setAttribute('aria-sort', dir);
        var body=t.tBodies[0], rows=Array.prototype.slice.call(body.rows), s = dir==='ascending' ? 1 : -1;
        rows.sort(function(a, b){
          var x=val(a,i), y=val(b,i);
          if(x==='' || y==='') return (x==='') - (y==='');
          var nx=Number(x), ny=Number(y);
          var c = (!isNaN(nx) && !isNaN(ny)) ? nx-ny : x.localeCompare(y);
          return s*c;
        });
        rows.forEach(function(r){body.appendChild(r);});
      });
    });
  });
  var f=document.getElementById('filter');
  if(f) f.addEventListener('input', function(){
    var q=f.value.toLowerCase();
    document.querySelectorAll('#sweep-table tbody tr').forEach(function(r){
      r.style.display = r.textContent.toLowerCase().indexOf(q) >= 0 ? '' : 'none';});
  });
})();
"""


def _data_v(v) -> str:
    if is_missing(v):
        return ""
    if isinstance(v, bool):
        return str(int(v))
    if isinstance(v, (int, float)):
        return repr(float(v))
    return str(v)


def td(v, cls: str = "", title: str | None = None, text: str | None = None,
       spec: D.MetricSpec | None = None) -> str:
    """A table cell: escaped text (a metric's value in its stored format), sort value in data-v, '–' (class
    na) for missing."""
    missing = is_missing(v) and text is None
    classes = " ".join(c for c in (cls, "na" if missing else "") if c)
    attrs = f' data-v="{escape(_data_v(v))}"'
    if classes:
        attrs += f' class="{classes}"'
    if title:
        attrs += f' title="{escape(title)}"'
    body = text if text is not None else escape(fmt(v, spec))
    return f"<td{attrs}>{body}</td>"


def th(label: str, cls: str = "", title: str | None = None) -> str:
    a = f' class="{cls}"' if cls else ""
    if title:
        a += f' title="{escape(title)}"'
    return f"<th{a}>{escape(label)}</th>"


SHORT = {"nfe": "NFE", "nfe_declared": "NFE decl.", "latency_s": "latency s", "throughput_ips": "img/s"}


def col_label(c: str, specs: Specs) -> str:
    """A compact header: a metric's label plus its stored direction arrow, or a timing's short name."""
    return f"{specs.label(c)} {specs.arrow(c)}".strip() if c in specs else SHORT.get(c, specs.label(c))


def col_title(c: str, specs: Specs) -> str | None:
    if c in specs:
        s = specs[c]
        return f"{s.title}; declared by {s.source}"
    return specs.label(c) if c in SHORT else None


def _mmhm_reason(r: pd.Series) -> str | None:
    if not is_missing(r.get(PICKS[0][1])):
        return None
    if r.get("status") != "ok":
        return "failed cell: no metrics"
    if r.get("family") == "real":
        return "real-vs-real is each metric's floor and gets no MMHM by design"
    lacks = [c for c in D.MMHM_COLUMNS if is_missing(r.get(c))]
    if lacks:
        return f"{D.MMHM_WHY}; this cell lacks {', '.join(lacks)}"
    return "no MMHM for this comparison set"


# -- sections --------------------------------------------------------------------------------------------------

def _header(suite: str, sdf: pd.DataFrame, prov: pd.DataFrame, db: str | None) -> str:
    n, ok = len(sdf), int((sdf["status"] == "ok").sum())
    datasets = ", ".join(escape(str(d)) for d in sorted(sdf["dataset"].dropna().unique()))
    models = ", ".join(escape(str(m)) for m in sorted(sdf["model"].dropna().unique()))
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


def _leaderboards(sdf: pd.DataFrame, specs: Specs) -> str:
    out = ["<h2 id=leaderboards>Leaderboards</h2>",
           "<p>Per dataset, each model's best configuration by MMHM (blue) next to its FID-best configuration "
           "(orange), over ok cells; MMHM is computed per dataset. <b>picks agree</b> says "
           "<span class='badge no'>differ</span> where the two picks are different cells (sort any column by "
           "clicking its header). "
           "Real-vs-real is each metric's floor (no MMHM by design). Hover a config for its cell key.</p>"]
    for dataset, cap, g in boards(sdf):
        lb = leaderboard(g, specs)
        shown = board_metrics(g, specs) + COST
        view = board_view(lb, board_metrics(g, specs))
        by_key = {r["key"]: r for _, r in g.iterrows()}
        heads = [th("model", "t", "model (family below)"),
                 th("picks agree", "", "do the MMHM-best and FID-best picks name the same cell?")]
        for tag, cls in zip(TAGS, ("m", "f")):
            heads.append(th(f"{tag}: config", f"t {cls}"))
            heads += [th(col_label(c, specs), cls, col_title(c, specs) or specs.label(c)) for c in shown]
        rows = []
        for (_, r), (_, full) in zip(view.iterrows(), lb.iterrows()):
            agree = r["picks agree"]
            badge = ("–" if is_missing(agree) else "<span class='badge yes'>yes</span>" if agree
                     else "<span class='badge no'>differ</span>")
            fam = "" if is_missing(r["family"]) else f"<br><small class=fam>{escape(str(r['family']))}</small>"
            cells = [td(r["model"], "t", None, escape(str(r["model"])) + fam),
                     td(None if is_missing(agree) else int(bool(agree)), "agree", None, badge)]
            for tag, cls in zip(TAGS, ("m", "f")):
                k = full[f"{tag} key"]
                tip = f"cell key {k}" if isinstance(k, str) else "no pick (no ok cell with this metric)"
                if tag == "mmhm-best" and not isinstance(k, str):
                    tip = ("no MMHM for this model: real-vs-real has none by design" if r["family"] == "real"
                           else f"no MMHM: {D.MMHM_WHY}")
                cells.append(td(r[f"{tag} config"] if isinstance(k, str) else None, f"t {cls}", tip))
                for c in shown:
                    v = r[f"{tag} {c}"]
                    why = (_mmhm_reason(by_key[k]) if c == PICKS[0][1] and is_missing(v) and isinstance(k, str)
                           else None)
                    cells.append(td(v, cls, why, spec=specs.get(c)))
            cls = " class=disagree" if agree is False else ""
            rows.append(f"<tr{cls}>{''.join(cells)}</tr>")
        title = escape(str(dataset)) + (f" <span class='badge no' title='{escape(SMOKE_WHY)}'>"
                                        f"{escape(smoke_label(cap))}</span>" if cap else "")
        if lb.empty:
            out.append(f"<h3>{title}</h3><p class=note>No ok cells: nothing to rank.</p>")
            continue
        out.append(f"<h3>{title}</h3><div class=scroll><table class='sortable lb'><thead><tr>"
                   f"{''.join(heads)}</tr></thead><tbody>{''.join(rows)}</tbody></table></div>")
    return "\n".join(out)


def _mmhm_note(sdf: pd.DataFrame) -> str:
    lack = lacking_mmhm(sdf)
    head = "<h2 id=mmhm>MMHM coverage</h2>"
    if lack.empty:
        return head + (f"<p class='note ok-note'>{escape(D.MMHM_WHY)}: every ok model cell has all four, "
                       "so every one has an MMHM (real-vs-real rows excepted by design).</p>")
    rows = "".join(f"<tr>{td(r['dataset'], 't')}{td(r['model'], 't')}{td(r['steps'])}{td(r['cfg'])}"
                   f"{td(', '.join(r['lacks']), 't')}{td(str(r['key'])[:12], 't', str(r['key']))}</tr>"
                   for _, r in lack.iterrows())
    return (head + f"<p class=note><b>{escape(D.MMHM_WHY)}.</b> {len(lack)} ok cell(s) lack at least one of them, "
            "so they show no MMHM (–) and are neither ranked by MMHM nor used for its min/max bounds; nothing "
            "is filled in or averaged.</p><table><thead><tr><th class=t>dataset</th><th class=t>model</th>"
            f"<th>steps</th><th>cfg</th><th class=t>missing</th><th class=t>key</th></tr></thead><tbody>{rows}"
            "</tbody></table>")


def _failed(sdf: pd.DataFrame) -> str:
    failed = sdf[sdf["status"] != "ok"]
    head = "<h2 id=failed>Failed cells</h2>"
    if failed.empty:
        return head + "<p class='note ok-note'>No failed cells.</p>"
    rows = "".join(f"<tr class=failed>{td(r['dataset'], 't')}{td(r['model'], 't')}{td(r['steps'])}{td(r['cfg'])}"
                   f"{td(r.get('solver'), 't')}{td(str(r['key'])[:12], 't', str(r['key']))}"
                   f"{td(r.get('error'), 'err')}</tr>" for _, r in failed.iterrows())
    return (head + f"<p class=note>{len(failed)} cell(s) failed; they are stored with their error, are not "
            "ranked or plotted, and a re-run (<code>bench run SUITE</code>) retries them.</p>"
            "<table><thead><tr><th class=t>dataset</th><th class=t>model</th><th>steps</th><th>cfg</th>"
            f"<th class=t>solver</th><th class=t>key</th><th class=t>error</th></tr></thead><tbody>{rows}"
            "</tbody></table>")


def _plots(plots, skipped: list[str], out_dir: Path) -> str:
    out = ["<h2 id=plots>Plots</h2>", "<p>Each figure also as <b>SVG</b> (link under it). Directions in titles "
           "come from each metric's declaration, stored beside its values.</p>"]
    for dataset in sorted({p.dataset for p in plots}):
        out.append(f"<h3>{escape(dataset)}</h3>")
        for p in (p for p in plots if p.dataset == dataset):
            png, svg = p.png.relative_to(out_dir).as_posix(), p.svg.relative_to(out_dir).as_posix()
            out.append(f"<figure><img src='{escape(png)}' alt='{escape(p.title)}: {escape(dataset)}' loading=lazy>"
                       f"<figcaption>{escape(p.caption)} <a href='{escape(png)}'>PNG</a> · "
                       f"<a href='{escape(svg)}'>SVG</a></figcaption></figure>")
    if skipped:
        out.append("<p class=note>Not drawn: " + "; ".join(escape(s) for s in skipped) + "</p>")
    return "\n".join(out)


def _grids(grids, specs: Specs) -> str:
    out, (_, mm), (_, fid) = ["<h2 id=grids>Sample grids</h2>"], *PICKS
    if not grids:
        return out[0] + "<p class=note>No kept samples in the store (suite <code>keep_samples: 0</code>?).</p>"
    out.append("<p>The same sample ids across every model, step count and CFG scale: sample <i>i</i>'s noise and "
               "label depend only on (seed, <i>i</i>), so a column compares like with like. Small images are "
               "upscaled with nearest-neighbour. Click a dataset to open or close its grid.</p>")
    for n, g in enumerate(grids):
        w = g.tile + 2
        ids = "".join(f"<span style='width:{w}px' title='sample {i}, {escape(lab)}'>#{i}<br>{escape(lab)}</span>"
                      for i, lab in zip(g.sample_ids, g.labels))
        rows = []
        for r, png in g.rows:
            uri = "data:image/png;base64," + base64.b64encode(png).decode("ascii")
            tip = f"cell key {r['key']}"
            rows.append(f"<tr>{td(r['model'], 't', tip)}{td(r['steps'])}{td(r['cfg'])}{td(r.get('solver'), 't')}"
                        f"{td(r.get(fid), spec=specs.get(fid))}{td(r.get(mm), '', _mmhm_reason(r))}"
                        f"<td><img class=strip src='{uri}' alt='samples of {escape(str(r['model']))}' "
                        f"title='{escape(tip)}'></td></tr>")
        note = f"<p class=note>{escape(g.note)}</p>" if g.note else ""
        out.append(f"<details class=gd{' open' if n == 0 else ''}><summary><h3>{escape(g.dataset)} · seed "
                   f"{escape(fmt(g.seed))} <small>({len(g.rows)} cells)</small></h3></summary>{note}"
                   "<div class=scroll><table class=grid>"
                   f"<thead><tr><th class=t>model</th><th>steps</th><th>cfg</th><th class=t>solver</th>"
                   f"<th>{escape(col_label(fid, specs))}</th><th>{escape(col_label(mm, specs))}</th>"
                   f"<th class=t><div class=ids>{ids}</div></th></tr></thead><tbody>{''.join(rows)}</tbody>"
                   "</table></div></details>")
    return "\n".join(out)


def _flatten(obj, prefix: str = "") -> list[str]:
    """Nested config as 'a.b.c = value' lines (JSON scalars), compact enough for a table cell."""
    if isinstance(obj, dict) and obj:
        return [line for k, v in obj.items() for line in _flatten(v, f"{prefix}.{k}" if prefix else str(k))]
    return [f"{prefix} = {json.dumps(obj, default=str)}"]


def _provenance_block(r: pd.Series, p: dict | None) -> str:
    info = {"key": r["key"], "run_id": (p or {}).get("run_id"), "config": (p or {}).get("config"),
            "provenance": (p or {}).get("provenance")}
    text = "\n".join(_flatten(info))
    return (f"<td class=t data-v='{escape(str(r['key']))}'><details><summary>{escape(str(r['key'])[:12])}</summary>"
            f"<pre>{escape(text)}</pre></details></td>")


def _sweep(sdf: pd.DataFrame, prov: pd.DataFrame | None, specs: Specs) -> str:
    cols = [c for c in SWEEP_HEAD + specs.ranked(sdf) + SWEEP_TAIL if c in sdf.columns]
    pmap = {} if prov is None or prov.empty else {r["key"]: r.to_dict() for _, r in prov.iterrows()}
    text_cols = {"dataset", "model", "family", "solver", "status"}
    heads = "".join(th(col_label(c, specs) if c != "cfg" else "cfg", "t" if c in text_cols else "",
                       col_title(c, specs) or specs.label(c)) for c in cols)
    heads += th("key", "t", "cell key: open for config and provenance")
    rows = []
    for _, r in sdf.iterrows():
        tip = (f"cell key {r['key']}\n{r['model']} on {r['dataset']} · steps {fmt(r.get('steps'))} · "
               f"cfg {fmt(r.get('cfg'))} · solver {fmt(r.get('solver'))} · seed {fmt(r.get('seed'))} · "
               f"plan {fmt(r.get('plan'))} · adapter {fmt(r.get('adapter'))}")
        cells = []
        for c in cols:
            v = r[c]
            if c == PICKS[0][1]:
                cells.append(td(v, "", _mmhm_reason(r)))
            elif c == "status" and r["status"] != "ok":
                cells.append(td(v, "t", f"error: {r.get('error')}"))
            else:
                cells.append(td(v, "t" if c in text_cols else "", spec=specs.get(c)))
        cells.append(_provenance_block(r, pmap.get(r["key"])))
        cls = " class=failed" if r["status"] != "ok" else ""
        rows.append(f"<tr{cls} title=\"{escape(tip)}\">{''.join(cells)}</tr>")
    return ("<h2 id=sweep>Full sweep</h2><p>Every stored cell of the suite. Click a header to sort (missing values "
            "stay last); hover a row for its key and configuration; open <i>key</i> for the full config and "
            "provenance. <input id=filter placeholder='filter rows (e.g. a model or dataset)'></p>"
            f"<div class=scroll><table id=sweep-table class='sortable compact'><thead><tr>{heads}</tr></thead>"
            f"<tbody>{''.join(rows)}</tbody></table></div>")


def page(suite: str, sdf: pd.DataFrame, plots, skipped: list[str], grids, prov: pd.DataFrame | None,
         out_dir: Path, specs: Specs, db: str | None = None) -> str:
    """The whole page of one suite; ``specs`` (`bench.report.directions`) tells each column what it is."""
    body = "\n".join([
        _header(suite, sdf, prov, db), _leaderboards(sdf, specs), _mmhm_note(sdf), _failed(sdf),
        _plots(plots, skipped, out_dir), _grids(grids, specs), _sweep(sdf, prov, specs)])
    nav = "".join(f"<a href='#{a}'>{t}</a>" for a, t in (("leaderboards", "Leaderboards"), ("mmhm", "MMHM"),
                                                         ("failed", "Failed"), ("plots", "Plots"),
                                                         ("grids", "Samples"), ("sweep", "Sweep")))
    return ("<!DOCTYPE html><html lang=en><head><meta charset=utf-8>"
            "<meta name=viewport content='width=device-width,initial-scale=1'>"
            f"<title>stepbench · {escape(str(suite))}</title><style>{CSS}</style></head><body>"
            f"<nav>{nav}</nav><main>{body}</main><script>{JS}</script></body></html>\n")
