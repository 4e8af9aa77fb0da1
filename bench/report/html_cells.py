"""Table cells of the report page: values, headers, and the marks a value can carry.

Invariants: every piece of stored text goes through ``html.escape``; a cell's sort value is in ``data-v`` (empty
for a missing value, which shows as '–' with class ``na``); a metric value with a stored interval says it in its
tooltip (`bench.report.ties.intervals`); a value whose interval overlaps the best one's carries ``≈``
(`bench.report.ties.mark_ties`); a latency flagged as noisy (tidy's ``latency_flagged``, `bench.latency_rule`)
carries ``⚠`` with the rule in its tooltip. A mark never changes the sort value.
"""

from __future__ import annotations

from html import escape

import pandas as pd

from bench import latency_rule
from bench.composite import REAL
from bench.report import directions as D
from bench.report.directions import Specs
from bench.report.leaderboard import PICKS, flagged, fmt, is_missing

TIE = "≈"
FLAG = "⚠"
FLAG_RULE = (f"IQR/median above {latency_rule.FLAG_RATIO:g}: the repeated batch-1 timings disagree, so this "
             "latency is not trusted (drawn hollow and never a Pareto point)")
SHORT = {"nfe": "NFE", "nfe_declared": "NFE decl.", "latency_s": "latency s", "throughput_ips": "img/s"}


def _data_v(v) -> str:
    if is_missing(v):
        return ""
    if isinstance(v, bool):
        return str(int(v))
    if isinstance(v, (int, float)):
        return repr(float(v))
    return str(v)


def td(v, cls: str = "", title: str | None = None, text: str | None = None,
       spec: D.MetricSpec | None = None, mark: str = "") -> str:
    """A table cell: escaped text (a metric's value in its stored format), sort value in data-v, '–' (class
    na) for missing; ``mark``: trusted HTML appended after the value (a tie or flag mark)."""
    missing = is_missing(v) and text is None
    classes = " ".join(c for c in (cls, "na" if missing else "") if c)
    attrs = f' data-v="{escape(_data_v(v))}"'
    if classes:
        attrs += f' class="{classes}"'
    if title:
        attrs += f' title="{escape(title)}"'
    body = text if text is not None else escape(fmt(v, spec))
    return f"<td{attrs}>{body}{mark}</td>"


def th(label: str, cls: str = "", title: str | None = None) -> str:
    a = f' class="{cls}"' if cls else ""
    if title:
        a += f' title="{escape(title)}"'
    return f"<th{a}>{escape(label)}</th>"


def col_label(c: str, specs: Specs) -> str:
    """A compact header: a metric's label plus its stored direction arrow, or a timing's short name."""
    return f"{specs.label(c)} {specs.arrow(c)}".strip() if c in specs else SHORT.get(c, specs.label(c))


def col_title(c: str, specs: Specs) -> str | None:
    if c in specs:
        s = specs[c]
        return f"{s.title}; declared by {s.source}"
    return specs.label(c) if c in SHORT else None


def mmhm_reason(r: pd.Series) -> str | None:
    """Why a cell shows no MMHM (None when it has one)."""
    if not is_missing(r.get(PICKS[0][1])):
        return None
    if r.get("status") != "ok":
        return "failed cell: no metrics"
    if r.get("family") == REAL:
        return "real-vs-real is each metric's reference line and gets no MMHM by design"
    lacks = [c for c in D.MMHM_COLUMNS if is_missing(r.get(c))]
    if lacks:
        return f"{D.MMHM_WHY}; this cell lacks {', '.join(lacks)}"
    return "no MMHM for this comparison set"


def interval_text(lo, hi, spec: D.MetricSpec | None) -> str | None:
    if is_missing(lo) or is_missing(hi):
        return None
    return f"interval {fmt(float(lo), spec)} to {fmt(float(hi), spec)}"


def metric_td(r: pd.Series, m: str, specs: Specs, cls: str = "", iv: tuple[pd.Series, pd.Series] | None = None,
              tie: str = "", title: str | None = None) -> str:
    """A metric value with its interval in the tooltip; ``tie``: 'best', 'tie' or '' (`bench.report.ties`)."""
    spec = specs.get(m)
    parts = [title] if title else []
    if iv is not None:
        t = interval_text(iv[0].get(r.name), iv[1].get(r.name), spec)
        if t:
            parts.append(t)
    mark = ""
    if tie == "tie":
        mark = f"<sup class=tie title='interval overlaps the best value&#39;s: a tie'>{TIE}</sup>"
        parts.append("tied with the best: the intervals overlap")
    elif tie == "best":
        parts.append("best in this table")
    classes = " ".join(c for c in (cls, "best" if tie == "best" else "") if c)
    return td(r.get(m), classes, "; ".join(parts) or None, spec=spec, mark=mark)


def latency_td(r: pd.Series, col: str = "latency_s", cls: str = "", value=None) -> str:
    """A latency cell; ``⚠`` (and the rule, with this cell's IQR/median) when tidy flagged it as noisy."""
    v = r.get(col) if value is None else value
    if not flagged(r):
        return td(v, cls)
    med, iqr = r.get("latency_s"), r.get("latency_iqr_s")
    ratio = (f"IQR {fmt(float(iqr))} s / median {fmt(float(med))} s = {float(iqr) / float(med):.2f}; "
             if not is_missing(med) and not is_missing(iqr) and float(med) > 0 else "")
    return td(v, " ".join(c for c in (cls, "flagged") if c), f"noisy latency: {ratio}{FLAG_RULE}",
              mark=f"<sup class=flag>{FLAG}</sup>")
