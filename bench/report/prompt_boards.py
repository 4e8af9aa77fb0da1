"""Leaderboards of prompt-only sets (PartiPrompts, DrawBench, GenEval, a captions file without images).

Such a set has no reference images, so its cells have no FID and no MMHM (a composite never averages a missing
input away): ranking them by MMHM or FID would rank nothing. Their board instead gives, per model, the best
configuration by each per-image alignment metric the cells carry (CLIP Score, PickScore, ImageReward: directions
read from the store), with its counted NFE, and the models side by side at each (steps, CFG) setting two or more
of them share. The sample grid (`bench.report.grids`) shows the same prompts across models.

Invariant: a board is prompt-only exactly when it has ok cells, none of them with an FID value, and some with an
alignment value; every other board keeps the MMHM / FID leaderboards.
"""

from __future__ import annotations

from html import escape

import pandas as pd

from bench import composite
from bench.report.directions import Specs
from bench.report.leaderboard import fmt, markdown_table, setting_text

ALIGN = ("clip_score", "pickscore", "image_reward")
WHY = ("A prompt-only set (no reference images): no FID and so no MMHM; models are ranked by each alignment "
       "metric, at their best configuration and at shared settings")


def _ok(g: pd.DataFrame) -> pd.DataFrame:
    return g[(g["status"] == "ok") & (g["family"] != composite.REAL)] if "family" in g else g[g["status"] == "ok"]


def metrics_of(g: pd.DataFrame) -> list[str]:
    ok = _ok(g)
    return [m for m in ALIGN if m in ok.columns and ok[m].notna().any()]


def is_prompt_only(g: pd.DataFrame) -> bool:
    ok = _ok(g)
    no_fid = "fid" not in ok.columns or ok["fid"].isna().all()
    return not ok.empty and no_fid and bool(metrics_of(g))


def best_table(g: pd.DataFrame, specs: Specs) -> pd.DataFrame:
    """One row per model: for each alignment metric, the configuration with the best value, the value, its NFE;
    models ordered by the first metric's best value (best first)."""
    ok, ms = _ok(g), metrics_of(g)
    rows = []
    for model, cells in ok.groupby("model", sort=True):
        row = {"model": model}
        for m in ms:
            s = specs.get(m)
            up = s is None or bool(s.higher_is_better)
            v = cells[m].dropna()
            if v.empty:
                row.update({f"{m} config": "–", m: None, f"{m} nfe": None})
                continue
            r = cells.loc[v.idxmax() if up else v.idxmin()]
            setting = setting_text(r.get("steps"), r.get("cfg"), r.get("solver"))
            row.update({f"{m} config": setting, m: r[m], f"{m} nfe": r.get("nfe")})
        rows.append(row)
    out = pd.DataFrame(rows)
    if ms and not out.empty:
        s = specs.get(ms[0])
        out = out.sort_values(ms[0], ascending=not (s is None or s.higher_is_better), na_position="last",
                              kind="stable").reset_index(drop=True)
    return out


def matched_table(g: pd.DataFrame, metric: str) -> pd.DataFrame:
    """``metric`` of every model at each (steps, CFG) setting shared by two or more models (rows: settings)."""
    ok = _ok(g)
    if metric not in ok.columns:
        return pd.DataFrame()
    t = ok.pivot_table(index=["steps", "cfg"], columns="model", values=metric, aggfunc="first")
    return t[t.notna().sum(axis=1) >= 2]


def _best_columns(ms: list[str], specs: Specs) -> tuple[list[str], list[str]]:
    """(columns, headers) of `best_table` as shown: per metric its best config, value and NFE."""
    cols, heads = ["model"], ["model"]
    for m in ms:
        cols += [f"{m} config", m, f"{m} nfe"]
        heads += [f"{specs.label(m)}-best config", specs.label(m), "NFE"]
    return cols, heads


def markdown_section(g: pd.DataFrame, dataset: str, specs: Specs) -> str:
    ms = metrics_of(g)
    parts = [f"*{WHY}.*\n", f"### Best configuration per model: {dataset}\n"]
    parts += [markdown_table(best_table(g, specs), *_best_columns(ms, specs)), ""]
    for m in ms:
        t = matched_table(g, m)
        if not t.empty:
            parts.append(f"### {specs.label(m)} at shared settings: {dataset}\n")
            flat = t.reset_index()
            parts += [markdown_table(flat, [str(c) for c in flat.columns]), ""]
    return "\n".join(parts)


def _html_table(df: pd.DataFrame, cols: list[str], heads: list[str]) -> str:
    head = "".join(f"<th>{escape(h)}</th>" for h in heads)
    body = "".join("<tr>" + "".join(f"<td>{escape(fmt(r[c]))}</td>" for c in cols)
                   + "</tr>" for _, r in df.iterrows())
    return f"<div class=scroll><table class=lb><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table></div>"


def html_section(g: pd.DataFrame, dataset: str, specs: Specs) -> str:
    ms = metrics_of(g)
    out = [f"<p class=note>{escape(WHY)}.</p>", "<h3>Best configuration per model</h3>",
           _html_table(best_table(g, specs), *_best_columns(ms, specs))]
    for m in ms:
        t = matched_table(g, m)
        if not t.empty:
            flat = t.reset_index()
            names = [str(c) for c in flat.columns]
            out += [f"<h3>{escape(specs.label(m))} at shared settings</h3>", _html_table(flat, list(flat.columns),
                                                                                        names)]
    return "".join(out)


def headline(sdf: pd.DataFrame, specs: Specs) -> list[str]:
    """One line per prompt-only set: the leader of each alignment metric, its value and configuration."""
    out = []
    for dataset, g in sdf.groupby("dataset", sort=False):
        if not is_prompt_only(g):
            continue
        bt = best_table(g, specs)
        leads = []
        for m in metrics_of(g):
            s = specs.get(m)
            up = s is None or bool(s.higher_is_better)
            v = pd.to_numeric(bt[m], errors="coerce")
            if v.notna().any():
                r = bt.loc[v.idxmax() if up else v.idxmin()]
                leads.append(f"{specs.label(m)}: {r['model']} {fmt(r[m])} ({r[f'{m} config']}, {fmt(r[f'{m} nfe'])} "
                             f"NFE)")
        if leads:
            out.append(f"On {dataset} (prompt-only) the leaders are " + "; ".join(leads) + ".")
    return out
