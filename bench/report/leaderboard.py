"""Per-dataset leaderboards: each model's best configuration by MMHM beside its FID-best configuration.

``leaderboard(df)`` is the data (one row per model); ``markdown(df)`` renders a suite's leaderboards as
Markdown. The HTML page renders the same frame (bench.report.html).
"""

from __future__ import annotations

import html

import pandas as pd

from bench.report.directions import MMHM_COLUMNS, MMHM_WHY, metric_specs

PICK = ["key", "steps", "cfg", "solver", "fid", "is", "clip_score", "pickscore", "mmhm", "nfe", "latency_s"]
TAGS = ("mmhm-best", "fid-best")


def is_missing(v) -> bool:
    if v is None:
        return True
    try:
        return bool(pd.isna(v))
    except (TypeError, ValueError):
        return False


def fmt(v) -> str:
    """A cell value as text: '–' for missing, 4 significant digits for floats, whole numbers without '.0'."""
    if is_missing(v):
        return "–"
    if isinstance(v, bool):
        return "yes" if v else "no"
    if isinstance(v, float):
        return str(int(v)) if v.is_integer() and abs(v) < 1e6 else f"{v:.4g}"
    return str(v)


def leaderboard(df: pd.DataFrame) -> pd.DataFrame:
    """One row per model (ok cells of one dataset): its MMHM-best and FID-best configurations side by side.

    Columns: model, family, ``{tag} {col}`` for tag in TAGS and col in PICK, ``picks agree`` (None when either
    pick is missing). Sorted by the MMHM-best MMHM, models without MMHM last (then by FID-best FID).
    """
    ok = df[df["status"] == "ok"]
    rows = []
    for model, g in ok.groupby("model", sort=True):
        best = {}
        for tag, col, pick in (("mmhm-best", "mmhm", "idxmax"), ("fid-best", "fid", "idxmin")):
            best[tag] = g.loc[getattr(g[col], pick)()] if col in g and g[col].notna().any() else None
        row = {"model": model, "family": g["family"].iloc[0] if "family" in g else None}
        for tag, b in best.items():
            for c in PICK:
                row[f"{tag} {c}"] = None if b is None or c not in b.index else b[c]
        m, f = best["mmhm-best"], best["fid-best"]
        row["picks agree"] = None if m is None or f is None else bool(m["key"] == f["key"])
        rows.append(row)
    out = pd.DataFrame(rows, columns=["model", "family"] + [f"{t} {c}" for t in TAGS for c in PICK]
                       + ["picks agree"])
    if not out.empty:
        out = out.sort_values(["mmhm-best mmhm", "fid-best fid"], ascending=[False, True], na_position="last",
                              kind="stable").reset_index(drop=True)
    return out


def lacking_mmhm(df: pd.DataFrame) -> pd.DataFrame:
    """Ok cells of MMHM-eligible families that have no MMHM, with a ``lacks`` column naming the missing inputs."""
    ok = df[df["status"] == "ok"]
    if "family" in ok.columns:
        ok = ok[ok["family"] != "real"]
    lacks = [[c for c in MMHM_COLUMNS if c not in ok.columns or is_missing(r[c])] for _, r in ok.iterrows()]
    out = ok.assign(lacks=lacks)
    return out[[bool(x) for x in lacks]]


def md_cell(v) -> str:
    """A Markdown table cell: HTML-escaped (so a name like <script> stays text) and '|' escaped."""
    return html.escape(fmt(v)).replace("|", "\\|").replace("\n", " ")


def markdown_table(df: pd.DataFrame, cols: list[str], headers: list[str] | None = None) -> str:
    keep = [i for i, c in enumerate(cols) if c in df.columns]
    cols = [cols[i] for i in keep]
    headers = [headers[i] for i in keep] if headers else cols
    lines = ["| " + " | ".join(headers) + " |", "|" + "|".join("---" for _ in cols) + "|"]
    for _, r in df.iterrows():
        lines.append("| " + " | ".join(md_cell(r[c]) for c in cols) + " |")
    return "\n".join(lines)


