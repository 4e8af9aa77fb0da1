"""The fair comparison: models side by side at matched settings and at matched NFE budgets.

A leaderboard of each model's best configuration (bench.report.leaderboard) compares a 1-step cell with a
32-NFE one. The two views here compare like with like:

- `matched_settings`: rows are models, columns the (steps, CFG) settings that at least two models share, cells
  the metrics of that very cell (MMHM, FID, CLIP, Pick and the counted NFE). A model whose suite entry declares
  ``natural_cfg`` (its own guidance scale, `bench.report.context`) also enters a (steps, "natural") column with
  the cell at that scale, so the paper's grid (steps {1, 25} x CFG {7, natural}) is one table.
- `budget_boards`: for each NFE budget 1, 2, 4, ... up to the smallest power of two >= the largest counted NFE
  (``nfe``: CFG that doubles the network calls counts twice), each model's best ok cell whose counted NFE is
  within the budget, by MMHM and by FID (each picked in its stored direction).

The cells used (`fair_cells`): real-vs-real rows (family ``real``) never, and a smoke run's capped cells only
when the frame holds no full cell. MMHM is the frame's ``mmhm`` column as `bench.composite.add_mmhm` computed it
(bounds over the whole dataset, not over one setting or budget). Missing is NaN, never 0.

The winners (`winners`), decided from the data and not from model families: the **one-step winner** is the
model that leads by MMHM at budget 1 (so among the models usable at 1 NFE; None when no model has an ok cell
within 1 NFE); the **multi-step winner** is the model that leads by MMHM at the largest budget. A tie (equal
values) names every tied model. Within one model, equal values are broken by fewer NFE, then fewer steps, then
lower CFG, so every pick is deterministic.

Renderers `fair_html` / `fair_markdown` write both tables of one dataset with anchors ``matched-<slug>`` and
``budget-<slug>``; the budget section opens with the two winners. Every name is HTML-escaped. The headline
sentences live in `bench.report.headline` (re-exported here). Torch-free.
"""

from __future__ import annotations

import html
import math

import numpy as np
import pandas as pd

from bench import composite
from bench.composite import REAL
from bench.report.context import ReportContext, context_for
from bench.report.directions import Specs
from bench.report.headline import (
    Lead,
    config_text,
    headline,
    headline_html,
    headline_markdown,
    label_of,
    lead_at,
    leader_changes,
    md_text,
    num_text,
    winner_lines,
    winners,
)
from bench.report.leaderboard import PICKS, fmt, is_missing
from bench.report.sanitize import file_name as slug  # = bench.report.plots.slug

NATURAL = "natural"
MMHM = composite.NAME
FID = composite.COLUMNS[composite.FIDELITY]
BENEATH = (FID, *(composite.COLUMNS[m] for m in composite.ALIGNMENT))     # shown small under MMHM
METRICS = (MMHM, *BENEATH)
FIELDS = (*METRICS, "nfe", "cfg", "status", "cells")          # the fields of a matched-settings cell
PICKED = ("key", "steps", "cfg", "solver", "nfe", *METRICS)     # what a budget board keeps of a pick
MD_COLUMNS = 9                                                  # value columns per Markdown table
CSS = (".fair td,.fair th{padding:2px 6px;vertical-align:top;text-align:right}.fair td:first-child,"
       ".fair th:first-child{text-align:left}.fair .big{font-size:1.15em}.fair small{color:#555}"
       ".fair .lead .big{font-weight:bold}.winners{margin:2px 0}")


def matched_anchor(dataset) -> str:
    return f"matched-{slug(str(dataset))}"


def budget_anchor(dataset) -> str:
    return f"budget-{slug(str(dataset))}"


def higher(specs: Specs, col: str) -> bool:
    """The stored direction of a pick column (MMHM: higher; anything undeclared: lower)."""
    s = specs.get(col) if specs is not None else None
    if s is not None and s.higher_is_better is not None:
        return s.higher_is_better
    return col == MMHM


