"""Who leads, in words: the leaders of the NFE budget boards (`Lead`, `lead_at`, `winners`) and a suite's
headline, three to five sentences generated from the numbers (`headline`), each with the anchor of the table
it is read from.

Definitions (the fair view's, `bench.report.fair`): the **one-step winner** leads by MMHM at budget 1, so among
the models usable at 1 NFE (None when no model has an ok cell within 1 NFE); the **multi-step winner** leads by
MMHM at the largest budget. A leader is every model whose value equals the best (a tie names them all); the
runner-up is the best model after the leaders, and the margin is the absolute difference.

The headline reads the first dataset of the context's order (with full cells) and, when there are others, adds
one sentence comparing their winners. Sentences, in order: who leads at 1 NFE and by how much (MMHM and FID);
at which budget a different model overtakes by MMHM and who leads at the largest budget; where the MMHM-best
and FID-best picks disagree (between leaders, else within the leader's own configurations); who wins the
matched-settings columns; the other datasets' winners. Wording is fixed and every number is printed with its
metric's stored format, so the same store gives the same text. Torch-free.
"""

from __future__ import annotations

import html
from dataclasses import dataclass

import pandas as pd

from bench import composite
from bench.report.context import ReportContext, context_for
from bench.report.directions import Specs
from bench.report.leaderboard import PICKS, fmt, is_missing

MMHM = composite.NAME
FID = composite.COLUMNS[composite.FIDELITY]
MTAG, FTAG = PICKS[0][0], PICKS[1][0]          # 'mmhm-best', 'fid-best'


def md_text(v) -> str:
    """Text for Markdown: HTML-escaped (a name like <script> stays text; quotes are left as they are), '|' and
    newlines made safe for a table cell."""
    return html.escape(str(v), quote=False).replace("|", "\\|").replace("\n", " ")


def label_of(specs: Specs | None, col: str) -> str:
    return specs.label(col) if specs is not None else col


def num_text(specs: Specs | None, col: str, v) -> str:
    """A value of metric ``col`` in its stored format ('–' when missing)."""
    return "–" if is_missing(v) else fmt(float(v), specs.get(col) if specs is not None else None)


@dataclass(frozen=True)
class Lead:
    """Who leads one budget by one pick column: the tied leaders, their value, the runner-up and the margin."""
    budget: int
    col: str
    models: tuple[str, ...]
    value: float
    config: str                    # the first leader's cell, e.g. "1 step, cfg 3, 1 NFE"
    runner_up: str | None = None
    runner_value: float = float("nan")

    @property
    def margin(self) -> float:
        """|leader - runner-up| (NaN without a runner-up)."""
        return abs(self.value - self.runner_value) if self.runner_up is not None else float("nan")

    @property
    def name(self) -> str:
        return " and ".join(self.models) + (" (tied)" if len(self.models) > 1 else "")


def config_text(r, tag: str) -> str:
    """'4 steps, cfg 3, 8 NFE' for a budget board row's pick."""
    steps, cfg, nfe = r[f"{tag} steps"], r[f"{tag} cfg"], r[f"{tag} nfe"]
    parts = [] if is_missing(steps) else [f"{fmt(steps)} step" + ("" if steps == 1 else "s")]
    parts += ([] if is_missing(cfg) else [f"cfg {fmt(cfg)}"]) + ([] if is_missing(nfe) else [f"{fmt(nfe)} NFE"])
    return ", ".join(parts) or "–"


def lead_at(boards: pd.DataFrame, budget: int, tag: str) -> Lead | None:
    """The leader(s) of ``boards`` at ``budget`` by pick ``tag`` (e.g. 'mmhm-best'); None when nobody has a value."""
    col = dict(PICKS)[tag]
    b = boards[(boards["budget"] == budget) & boards[f"{tag} rank"].notna()].sort_values(f"{tag} rank",
                                                                                         kind="stable")
    if b.empty:
        return None
    top = b[b[f"{tag} rank"] == 1]
    rest = b[b[f"{tag} rank"] > 1]
    first = top.iloc[0]
    runner = rest.iloc[0] if len(rest) else None
    return Lead(int(budget), col, tuple(top["model"]), float(first[f"{tag} {col}"]), config_text(first, tag),
                None if runner is None else str(runner["model"]),
                float("nan") if runner is None else float(runner[f"{tag} {col}"]))


def winners(boards: pd.DataFrame, tag: str = PICKS[0][0]) -> tuple[Lead | None, Lead | None]:
    """(one-step winner, multi-step winner) by pick ``tag``: the leader at budget 1 and at the largest budget
    (see the module docstring)."""
    if boards.empty:
        return None, None
    return lead_at(boards, 1, tag), lead_at(boards, int(boards["budget"].max()), tag)


def leader_changes(boards: pd.DataFrame, tag: str) -> list[Lead]:
    """The lead at each budget where the leaders differ from the previous budget's (the first budget with a
    leader included)."""
    out: list[Lead] = []
    for b in sorted(boards["budget"].unique()) if not boards.empty else []:
        lead = lead_at(boards, int(b), tag)
        if lead is not None and (not out or set(lead.models) != set(out[-1].models)):
            out.append(lead)
    return out


