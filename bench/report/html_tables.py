"""The report page's tables: per-model best-configuration boards, MMHM coverage, failed cells, the full sweep.

Invariants: a board renders `bench.report.leaderboard.leaderboard`'s picks unchanged (same cells, same model
order for the MMHM-best board; the FID-best board is ordered by its own pick, best first); every ranked metric
in the frame (`Specs.ranked`) is a column; a value whose stored interval overlaps the best value's is marked as a
tie; a flagged latency is marked. The sweep lists every stored cell, datasets in the report's order.
"""

from __future__ import annotations

import json
from html import escape

import pandas as pd

from bench.composite import REAL
from bench.report import directions as D
from bench.report.directions import Specs
from bench.report.html_cells import (
    FLAG,
    FLAG_RULE,
    TIE,
    col_label,
    col_title,
    latency_td,
    metric_td,
    mmhm_reason,
    td,
    th,
)
from bench.report.leaderboard import (
    COST,
    PICKS,
    TAGS,
    board_metrics,
    board_view,
    fmt,
    is_missing,
    lacking_mmhm,
    pick_order,
)
from bench.report.ties import intervals, mark_ties, picked

# The sweep table: these cell columns, every ranked metric of the suite (`Specs.ranked`), these timings.
SWEEP_HEAD = ["dataset", "model", "family", "steps", "cfg", "solver", "seed", "status"]
SWEEP_TAIL = ["nfe", "nfe_declared", "latency_s", "throughput_ips"]
TEXT_COLS = {"dataset", "model", "family", "solver", "status"}

MARKS_LEGEND = (f"<p class=legend><b>{TIE}</b>: the value's stored interval (bootstrap CI, or ± std) overlaps the "
                f"best value's, so the two are not told apart; <b>bold</b>: the best in its column. <b>{FLAG}</b>: "
                f"{escape(FLAG_RULE)}. Hover a value for its interval.</p>")


def _board(lb: pd.DataFrame, view: pd.DataFrame, g: pd.DataFrame, tag: str, col: str, specs: Specs,
           metrics: list[str], cls: str) -> str:
    pk = picked(g, lb[f"{tag} key"])
    order = pick_order(pk, tag, col, specs)
    shown = [col, *(m for m in metrics if m != col)]
    ivs = intervals(pk, shown)
    ties = {m: mark_ties(pk, m, ivs.get(m), specs) for m in shown}
    label = tag.replace("-best", "").upper() if tag != TAGS[0] else "MMHM"
    heads = [th("model", "t", "model (family below)"), th("config", "t", f"this model's {label}-best cell")]
    heads += [th(col_label(c, specs), cls, col_title(c, specs) or specs.label(c)) for c in shown + COST]
    if tag != TAGS[0]:
        heads.append(th("same as MMHM-best?", "", "do the MMHM-best and FID-best picks name the same cell?"))
    rows = []
    for i in order:
        r, v, p = lb.iloc[i], view.iloc[i], pk.iloc[i]
        k = r[f"{tag} key"]
        fam = "" if is_missing(v["family"]) else f"<br><small class=fam>{escape(str(v['family']))}</small>"
        tip = f"cell key {k}" if isinstance(k, str) else "no pick (no ok cell with this metric)"
        if tag == TAGS[0] and not isinstance(k, str):
            tip = ("no MMHM for this model: real-vs-real has none by design" if v["family"] == REAL
                   else f"no MMHM: {D.MMHM_WHY}")
        cells = [td(v["model"], "t", None, escape(str(v["model"])) + fam),
                 td(v[f"{tag} config"] if isinstance(k, str) else None, "t cfgt", tip)]
        for c in shown:
            why = mmhm_reason(p) if c == PICKS[0][1] and isinstance(k, str) and is_missing(p.get(c)) else None
            cells.append(metric_td(p, c, specs, cls, ivs.get(c), ties[c].iloc[i], why))
        cells.append(td(p.get("nfe"), cls))
        cells.append(latency_td(p, cls=cls))
        agree, trcls = r["picks agree"], ""
        if tag != TAGS[0]:
            badge = ("–" if is_missing(agree) else "<span class='badge yes'>yes</span>" if agree
                     else "<span class='badge no'>differ</span>")
            cells.append(td(None if is_missing(agree) else int(bool(agree)), "agree", None, badge))
            trcls = " class=disagree" if agree is False else ""
        rows.append(f"<tr{trcls}>{''.join(cells)}</tr>")
    title = f"{'MMHM' if tag == TAGS[0] else label}-best configuration per model"
    return (f"<div><h4>{escape(title)}</h4><div class=scroll><table class='sortable lb {cls}-board'><thead><tr>"
            f"{''.join(heads)}</tr></thead><tbody>{''.join(rows)}</tbody></table></div></div>")