def fair_cells(g: pd.DataFrame) -> pd.DataFrame:
    """The cells the fair views compare: no real-vs-real rows; full cells only where the frame has any."""
    out = g
    if "family" in out.columns:
        out = out[out["family"].fillna("") != REAL]
    if "limit" in out.columns and out["limit"].isna().any():
        out = out[out["limit"].isna()]
    return out


def _best(rows: pd.DataFrame, col: str, up: bool):
    """The row with the best value of ``col`` (ties: fewer NFE, fewer steps, lower CFG), or None."""
    if col not in rows.columns:
        return None
    rows = rows[rows[col].notna()]
    if rows.empty:
        return None
    by = [c for c in (col, "nfe", "steps", "cfg") if c in rows.columns]
    return rows.sort_values(by, ascending=[not up] + [True] * (len(by) - 1), kind="stable").iloc[0]


def _value(r, col):
    return np.nan if r is None or col not in r.index or is_missing(r[col]) else r[col]


# ---------------------------------------------------------------- matched settings


def _setting_order(s):
    steps, cfg = s
    return (steps, cfg == NATURAL, 0.0 if cfg == NATURAL else cfg)


def matched_settings(g: pd.DataFrame, specs: Specs, ctx: ReportContext | None = None) -> pd.DataFrame:
    """One dataset's models at the settings at least two models share.

    Index: model (in ``ctx.model_order``). Columns: a MultiIndex (steps, cfg, field) with cfg a scale or
    `NATURAL`, settings ordered by steps, then CFG, natural last; fields `FIELDS` (``cfg``: the scale the cell
    used, which for a natural column is the model's own; ``status``: 'ok' or the failed cell's status;
    ``cells``: how many cells match, e.g. several solvers, of which the MMHM-best ok one is shown). A model
    without a cell at a setting has NaN there (``cells`` 0).
    """
    ctx = ctx or context_for(None, g)
    c = fair_cells(g)
    if "steps" in c.columns and "cfg" in c.columns:
        c = c[c["steps"].notna() & c["cfg"].notna()]
    else:
        c = c.iloc[0:0]
    members: dict[tuple, dict[str, list]] = {}
    for idx, r in c.iterrows():
        m, steps, cfg = str(r["model"]), int(r["steps"]), round(float(r["cfg"]), 6)
        members.setdefault((steps, cfg), {}).setdefault(m, []).append(idx)
        nat = ctx.natural_cfg.get(m)
        if nat is not None and math.isclose(cfg, nat, rel_tol=1e-9, abs_tol=1e-9):
            members.setdefault((steps, NATURAL), {}).setdefault(m, []).append(idx)
    settings = sorted((s for s, ms in members.items() if len(ms) >= 2), key=_setting_order)
    models = ctx.sort_models(str(m) for m in c["model"]) if len(c) else []
    up = higher(specs, MMHM)
    data = {}
    for s in settings:
        for m in models:
            rows = c.loc[members[s].get(m, [])]
            ok = rows[rows["status"] == "ok"] if "status" in rows.columns else rows
            pick = _best(ok, MMHM, up)
            if pick is None and len(rows):
                pick = ok.iloc[0] if len(ok) else rows.iloc[0]
            for f in FIELDS:
                if f == "cells":
                    v = len(rows)
                elif f == "status":
                    v = None if pick is None else str(pick.get("status", "ok"))
                else:
                    v = _value(pick, f)
                data.setdefault((*s, f), []).append(v)
    cols = pd.MultiIndex.from_tuples(list(data), names=["steps", "cfg", "field"]) if data else \
        pd.MultiIndex.from_tuples([], names=["steps", "cfg", "field"])
    return pd.DataFrame(data, index=pd.Index(models, name="model"), columns=cols)


def settings_of(table: pd.DataFrame) -> list[tuple]:
    """The (steps, cfg) settings of a `matched_settings` table, in its column order."""
    return list(dict.fromkeys((s, cfg) for s, cfg, _ in table.columns))


def setting_label(s: tuple) -> str:
    steps, cfg = s
    return f"{steps} step{'' if steps == 1 else 's'}, " + ("natural CFG" if cfg == NATURAL else f"cfg {fmt(cfg)}")