def _config(r, tag: str) -> str:
    steps, cfg, solver = r[f"{tag} steps"], r[f"{tag} cfg"], r[f"{tag} solver"]
    if is_missing(r[f"{tag} key"]):
        return "–"
    if is_missing(steps) and is_missing(cfg) and is_missing(solver):
        return "(no steps or CFG)"
    parts = [(f"{fmt(steps)} step" + ("" if steps == 1 else "s")) if not is_missing(steps) else "steps –",
             f"cfg {fmt(cfg)}" if not is_missing(cfg) else "cfg –"]
    if not is_missing(solver):
        parts.append(str(solver))
    return ", ".join(parts)


def board_view(lb: pd.DataFrame) -> pd.DataFrame:
    """The leaderboard as display columns (shared by Markdown and HTML)."""
    v = pd.DataFrame({"model": lb["model"], "family": lb["family"]})
    for tag in TAGS:
        v[f"{tag} config"] = [_config(r, tag) for _, r in lb.iterrows()]
        for c in ("mmhm", "fid", "is", "clip_score", "pickscore", "nfe", "latency_s"):
            v[f"{tag} {c}"] = lb[f"{tag} {c}"]
        v[f"{tag} key"] = lb[f"{tag} key"].map(lambda k: k[:12] if isinstance(k, str) else None)
    v["picks agree"] = lb["picks agree"]
    return v


MD_COLS = (["model", "family", "mmhm-best config", "mmhm-best mmhm", "mmhm-best fid", "mmhm-best clip_score",
            "mmhm-best pickscore", "mmhm-best key", "fid-best config", "fid-best fid", "fid-best mmhm",
            "fid-best clip_score", "fid-best pickscore", "fid-best key", "picks agree"])


def _md_header(col: str) -> str:
    """'mmhm-best fid' -> 'mmhm-best FID ↓': display name and declared direction of a metric column."""
    tag, _, c = col.rpartition(" ")
    specs = metric_specs()
    return f"{tag} {specs[c].label} {specs[c].arrow}".strip() if c in specs else col


def agree_text(v) -> str:
    if is_missing(v):
        return "–"
    return "yes" if v else "**NO**"


def markdown(sdf: pd.DataFrame, suite: str) -> str:
    """A suite's leaderboards, one section per dataset, with MMHM gaps and failed cells explained."""
    parts = [f"# {html.escape(str(suite))}: leaderboards\n",
             "Each model's best configuration by MMHM next to its FID-best one (ok cells; MMHM per dataset). "
             "`picks agree` is **NO** where the two picks are different cells. Missing values are `–`. "
             "Real-vs-real rows are each metric's floor and get no MMHM by design.\n"]
    for dataset, g in sdf.groupby("dataset", sort=True):
        view = board_view(leaderboard(g))
        view["picks agree"] = view["picks agree"].map(agree_text)
        parts.append(f"\n## {html.escape(str(dataset))}\n")
        parts += [markdown_table(view, MD_COLS, [_md_header(c) for c in MD_COLS]) if len(view)
                  else "No ok cells: nothing to rank.", ""]
        lack = lacking_mmhm(g)
        if not lack.empty:
            parts.append(f"{MMHM_WHY}; {len(lack)} ok cell(s) lack one and have no MMHM: " + "; ".join(
                f"{md_cell(r['model'])} steps={fmt(r['steps'])} cfg={fmt(r['cfg'])} (no {', '.join(r['lacks'])})"
                for _, r in lack.iterrows()) + "\n")
        failed = g[g["status"] != "ok"]
        if not failed.empty:
            parts.append(f"{len(failed)} failed cell(s), not ranked: " + "; ".join(
                f"{md_cell(r['model'])} steps={fmt(r['steps'])} cfg={fmt(r['cfg'])} "
                f"[{str(r['key'])[:12]}]: {md_cell(r['error'])}" for _, r in failed.iterrows()) + "\n")
    return "\n".join(parts) + "\n"
