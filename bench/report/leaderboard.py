"""Per-dataset leaderboards: each model's best configuration by MMHM beside its FID-best configuration.

``leaderboard(df, specs)`` is the data (one row per model); ``markdown(df, suite, specs)`` renders a suite's
leaderboards as Markdown. The HTML page renders the same frame (bench.report.html). The two picks are part of
the leaderboard's definition (MMHM and its fidelity input, both from `bench.composite`; each picked by its
stored direction); every other ranked metric in the frame (`Specs.ranked`) is shown beside them.
"""

from __future__ import annotations

import html

import pandas as pd

from bench import composite
from bench.report.directions import MMHM_COLUMNS, MMHM_WHY, MetricSpec, Specs

# (tag, the column that picks the configuration)
PICKS = ((f"{composite.NAME}-best", composite.NAME),
         (f"{composite.COLUMNS[composite.FIDELITY]}-best", composite.COLUMNS[composite.FIDELITY]))
TAGS = tuple(tag for tag, _ in PICKS)
CONFIG = ["key", "steps", "cfg", "solver"]
COST = ["nfe", "latency_s"]                 # timing columns shown beside the metrics


def _up(specs: Specs, col: str) -> bool:
    """Whether a pick column is picked at its maximum (its stored direction; lower is the default)."""
    s = specs.get(col)
    return bool(s is not None and s.higher_is_better)


def board_metrics(df: pd.DataFrame, specs: Specs) -> list[str]:
    """The metric columns of a leaderboard of ``df``: MMHM, then every ranked metric with a value in ``df``."""
    return [composite.NAME, *(m for m in specs.ranked(df) if m != composite.NAME)]


def is_missing(v) -> bool:
    if v is None:
        return True
    try:
        return bool(pd.isna(v))
    except (TypeError, ValueError):
        return False


def fmt(v, spec: MetricSpec | None = None) -> str:
    """A cell value as text: '–' for missing, a metric's stored format (4 significant digits by default) for
    floats, whole numbers without '.0'."""
    if is_missing(v):
        return "–"
    if isinstance(v, bool):
        return "yes" if v else "no"
    if isinstance(v, float):
        if spec is not None and spec.fmt != ".4g":
            return spec.format(v)
        return str(int(v)) if v.is_integer() and abs(v) < 1e6 else f"{v:.4g}"
    return str(v)


def leaderboard(df: pd.DataFrame, specs: Specs) -> pd.DataFrame:
    """One row per model (ok cells of one dataset): its MMHM-best and FID-best configurations side by side.

    Columns: model, family, ``{tag} {col}`` for tag in TAGS and col in CONFIG + `board_metrics` + COST,
    ``picks agree`` (None when either pick is missing). Sorted by the MMHM-best MMHM, models without MMHM
    last, then by the FID-best FID (best first by its direction).
    """
    ok = df[df["status"] == "ok"]
    cols = CONFIG + board_metrics(df, specs) + COST
    rows = []
    for model, g in ok.groupby("model", sort=True):
        best = {}
        for tag, col in PICKS:
            pick = "idxmax" if _up(specs, col) else "idxmin"
            best[tag] = g.loc[getattr(g[col], pick)()] if col in g and g[col].notna().any() else None
        row = {"model": model, "family": g["family"].iloc[0] if "family" in g else None}
        for tag, b in best.items():
            for c in cols:
                row[f"{tag} {c}"] = None if b is None or c not in b.index else b[c]
        m, f = best.values()
        row["picks agree"] = None if m is None or f is None else bool(m["key"] == f["key"])
        rows.append(row)
    out = pd.DataFrame(rows, columns=["model", "family"] + [f"{t} {c}" for t in TAGS for c in cols]
                       + ["picks agree"])
    if not out.empty:
        keys = [(f"{tag} {col}", col) for tag, col in PICKS if f"{tag} {col}" in out.columns]   # a store may
        if keys:                                                                 # lack FID (or MMHM's inputs)
            out = out.sort_values([k for k, _ in keys], ascending=[not _up(specs, c) for _, c in keys],
                                  na_position="last", kind="stable").reset_index(drop=True)
    return out


def lacking_mmhm(df: pd.DataFrame) -> pd.DataFrame:
    """Ok cells of MMHM-eligible families that have no MMHM, with a ``lacks`` column naming the missing inputs."""
    ok = df[df["status"] == "ok"]
    if "family" in ok.columns:
        ok = ok[ok["family"] != "real"]
    lacks = [[c for c in MMHM_COLUMNS if c not in ok.columns or is_missing(r[c])] for _, r in ok.iterrows()]
    out = ok.assign(lacks=lacks)
    return out[[bool(x) for x in lacks]]


