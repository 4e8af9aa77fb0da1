"""What MMHM was computed against: the min/max bounds of its four inputs, where they came from, and how much
the ranking depends on which models shaped them.

`bounds_html` / `bounds_markdown` render one dataset's bounds (the four inputs' min and max) with their source:
"computed from N ok cells of this store" or the saved file they were read from. `stability(g)` leaves each
model out of the bounds in turn (its rows removed, bounds recomputed from the rest) and counts how many of the
other models change rank by their best MMHM; the ranking among the remaining models is compared, so removing a
model never counts as a change by itself. `note_html` / `note_markdown` put both beside one MMHM table.
Invariants: the bounds shown are those `bench.composite.add_mmhm` used for the rows of that table (saved ones
for full cells when given; a smoke run's cap always its own); nothing here changes an MMHM value. Torch-free.
"""

from __future__ import annotations

import html
from typing import Mapping, NamedTuple, Sequence

import pandas as pd

from bench import composite as C

# display name of each input, as the paper's bounds file names them
LABELS = {m: k for k, m in C.PAPER_KEYS.items()}


def _num(v: float) -> str:
    return f"{v:.6g}"


def _rows(bounds: Mapping[str, Sequence[float]]) -> list[tuple[str, str, str, str]]:
    """(input, direction, min, max) per MMHM input."""
    return [(LABELS[m], "lower is better" if m in C.LOWER_IS_BETTER else "higher is better",
             _num(float(bounds[m][0])), _num(float(bounds[m][1]))) for m in C.METRICS]


def bounds_html(bounds: Mapping[str, Sequence[float]], source: str) -> str:
    """A small table of the four inputs' min and max, captioned with where the bounds came from."""
    body = "".join(f"<tr><td>{html.escape(n)}</td><td>{html.escape(d)}</td><td class=num>{lo}</td>"
                   f"<td class=num>{hi}</td></tr>" for n, d, lo, hi in _rows(bounds))
    return (f"<table class='mmhm-bounds'><caption>MMHM bounds: {html.escape(source)}</caption>"
            "<thead><tr><th>input</th><th>direction</th><th>min</th><th>max</th></tr></thead>"
            f"<tbody>{body}</tbody></table>")


def bounds_markdown(bounds: Mapping[str, Sequence[float]], source: str) -> str:
    """`bounds_html` as a Markdown table with a one-line caption above it."""
    lines = [f"MMHM bounds: {source.replace('|', '/')}", "", "| input | direction | min | max |", "|---|---|---|---|"]
    lines += [f"| {n} | {d} | {lo} | {hi} |" for n, d, lo, hi in _rows(bounds)]
    return "\n".join(lines)


def _board(g: pd.DataFrame) -> pd.DataFrame:
    """The ok rows of one comparison set: ``g``'s full cells if it has any, else its first smoke cap's."""
    g = g[g["status"] == "ok"] if "status" in g.columns else g
    full = C.is_full(g)
    if full.any() or g.empty:
        return g[full]
    return g[g["limit"] == g["limit"].dropna().min()]


def _ranks(best: pd.Series) -> pd.Series:
    """Rank by best MMHM, 1 = best; values equal to 10 decimals (float noise) share the better rank."""
    return best.round(10).rank(ascending=False, method="min")


def _best(g: pd.DataFrame) -> pd.Series:
    """Each model's best MMHM with bounds recomputed from ``g``'s own rows (models without one left out)."""
    by = [c for c in C.TIDY_BY if c in g.columns] or ["dataset"]
    scored = C.add_mmhm(g, by=by)
    return scored.groupby("model", sort=True)[C.NAME].max().dropna()


def stability(g: pd.DataFrame) -> tuple[int, str]:
    """(rank changes, one-line detail) over leave-one-model-out bounds for ``g``, one MMHM table's rows.

    For each model with an MMHM: drop its rows, recompute the bounds from the rest, and count the other models
    whose rank by best MMHM (`_ranks`: ties share the better rank) differs from their rank among the same models under
    the bounds of all rows. The detail names the model whose removal changes the most ranks."""
    g = _board(g)
    base = _best(g)
    if len(base) < 3:
        return 0, (f"{len(base)} model(s) with an MMHM: leaving one out leaves at most one, so no rank can "
                   "change")
    changes: dict[str, int] = {}
    for m in base.index:
        others = base.drop(m)
        new = _best(g[g["model"] != m]).reindex(others.index)
        changes[m] = int((_ranks(others) != _ranks(new)).sum())
    total = sum(changes.values())
    if total == 0:
        return 0, f"Leaving any one of the {len(base)} models out of the bounds changes no other model's rank."
    worst = min(changes, key=lambda k: (-changes[k], str(k)))      # the most changes, first by name among equals
    return total, (f"{total} rank change(s) over {len(base)} leave-one-model-out recomputations of the bounds; "
                   f"leaving out {worst} changes the most ({changes[worst]} of the other {len(base) - 1} "
                   "models' ranks).")


class TableBounds(NamedTuple):
    bounds: dict[str, list[float]]
    source: str                     # where they came from, as the caption says it
    saved: bool                     # read from a file (True) or computed from the table's own cells


def table_bounds(g: pd.DataFrame, applied: Mapping | None = None,
                 source: str | None = None) -> TableBounds | None:
    """(bounds, source text, saved) of one MMHM table's rows ``g`` (one dataset; `_board`: its full cells, else
    one smoke cap): the saved ``applied`` bounds (`read_bounds_file`'s mapping; ``source`` names the file) for
    full cells, else those computed from the eligible cells. None when no cell has all four inputs."""
    g = _board(g)
    rows = g[C.eligible(g)]
    if rows.empty:
        return None
    full = bool(C.is_full(rows).all())
    if applied is not None and full:
        return TableBounds(C.bounds_for(applied, rows["dataset"].iloc[0]),
                           f"saved bounds from {source or 'a bounds file'}", True)
    b = C.compute_bounds(*(rows[C.COLUMNS[m]].to_numpy() for m in C.METRICS))
    where = "this store" if full else f"this smoke run ({int(rows['limit'].iloc[0])} samples)"
    return TableBounds(b, f"computed from {len(rows)} ok cells of {where}", False)


def _note(g: pd.DataFrame, applied: Mapping | None, source: str | None, render) -> str:
    """``render(bounds, stability sentence)`` for one MMHM table's rows, or '' when it has no MMHM."""
    tb = table_bounds(g, applied, source)
    if tb is None:
        return ""
    _, detail = stability(g)
    if tb.saved:
        detail = ("These saved bounds do not depend on which models are in the table. With bounds computed from "
                  "this store instead: " + detail)
    return render(tb, detail)


def note_html(g: pd.DataFrame, applied: Mapping | None = None, source: str | None = None) -> str:
    """The bounds table and the stability sentence for one MMHM table's rows ``g`` ('' when it has no MMHM)."""
    return _note(g, applied, source, lambda tb, detail: (
        f"<div class='mmhm-note'>{bounds_html(tb.bounds, tb.source)}<p class=note>Stability: "
        f"{html.escape(detail)}</p></div>"))


def note_markdown(g: pd.DataFrame, applied: Mapping | None = None, source: str | None = None) -> str:
    """`note_html` in Markdown (text HTML-escaped, as the leaderboard's cells are)."""
    return _note(g, applied, source, lambda tb, detail: (
        f"{bounds_markdown(tb.bounds, html.escape(tb.source, quote=False))}\n\n"
        f"Stability: {html.escape(detail, quote=False)}\n"))