# ---------------------------------------------------------------- NFE budgets


def budgets_for(max_nfe: float) -> list[int]:
    """1, 2, 4, ... up to the smallest power of two >= ``max_nfe``."""
    out = [1]
    while out[-1] < max_nfe:
        out.append(out[-1] * 2)
    return out


def budget_boards(g: pd.DataFrame, specs: Specs) -> pd.DataFrame:
    """One row per (budget, model): the model's best ok cell with counted NFE <= budget, by MMHM and by FID.

    Columns: budget, model, family, ``within`` (ok cells within the budget), ``{tag} {field}`` for tag in
    leaderboard.PICKS' tags and field in `PICKED` (NaN when the model has no cell within the budget), and per tag
    ``{tag} rank`` (1 = best; ties share the rank; NaN without a value) and ``{tag} lead`` (rank 1). Models in
    order of appearance, budgets ascending. Empty when no ok cell has a counted NFE.
    """
    c = fair_cells(g)
    cols = ["budget", "model", "family", "within", *(f"{t} {f}" for t, _ in PICKS for f in PICKED),
            *(f"{t} {x}" for t, _ in PICKS for x in ("rank", "lead"))]
    if "nfe" not in c.columns or c.empty:
        return pd.DataFrame(columns=cols)
    ok = c[(c["status"] == "ok") & c["nfe"].notna() & (c["nfe"] > 0)] if "status" in c.columns else \
        c[c["nfe"].notna() & (c["nfe"] > 0)]
    if ok.empty:
        return pd.DataFrame(columns=cols)
    models = list(dict.fromkeys(str(m) for m in c["model"]))
    family = {str(m): f for m, f in zip(c["model"], c["family"])} if "family" in c.columns else {}
    rows = []
    for b in budgets_for(float(ok["nfe"].max())):
        within_b = ok[ok["nfe"] <= b + 1e-9]
        for m in models:
            sub = within_b[within_b["model"].astype(str) == m]
            row = {"budget": b, "model": m, "family": family.get(m), "within": len(sub)}
            for tag, col in PICKS:
                pick = _best(sub, col, higher(specs, col))
                row.update({f"{tag} {f}": _value(pick, f) for f in PICKED})
            rows.append(row)
    out = pd.DataFrame(rows)
    for tag, col in PICKS:
        v = pd.to_numeric(out[f"{tag} {col}"], errors="coerce")
        out[f"{tag} rank"] = v.groupby(out["budget"]).rank(method="min", ascending=not higher(specs, col))
        out[f"{tag} lead"] = out[f"{tag} rank"] == 1
    return out[cols]


# ---------------------------------------------------------------- rendering


MATCHED_NOTE = ("Every model at the same steps and CFG{natural}. Each cell: {mmhm} (large), then {beneath} and "
                "the counted NFE; the best {mmhm} of each column in bold; – no cell at that setting.")
BUDGET_NOTE = ("Each model's best ok configuration whose counted NFE (CFG that doubles the network calls counts "
               "twice) is within the budget, by {mmhm} and by {fid}; the leader of each budget in bold; – no "
               "configuration within the budget.")


def _notes(specs: Specs, table: pd.DataFrame) -> tuple[str, str]:
    nat = "" if not any(cfg == NATURAL for _, cfg in settings_of(table)) else \
        "; \"natural\" is each model's own scale (natural_cfg in the suite file)"
    beneath = " · ".join(label_of(specs, c) for c in BENEATH)
    return (MATCHED_NOTE.format(natural=nat, mmhm=label_of(specs, MMHM), beneath=beneath),
            BUDGET_NOTE.format(mmhm=label_of(specs, MMHM), fid=label_of(specs, FID)))


def _column_best(table: pd.DataFrame, s: tuple, specs: Specs) -> float:
    v = pd.to_numeric(table[(*s, MMHM)], errors="coerce").dropna()
    return np.nan if v.empty else (v.max() if higher(specs, MMHM) else v.min())


