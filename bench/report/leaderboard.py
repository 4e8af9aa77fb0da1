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
        ok = ok[ok["family"] != composite.REAL]
    lacks = [[c for c in MMHM_COLUMNS if c not in ok.columns or is_missing(r[c])] for _, r in ok.iterrows()]
    out = ok.assign(lacks=lacks)
    return out[[bool(x) for x in lacks]]


def smoke_label(limit) -> str:
    """'smoke run (N samples)' for a smoke run's cap (`bench run --limit N`), '' for a full cell."""
    return "" if is_missing(limit) else f"smoke run ({int(limit)} samples)"


SMOKE_WHY = "each cell was scored on its first few samples to check the suite end to end: not results"


def boards(sdf: pd.DataFrame, order: list[str] | None = None):
    """(dataset, smoke cap or None, rows) of each leaderboard: per dataset its full cells, then each smoke run's
    cap apart, so a smoke cell is never ranked against a full one. Datasets in ``order`` (the suite's,
    `bench.report.context`), any others after them by name."""
    limits = sdf["limit"] if "limit" in sdf.columns else pd.Series(pd.NA, index=sdf.index)
    rank = {d: i for i, d in enumerate(order or [])}
    for dataset, g in sorted(sdf.groupby("dataset", sort=True), key=lambda kv: rank.get(kv[0], len(rank))):
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
    if is_missing(r[f"{tag} key"]):
        return "–"
    return setting_text(r[f"{tag} steps"], r[f"{tag} cfg"], r[f"{tag} solver"])


def setting_text(steps, cfg, solver) -> str:
    """A cell's sampling setting as shown in boards: '4 steps, cfg 3, euler'."""
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


def pick_order(pk: pd.DataFrame, tag: str, col: str, specs: Specs) -> list[int]:
    """Row order of a pick's board: the leaderboard's for the MMHM-best board; for the other, best value of its
    own pick column first (stable, missing last), real-vs-real rows (reference lines) after the models."""
    if tag == TAGS[0] or col not in pk.columns:
        return list(range(len(pk)))
    values = pd.to_numeric(pk[col], errors="coerce").reset_index(drop=True)
    order = list(values.sort_values(ascending=not _up(specs, col), na_position="last", kind="stable").index)
    real = set(reference_rows(pk))
    return [i for i in order if i not in real] + [i for i in order if i in real]


def reference_rows(pk: pd.DataFrame) -> list[int]:
    """Positions of real-vs-real rows (family 'real') in a frame of picked cells."""
    fam = pk["family"].reset_index(drop=True) if "family" in pk.columns else pd.Series(dtype=object)
    return [i for i, f in fam.items() if f == composite.REAL]


def flagged(r: pd.Series) -> bool:
    """Whether a cell's latency is flagged as noisy (tidy's ``latency_flagged``; absent or missing: no)."""
    v = r.get("latency_flagged")
    return not is_missing(v) and bool(v)


MD_WIDTH = 10                              # at most this many columns in a Markdown table


def md_tables(metrics: list[str], col: str) -> list[list[str]]:
    """A pick's Markdown tables as column lists (each at most `MD_WIDTH` wide, model first): config, NFE, the
    pick's own metric, MMHM and its inputs, latency; then the other ranked metrics, as many tables as needed."""
    first = [col, *(m for m in metrics if m != col and (m == composite.NAME or m in MMHM_COLUMNS))]
    rest = [m for m in metrics if m not in first]
    tables = [["model", "config", "nfe", *first, "latency_s"]]
    per = MD_WIDTH - 2
    tables += [["model", "config", *rest[i:i + per]] for i in range(0, len(rest), per)]
    return tables


def _md_label(c: str, specs: Specs) -> str:
    return {"nfe": "NFE", "latency_s": "latency s", "config": "config", "model": "model"}.get(
        c, f"{specs.label(c)} {specs.arrow(c)}".strip())


def _md_board(g: pd.DataFrame, lb: pd.DataFrame, tag: str, col: str, specs: Specs, metrics: list[str]) -> list[str]:
    """One pick's tables: the picked cells' values, ``≈`` where a stored interval overlaps the best value's,
    bold the best, ``⚠`` on a latency flagged as noisy."""
    from bench.report.ties import intervals, mark_ties, picked
    pk = picked(g, lb[f"{tag} key"])
    view = pd.DataFrame({"model": lb["model"], "config": [_config(r, tag) for _, r in lb.iterrows()]})
    ivs = intervals(pk, metrics)
    order = pick_order(pk, tag, col, specs)
    out = []
    for cols in md_tables(metrics, col):
        lines = ["| " + " | ".join(_md_label(c, specs) for c in cols) + " |", "|" + "|".join("---" for _ in cols) + "|"]
        marks = {c: mark_ties(pk, c, ivs.get(c), specs) for c in cols if c in metrics}
        for i in order:
            cells = []
            for c in cols:
                if c in view.columns:
                    cells.append(md_cell(view[c].iloc[i]))
                    continue
                v = pk[c].iloc[i] if c in pk.columns else None
                text = md_cell(v, specs.get(c))
                mark = marks[c].iloc[i] if c in marks else ""
                if mark == "best":
                    text = f"**{text}**"
                elif mark == "tie":
                    text += " ≈"
                if c == "latency_s" and flagged(pk.iloc[i]):
                    text += " ⚠"
                cells.append(text)
            lines.append("| " + " | ".join(cells) + " |")
        out += lines + [""]
    return out