def leaderboard_html(lb: pd.DataFrame, g: pd.DataFrame, specs: Specs) -> str:
    """A dataset's two boards: each model's MMHM-best cell (blue) and its FID-best cell (orange), side by side
    when the window is wide enough, else one above the other."""
    metrics = board_metrics(g, specs)
    view = board_view(lb, metrics)
    boards = [_board(lb, view, g, tag, col, specs, metrics, cls) for (tag, col), cls in zip(PICKS, ("m", "f"))]
    return f"<div class=pair>{''.join(boards)}</div>"


def mmhm_note(sdf: pd.DataFrame) -> str:
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
            "is filled in or averaged.</p><div class=scroll><table><thead><tr><th class=t>dataset</th>"
            "<th class=t>model</th><th>steps</th><th>cfg</th><th class=t>missing</th><th class=t>key</th></tr>"
            f"</thead><tbody>{rows}</tbody></table></div>")


def failed_html(sdf: pd.DataFrame) -> str:
    failed = sdf[sdf["status"] != "ok"]
    head = "<h2 id=failed>Failed cells</h2>"
    if failed.empty:
        return head + "<p class='note ok-note'>No failed cells.</p>"
    rows = "".join(f"<tr class=failed>{td(r['dataset'], 't')}{td(r['model'], 't')}{td(r['steps'])}{td(r['cfg'])}"
                   f"{td(r.get('solver'), 't')}{td(str(r['key'])[:12], 't', str(r['key']))}"
                   f"{td(r.get('error'), 'err')}</tr>" for _, r in failed.iterrows())
    return (head + f"<p class=note>{len(failed)} cell(s) failed; they are stored with their error, are not "
            "ranked or plotted, and a re-run (<code>bench run SUITE</code>) retries them.</p>"
            "<div class=scroll><table><thead><tr><th class=t>dataset</th><th class=t>model</th><th>steps</th>"
            "<th>cfg</th><th class=t>solver</th><th class=t>key</th><th class=t>error</th></tr></thead>"
            f"<tbody>{rows}</tbody></table></div>")


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
            f"<pre class=prov>{escape(text)}</pre></details></td>")


def sweep_html(sdf: pd.DataFrame, prov: pd.DataFrame | None, specs: Specs, dataset_order: list[str]) -> str:
    """Every cell, sortable by any column, filterable, each row's full config and provenance behind its key."""
    ranked = specs.ranked(sdf)
    cols = [c for c in SWEEP_HEAD + ranked + SWEEP_TAIL if c in sdf.columns]
    rank = {d: i for i, d in enumerate(dataset_order)}
    sdf = sdf.iloc[sorted(range(len(sdf)), key=lambda i: rank.get(sdf["dataset"].iloc[i], len(rank)))]
    ivs = intervals(sdf, ranked)
    pmap = {} if prov is None or prov.empty else {r["key"]: r.to_dict() for _, r in prov.iterrows()}
    heads = "".join(th(col_label(c, specs) if c != "cfg" else "cfg", "t" if c in TEXT_COLS else "",
                       col_title(c, specs) or specs.label(c)) for c in cols)
    heads += th("key", "t", "cell key: open for config and provenance")
    rows = []
    for _, r in sdf.iterrows():
        tip = (f"cell key {r['key']}\n{r['model']} on {r['dataset']} · steps {fmt(r.get('steps'))} · "
               f"cfg {fmt(r.get('cfg'))} · solver {fmt(r.get('solver'))} · seed {fmt(r.get('seed'))} · "
               f"plan {fmt(r.get('plan'))} · adapter {fmt(r.get('adapter'))}")
        cells = []
        for c in cols:
            if c == PICKS[0][1]:
                cells.append(td(r[c], "", mmhm_reason(r)))
            elif c in ranked:
                cells.append(metric_td(r, c, specs, iv=ivs.get(c)))
            elif c == "latency_s":
                cells.append(latency_td(r))
            elif c == "status" and r["status"] != "ok":
                cells.append(td(r[c], "t", f"error: {r.get('error')}"))
            else:
                cells.append(td(r[c], "t" if c in TEXT_COLS else "", spec=specs.get(c)))
        cells.append(_provenance_block(r, pmap.get(r["key"])))
        cls = " class=failed" if r["status"] != "ok" else ""
        rows.append(f"<tr{cls} title=\"{escape(tip)}\">{''.join(cells)}</tr>")
    return ("<h2 id=sweep>Full sweep</h2><p>Every stored cell of the suite. Click a header to sort (missing values "
            "stay last); type to filter (every word must match: <i>mini-sit mini-val</i>); hover a row for its key "
            "and configuration; open <i>key</i> for the full config and provenance.<br>"
            "<input id=filter placeholder='filter rows (e.g. a model or dataset)' aria-label='filter the sweep'> "
            f"<span id=filter-count class=meta>{len(rows)} rows</span></p>"
            f"<div class=scroll><table id=sweep-table class='sortable compact'><thead><tr>{heads}</tr></thead>"
            f"<tbody>{''.join(rows)}</tbody></table></div>")