def _matched_cell(table: pd.DataFrame, m: str, s: tuple, specs: Specs) -> tuple[str, str, str, bool] | None:
    """(big, small, nfe line, is column best) of one matched cell; None when the model has no cell there;
    ('failed', ...) for a failed cell."""
    r = table.loc[m]
    if not r[(*s, "cells")]:
        return None
    if r[(*s, "status")] not in ("ok", None):
        return ("failed", "", "", False)
    v = r[(*s, MMHM)]
    big = num_text(specs, MMHM, v)
    small = " · ".join(num_text(specs, c, r[(*s, c)]) for c in BENEATH)
    line = [] if is_missing(r[(*s, "nfe")]) else [f"{fmt(r[(*s, 'nfe')])} NFE"]
    if s[1] == NATURAL:
        line.append(f"cfg {fmt(r[(*s, 'cfg')])}")
    best = _column_best(table, s, specs)
    return big, small, ", ".join(line), not is_missing(v) and not pd.isna(best) and float(v) == float(best)


def _chunks(items: list, n: int = MD_COLUMNS) -> list[list]:
    return [items[i:i + n] for i in range(0, len(items), n)] or [[]]


def _budget_cell(boards: pd.DataFrame, m: str, b: int, tag: str, col: str, specs: Specs):
    r = boards[(boards["budget"] == b) & (boards["model"] == m)]
    if r.empty or is_missing(r.iloc[0][f"{tag} {col}"]):
        return None
    r = r.iloc[0]
    return num_text(specs, col, r[f"{tag} {col}"]), config_text(r, tag), bool(r[f"{tag} lead"])


def _td(big: str, small: list[str], lead: bool) -> str:
    """A value cell: ``big`` large (bold when it leads), each of ``small`` on its own line beneath."""
    big, cls = (f"<strong>{_esc(big)}</strong>", ' class="lead"') if lead else (_esc(big), "")
    return (f'<td{cls}><span class="big">{big}</span>' + "".join(f"<br><small>{_esc(x)}</small>" for x in small if x)
            + "</td>")


def _esc(v) -> str:
    return html.escape(str(v))


def fair_html(g: pd.DataFrame, dataset, specs: Specs, ctx: ReportContext | None = None) -> str:
    """Both fair tables of one dataset as two HTML sections (``matched-<slug>``, ``budget-<slug>``)."""
    ctx = ctx or context_for(None, g)
    table, boards = matched_settings(g, specs, ctx), budget_boards(g, specs)
    mnote, bnote = _notes(specs, table)
    ds = _esc(dataset)
    out = [f'<section id="{_esc(matched_anchor(dataset))}" class="fair-section">',
           f"<h3>Matched settings: {ds}</h3>", f'<p class="note">{_esc(mnote)}</p>']
    settings = settings_of(table)
    if not settings:
        out.append("<p>No (steps, CFG) setting is shared by two models: nothing to match.</p>")
    else:
        out.append('<table class="fair"><thead><tr><th>model</th>' + "".join(
            f"<th>{_esc(setting_label(s))}</th>" for s in settings) + "</tr></thead><tbody>")
        for m in table.index:
            tds = []
            for s in settings:
                c = _matched_cell(table, m, s, specs)
                if c is None:
                    tds.append('<td class="none" title="no cell at this setting">–</td>')
                elif c[0] == "failed":
                    tds.append('<td class="failed">failed</td>')
                else:
                    tds.append(_td(c[0], [c[1], c[2]], c[3]))
            out.append(f"<tr><th>{_esc(m)}</th>{''.join(tds)}</tr>")
        out.append("</tbody></table>")
    out += ["</section>", f'<section id="{_esc(budget_anchor(dataset))}" class="fair-section">',
            f"<h3>Matched NFE budgets: {ds}</h3>"]
    out += [f'<p class="winners"><strong>{_esc(k)}</strong>: {_esc(t)}</p>' for k, t in winner_lines(boards, specs)]
    out.append(f'<p class="note">{_esc(bnote)}</p>')
    if boards.empty:
        out.append("<p>No ok cell has a counted NFE: no budget to compare.</p>")
    budgets = sorted(int(b) for b in boards["budget"].unique()) if not boards.empty else []
    models = ctx.sort_models(boards["model"]) if not boards.empty else []
    for tag, col in PICKS if budgets else ():
        out.append(f'<table class="fair"><caption>best by {_esc(specs.title(col) if specs is not None else col)}'
                   "</caption><thead><tr><th>model</th>" + "".join(f"<th>≤ {b} NFE</th>" for b in budgets)
                   + "</tr></thead><tbody>")
        for m in models:
            tds = []
            for b in budgets:
                c = _budget_cell(boards, m, b, tag, col, specs)
                tds.append(f'<td class="none" title="no configuration within {b} NFE">–</td>' if c is None else
                           _td(c[0], [c[1]], c[2]))
            out.append(f"<tr><th>{_esc(m)}</th>{''.join(tds)}</tr>")
        out.append("</tbody></table>")
    return "\n".join(out + ["</section>"]) + "\n"