MD_MARKS = ("**bold**: the best in its column; ≈: its stored interval (bootstrap CI or ± std) overlaps the best "
            "value's, a tie; ⚠: a batch-1 latency whose repeats disagree (IQR/median above the threshold of "
            "`bench.latency_rule`), not trusted.")


def markdown(sdf: pd.DataFrame, suite: str, specs: Specs, ctx=None, applied=None, bounds_source: str | None = None,
             ranks=None) -> str:
    """A suite's report in Markdown: the headline, then per dataset (in ``ctx``'s order) the matched-settings and
    budget tables, the MMHM bounds with their stability, and each model's MMHM-best and FID-best cells, with
    MMHM gaps and failed cells explained. ``applied``/``bounds_source``: saved MMHM bounds and their file;
    ``ranks``: (dataset, cap) -> `bench.report.ranks.BoardStats`, each board's rank intervals."""
    from bench.report import prompt_boards
    from bench.report.context import context_for
    from bench.report.fair import fair_markdown, headline_markdown
    from bench.report.mmhm_view import note_markdown
    ctx = ctx or context_for(None, sdf)
    imaged = with_images(sdf)
    lines = "".join(f"- {html.escape(t)}\n" for t in prompt_boards.headline(sdf, specs))
    top = headline_markdown(imaged, specs, ctx) if not imaged.empty or not lines else "## Headline\n\n"
    parts = [f"# {html.escape(str(suite))}: leaderboards\n", top + lines, "",
             "Per dataset: models at the same settings and at the same NFE budgets first, then each model's best "
             "configuration by MMHM and by FID over any setting (ok cells; MMHM per dataset). Missing values are "
             "`–`. Real-vs-real rows are each metric's reference line and get no MMHM by design. " + MD_MARKS + "\n"]
    seen: set = set()
    for dataset, cap, g in boards(sdf, ctx.dataset_order):
        parts.append(f"\n## {html.escape(str(dataset))}" + (f" — {smoke_label(cap)}" if cap else "") + "\n")
        if cap:
            parts.append(f"**{smoke_label(cap).capitalize()}**: {SMOKE_WHY}.\n")
        if prompt_boards.is_prompt_only(g):          # no FID, no MMHM: ranked by each alignment metric
            parts.append(prompt_boards.markdown_section(g, html.escape(str(dataset)), specs))
            continue
        if dataset not in seen:
            seen.add(dataset)
            parts.append(fair_markdown(g, dataset, specs, ctx))
        note = note_markdown(g, applied, bounds_source)
        if note:
            parts.append(note)
        lb = leaderboard(g, specs)
        if lb.empty:
            parts += ["No ok cells: nothing to rank.", ""]
        metrics = board_metrics(g, specs)
        for tag, col in PICKS if not lb.empty else ():
            parts.append(f"### {specs.label(col)}-best configuration per model: {html.escape(str(dataset))}\n")
            parts += _md_board(g, lb, tag, col, specs, metrics)
        if ranks is not None and not lb.empty:
            from bench.report.ranks import markdown_section
            parts.append(markdown_section(ranks.get((str(dataset), cap))))
        if not lb.empty:
            differ = [md_cell(m) for m, a in zip(lb["model"], lb["picks agree"]) if a is False]
            parts.append("MMHM-best and FID-best picks are different cells for: " + (", ".join(differ) or "none")
                         + ".\n")
        lack = lacking_mmhm(g)
        if not lack.empty:
            parts.append(f"{MMHM_WHY}; {len(lack)} ok cell(s) lack one and have no MMHM: " + "; ".join(
                f"{md_cell(r['model'])} steps={fmt(r['steps'])} cfg={fmt(r['cfg'])} (no {', '.join(r['lacks'])})"
                for _, r in lack.iterrows()) + "\n")
        failed = g[g["status"] != "ok"]
        if not failed.empty:
            parts.append(f"{len(failed)} failed cell(s), not ranked: " + "; ".join(
                f"{md_cell(r['model'])} steps={fmt(r['steps'])} cfg={fmt(r['cfg'])}: {md_cell(r['error'])}"
                for _, r in failed.iterrows()) + "\n")
    return "\n".join(parts) + "\n"


def with_images(sdf: pd.DataFrame) -> pd.DataFrame:
    """``sdf`` without the prompt-only sets' cells (`bench.report.prompt_boards`): what the MMHM / FID headline
    compares (a prompt-only set has neither)."""
    from bench.report.prompt_boards import is_prompt_only
    if "dataset" not in sdf.columns:
        return sdf
    drop = [d for d, g in sdf.groupby("dataset", sort=False) if is_prompt_only(g)]
    return sdf[~sdf["dataset"].isin(drop)] if drop else sdf