def winner_lines(boards: pd.DataFrame, specs: Specs) -> list[tuple[str, str]]:
    """(label, plain text) of the one-step and multi-step winners, by MMHM with the FID leader at the same budget."""
    mtag, ftag = PICKS[0][0], PICKS[1][0]
    out = []
    last = int(boards["budget"].max()) if not boards.empty else 1
    for label, budget, lead in zip(("One-step winner", "Multi-step winner"), (1, last), winners(boards, mtag)):
        where = f"leads by {label_of(specs, MMHM)} within {budget} NFE" + (", the largest budget" if budget == last
                                                                          and budget > 1 else "")
        if lead is None:
            out.append((label, f"none: no model has an ok cell with {label_of(specs, MMHM)} within {budget} NFE."))
            continue
        text = (f"{lead.name} ({where}): {label_of(specs, MMHM)} {num_text(specs, MMHM, lead.value)} ({lead.config})")
        if lead.runner_up is not None:
            text += f", ahead of {lead.runner_up} by {num_text(specs, MMHM, lead.margin)}"
        f = lead_at(boards, budget, ftag)
        if f is not None:
            text += (f"; by {label_of(specs, FID)} within {budget} NFE: {f.name} {num_text(specs, FID, f.value)} "
                     f"({f.config})")
        out.append((label, text + "."))
    return out


# ---------------------------------------------------------------- the headline


def _value_at(boards: pd.DataFrame, budget: int, model: str, tag: str) -> float:
    col = dict(PICKS)[tag]
    r = boards[(boards["budget"] == budget) & (boards["model"] == model)]
    return float("nan") if r.empty or is_missing(r.iloc[0][f"{tag} {col}"]) else float(r.iloc[0][f"{tag} {col}"])


def _first_sentence(ds: str, boards: pd.DataFrame, specs: Specs) -> str:
    m, f = lead_at(boards, 1, MTAG), lead_at(boards, 1, FTAG)
    M, F = label_of(specs, MMHM), label_of(specs, FID)
    if m is None:
        return f"On {ds} no model has an ok cell with {M} within 1 NFE."
    s = f"On {ds} at 1 NFE, {m.name} leads by {M} with {num_text(specs, MMHM, m.value)} ({m.config})"
    s += (f", {num_text(specs, MMHM, m.margin)} ahead of {m.runner_up}" if m.runner_up is not None
          else ", the only model with a 1-NFE cell")
    if f is not None:
        who = "it also leads" if set(f.models) == set(m.models) else f"{f.name} leads"
        s += f"; by {F} {who} with {num_text(specs, FID, f.value)}"
        if f.runner_up is not None:
            s += f", {num_text(specs, FID, f.margin)} better than {f.runner_up}"
    return s + "."


def _overtake_sentence(boards: pd.DataFrame, specs: Specs) -> str:
    M = label_of(specs, MMHM)
    changes = leader_changes(boards, MTAG)
    if not changes:
        return f"No model has {M} at any NFE budget."
    last = int(boards["budget"].max())
    final = lead_at(boards, last, MTAG)
    tail = f"; within the largest budget ({last} NFE) {final.name} leads with " \
           f"{num_text(specs, MMHM, final.value)} ({final.config})."
    if len(changes) == 1:
        return f"No model overtakes {changes[0].name} by {M} up to {last} NFE" + tail
    prev, new = changes[0], changes[1]
    was = _value_at(boards, new.budget, prev.models[0], MTAG)
    return (f"At a budget of {new.budget} NFE {new.name} overtakes {prev.name} by {M} "
            f"({num_text(specs, MMHM, new.value)} against {num_text(specs, MMHM, was)})" + tail)


def _disagree_sentence(boards: pd.DataFrame, specs: Specs) -> str:
    M, F = label_of(specs, MMHM), label_of(specs, FID)
    budgets = sorted(int(b) for b in boards["budget"].unique())
    pairs = [(b, lead_at(boards, b, MTAG), lead_at(boards, b, FTAG)) for b in budgets]
    pairs = [(b, m, f) for b, m, f in pairs if m is not None and f is not None]
    split = [(b, m, f) for b, m, f in pairs if set(m.models) != set(f.models)]
    if split:
        b, m, f = split[0]
        return (f"{M}-best and {F}-best name different leaders at {len(split)} of {len(pairs)} budgets "
                f"({', '.join(str(x[0]) for x in split)} NFE): at {b} NFE {M} picks {m.name} "
                f"({num_text(specs, MMHM, m.value)}, {m.config}) but {F} picks {f.name} "
                f"({num_text(specs, FID, f.value)}, {f.config}).")
    if not pairs:
        return f"No budget has both an {M} and an {F} leader."
    b, m, _ = pairs[-1]
    r = boards[(boards["budget"] == b) & (boards["model"] == m.models[0])].iloc[0]
    s = f"{M}-best and {F}-best name the same leader at every budget"
    if r[f"{MTAG} key"] != r[f"{FTAG} key"]:
        s += (f", though at {b} NFE {m.models[0]}'s {F}-best cell ({config_text(r, FTAG)}, {F} "
              f"{num_text(specs, FID, r[f'{FTAG} {FID}'])}) is not its {M}-best ({config_text(r, MTAG)})")
    return s + "."