def fair_markdown(g: pd.DataFrame, dataset, specs: Specs, ctx: ReportContext | None = None) -> str:
    """Both fair tables of one dataset as Markdown (at most `MD_COLUMNS` value columns per table: a wider grid
    is split into several tables)."""
    ctx = ctx or context_for(None, g)
    table, boards = matched_settings(g, specs, ctx), budget_boards(g, specs)
    mnote, bnote = _notes(specs, table)
    ds = md_text(dataset)
    out = [f'<a id="{_esc(matched_anchor(dataset))}"></a>', f"### Matched settings: {ds}", "", md_text(mnote), ""]
    settings = settings_of(table)
    if not settings:
        out += ["No (steps, CFG) setting is shared by two models: nothing to match.", ""]
    for chunk in _chunks(settings) if settings else []:
        out += ["| model | " + " | ".join(setting_label(s) for s in chunk) + " |",
                "|---|" + "|".join("---" for _ in chunk) + "|"]
        for m in table.index:
            cells = []
            for s in chunk:
                c = _matched_cell(table, m, s, specs)
                cells.append("–" if c is None else "failed" if c[0] == "failed" else
                             ("**%s**" % md_text(c[0]) if c[3] else md_text(c[0])) + "<br>" + md_text(c[1])
                             + ("<br>" + md_text(c[2]) if c[2] else ""))
            out.append(f"| {md_text(m)} | " + " | ".join(cells) + " |")
        out.append("")
    out += [f'<a id="{_esc(budget_anchor(dataset))}"></a>', f"### Matched NFE budgets: {ds}", ""]
    out += [f"**{k}**: {md_text(t)}  " for k, t in winner_lines(boards, specs)]
    out += ["", md_text(bnote), ""]
    if boards.empty:
        out += ["No ok cell has a counted NFE: no budget to compare.", ""]
    budgets = sorted(int(b) for b in boards["budget"].unique()) if not boards.empty else []
    models = ctx.sort_models(boards["model"]) if not boards.empty else []
    for tag, col in PICKS if budgets else ():
        out += [f"Best by {md_text(specs.title(col) if specs is not None else col)}:", ""]
        for chunk in _chunks(budgets):
            out += ["| model | " + " | ".join(f"≤ {b} NFE" for b in chunk) + " |",
                    "|---|" + "|".join("---" for _ in chunk) + "|"]
            for m in models:
                cells = []
                for b in chunk:
                    c = _budget_cell(boards, m, b, tag, col, specs)
                    cells.append("–" if c is None else ("**%s**" % md_text(c[0]) if c[2] else md_text(c[0]))
                                 + f" ({md_text(c[1])})")
                out.append(f"| {md_text(m)} | " + " | ".join(cells) + " |")
            out.append("")
    return "\n".join(out)


__all__ = ["CSS", "NATURAL", "Lead", "budget_anchor", "budget_boards", "budgets_for", "fair_cells", "fair_html",
           "fair_markdown", "headline", "headline_html", "headline_markdown", "lead_at", "leader_changes",
           "matched_anchor", "matched_settings", "setting_label", "settings_of", "winner_lines", "winners"]