def smoke_label(limit) -> str:
    """'smoke run (N samples)' for a smoke run's cap (`bench run --limit N`), '' for a full cell."""
    return "" if is_missing(limit) else f"smoke run ({int(limit)} samples)"


SMOKE_WHY = "each cell was scored on its first few samples to check the suite end to end: not results"


def boards(sdf: pd.DataFrame):
    """(dataset, smoke cap or None, rows) of each leaderboard: per dataset its full cells, then each smoke run's
    cap apart, so a smoke cell is never ranked against a full one."""
    limits = sdf["limit"] if "limit" in sdf.columns else pd.Series(pd.NA, index=sdf.index)
    for dataset, g in sdf.groupby("dataset", sort=True):
        lim = limits.loc[g.index]
        caps = sorted({int(v) for v in lim.dropna()})
        for cap in ([None] if lim.isna().any() else []) + caps:
            yield dataset, cap, (g[lim.isna()] if cap is None else g[lim == cap])


def md_cell(v, spec: MetricSpec | None = None) -> str:
    """A Markdown table cell: HTML-escaped (so a name like <script> stays text) and '|' escaped."""
    return html.escape(fmt(v, spec)).replace("|", "\\|").replace("\n", " ")


def markdown_table(df: pd.DataFrame, cols: list[str], headers: list[str] | None = None,
                   specs: list[MetricSpec | None] | None = None) -> str:
    keep = [i for i, c in enumerate(cols) if c in df.columns]
    headers = [headers[i] for i in keep] if headers else [cols[i] for i in keep]
    specs = [specs[i] for i in keep] if specs else [None] * len(keep)
    cols = [cols[i] for i in keep]
    lines = ["| " + " | ".join(headers) + " |", "|" + "|".join("---" for _ in cols) + "|"]
    for _, r in df.iterrows():
        lines.append("| " + " | ".join(md_cell(r[c], s) for c, s in zip(cols, specs)) + " |")
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


def board_view(lb: pd.DataFrame, metrics: list[str]) -> pd.DataFrame:
    """The leaderboard as display columns (shared by Markdown and HTML): per tag its config, ``metrics``
    (`board_metrics`), the cost columns and a short key."""
    v = pd.DataFrame({"model": lb["model"], "family": lb["family"]})
    for tag in TAGS:
        v[f"{tag} config"] = [_config(r, tag) for _, r in lb.iterrows()]
        for c in metrics + COST:
            v[f"{tag} {c}"] = lb[f"{tag} {c}"]
        v[f"{tag} key"] = lb[f"{tag} key"].map(lambda k: k[:12] if isinstance(k, str) else None)
    v["picks agree"] = lb["picks agree"]
    return v


def md_columns(metrics: list[str]) -> list[str]:
    """The Markdown leaderboard's columns: per tag its config, its own pick metric first, the other metrics
    (no cost columns), its key."""
    cols = ["model", "family"]
    for tag, col in PICKS:
        cols += [f"{tag} config", f"{tag} {col}", *(f"{tag} {m}" for m in metrics if m != col), f"{tag} key"]
    return cols + ["picks agree"]


def _md_header(col: str, specs: Specs) -> str:
    """'mmhm-best fid' -> 'mmhm-best FID ↓': display name and declared direction of a metric column."""
    tag, _, c = col.rpartition(" ")
    return f"{tag} {specs.label(c)} {specs.arrow(c)}".strip() if c in specs else col


def agree_text(v) -> str:
    if is_missing(v):
        return "–"
    return "yes" if v else "**NO**"


def markdown(sdf: pd.DataFrame, suite: str, specs: Specs) -> str:
    """A suite's leaderboards, one section per dataset, with MMHM gaps and failed cells explained."""
    parts = [f"# {html.escape(str(suite))}: leaderboards\n",
             "Each model's best configuration by MMHM next to its FID-best one (ok cells; MMHM per dataset). "
             "`picks agree` is **NO** where the two picks are different cells. Missing values are `–`. "
             "Real-vs-real rows are each metric's floor and get no MMHM by design.\n"]
    for dataset, cap, g in boards(sdf):
        metrics = board_metrics(g, specs)
        view = board_view(leaderboard(g, specs), metrics)
        view["picks agree"] = view["picks agree"].map(agree_text)
        parts.append(f"\n## {html.escape(str(dataset))}" + (f" — {smoke_label(cap)}" if cap else "") + "\n")
        if cap:
            parts.append(f"**{smoke_label(cap).capitalize()}**: {SMOKE_WHY}.\n")
        cols = md_columns(metrics)
        fmts = [specs.get(c.rpartition(" ")[2]) for c in cols]
        parts += [markdown_table(view, cols, [_md_header(c, specs) for c in cols], fmts) if len(view)
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