def _matched_sentence(ds: str, table: pd.DataFrame, specs: Specs, ctx: ReportContext) -> str:
    from bench.report.fair import higher, setting_label, settings_of
    M = label_of(specs, MMHM)
    settings = settings_of(table)
    wins: dict[str, int] = {}
    for s in settings:
        v = pd.to_numeric(table[(*s, MMHM)], errors="coerce").dropna()
        if not v.empty:
            best = v.max() if higher(specs, MMHM) else v.min()
            for m in v.index[v == best]:
                wins[m] = wins.get(m, 0) + 1
    if not wins:
        return f"No (steps, CFG) setting on {ds} is shared by two models with {M}."
    order = sorted(wins, key=lambda m: (-wins[m], ctx.sort_models(wins).index(m)))
    first = order[0]
    if len(settings) == 1:
        tied = " and ".join(order)
        return f"At the only setting on {ds} that at least two models share ({setting_label(settings[0])}), " \
               f"{tied} {'have' if len(order) > 1 else 'has'} the best {M}."
    s = f"At the {len(settings)} settings on {ds} that at least two models share, {first} has the best {M} in " \
        f"{wins[first]}" + "".join(f", {m} in {wins[m]}" for m in order[1:])
    if len(settings) <= 4:
        s += " (" + "; ".join(setting_label(x) for x in settings) + ")"
    return s + "."


def _others_sentence(others: list[tuple[str, pd.DataFrame]], specs: Specs) -> str:
    M = label_of(specs, MMHM)
    parts = []
    for ds, boards in others:
        one, multi = winners(boards, MTAG)
        one_t = "none" if one is None else f"{one.name} ({num_text(specs, MMHM, one.value)})"
        multi_t = "none" if multi is None else f"{multi.name} ({num_text(specs, MMHM, multi.value)}, {multi.config})"
        parts.append(f"on {ds} the one-step winner by {M} is {one_t} and the multi-step winner {multi_t}")
    s = "; ".join(parts)
    return s[0].upper() + s[1:] + "."


def headline(sdf: pd.DataFrame, specs: Specs, ctx: ReportContext | None = None) -> list[tuple[str, str]]:
    """(sentence, anchor id) pairs for one suite's frame: 3 to 5 sentences (one when nothing can be compared)."""
    from bench.report.fair import budget_anchor, budget_boards, fair_cells, matched_anchor, matched_settings
    ctx = ctx or context_for(None, sdf)
    full = sdf[sdf["limit"].isna()] if "limit" in sdf.columns else sdf
    per = []
    for ds in ctx.sort_datasets(str(d) for d in full["dataset"].dropna()) if "dataset" in full.columns else []:
        g = fair_cells(full[full["dataset"].astype(str) == ds])
        if len(g):
            per.append((ds, g))
    if not per:
        smoke = "limit" in sdf.columns and sdf["limit"].notna().any()
        return [("No full cell to compare: nothing to say yet" + (" (a smoke run's numbers are not results)"
                                                                   if smoke else "") + ".", "")]
    ds, g = per[0]
    boards = budget_boards(g, specs)
    if boards.empty:
        return [(f"On {ds} no ok cell has a counted NFE: no budget to compare.", budget_anchor(ds))]
    out = [(_first_sentence(ds, boards, specs), budget_anchor(ds)),
           (_overtake_sentence(boards, specs), budget_anchor(ds)),
           (_disagree_sentence(boards, specs), budget_anchor(ds)),
           (_matched_sentence(ds, matched_settings(g, specs, ctx), specs, ctx), matched_anchor(ds))]
    others = [(d, budget_boards(x, specs)) for d, x in per[1:]]
    others = [(d, b) for d, b in others if not b.empty]
    if others:
        out.append((_others_sentence(others, specs), budget_anchor(others[0][0])))
    return out


def headline_html(sdf: pd.DataFrame, specs: Specs, ctx: ReportContext | None = None) -> str:
    """The headline as an HTML section (``id="headline"``): one list item per sentence, linked to its table."""
    items = []
    for text, anchor in headline(sdf, specs, ctx):
        link = f' <a href="#{html.escape(anchor)}">table</a>' if anchor else ""
        items.append(f"<li>{html.escape(text)}{link}</li>")
    return '<section id="headline" class="fair-section"><h2>Headline</h2><ul>' + "".join(items) + \
        "</ul></section>\n"


def headline_markdown(sdf: pd.DataFrame, specs: Specs, ctx: ReportContext | None = None) -> str:
    """The headline as a Markdown list, each sentence linked to its table's anchor."""
    lines = ["## Headline", ""]
    for text, anchor in headline(sdf, specs, ctx):
        lines.append(f"- {md_text(text)}" + (f" ([table](#{anchor}))" if anchor else ""))
    return "\n".join(lines) + "\n"
