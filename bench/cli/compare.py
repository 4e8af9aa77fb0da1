"""`bench compare --db DB A B`: the paired bootstrap of every metric's difference between two stored cells.

A, B: cell keys, unique key prefixes or ``model:steps:cfg@dataset`` (`bench.stats.source.resolve`). Prints per
metric the two values, A - B, its 95% interval, the two-sided bootstrap p-value and a verdict ('tie' when the
interval contains 0, else which cell is better by the metric's stored direction), then the resamples, seed,
p-value definition and a sample-size line. ``--json``: the same rows as a JSON object. A reference that names no
cell or several is one line and exit code 2.
"""

from __future__ import annotations

import json

from bench.cli.common import DEFAULT_DB, err, positive_int


def add(sub) -> None:
    from bench.stats import paired
    p = sub.add_parser("compare", help="is A really better than B? paired bootstrap of each metric's difference "
                       "between two stored cells (same sample ids, reference fixed)")
    p.add_argument("a", metavar="A", help="a cell: key, unique key prefix, or model:steps:cfg@dataset")
    p.add_argument("b", metavar="B", help="the other cell, named the same ways")
    p.add_argument("--db", default=DEFAULT_DB)
    p.add_argument("--resamples", type=positive_int, default=paired.DEFAULT_RESAMPLES, help="bootstrap resamples")
    p.add_argument("--seed", type=int, default=paired.DEFAULT_SEED, help="seed of the resampling draw")
    p.add_argument("--exact", action="store_true", help="recompute every set value (KID, precision, ...) by its "
                   "metric's own accumulator per resample (slow); by default only FID and IS get set intervals")
    p.add_argument("--json", action="store_true", help="print the rows as JSON instead of a table")
    p.set_defaults(fn=cmd_compare)


def _f(v, spec: str = ".4g") -> str:
    return "–" if v is None or v != v else format(float(v), spec)


def render(df) -> str:
    a = df.attrs
    lines = [f"A: {a['label_a']} ({a['a'][:12]})", f"B: {a['label_b']} ({a['b'][:12]})", ""]
    head = ["metric", "A", "B", "A - B", f"{int(a['level'] * 100)}% interval", "p", "verdict"]
    body = [[r.label + (" ↑" if r.higher_is_better else " ↓"), _f(r.value_a), _f(r.value_b), _f(r.diff),
             f"[{_f(r.ci_low)}, {_f(r.ci_high)}]" if r.ci_low == r.ci_low else "–",
             _f(r.p_value, ".3g"), r.verdict or "–"] for r in df.itertuples()]
    widths = [max(len(x) for x in col) for col in zip(head, *body)]
    for row in [head, *body]:
        lines.append("  ".join(x.ljust(w) for x, w in zip(row, widths)).rstrip())
    notes = sorted({r.note for r in df.itertuples() if r.note})
    n = int(df["n"].iloc[0]) if len(df) else 0
    lines += ["", f"paired bootstrap over n={n} common sample ids: {a['resamples']} resamples, seed {a['seed']}; "
                  f"p-value: {a['p_value']}", a["spread_line"], *notes]
    return "\n".join(lines)


def cmd_compare(args) -> int:
    from bench.features import FeaturesError
    from bench.stats.compare import compare
    from bench.stats.source import CellRefError
    try:
        df = compare(args.db, args.a, args.b, resamples=args.resamples, seed=args.seed, exact=args.exact)
    except (CellRefError, FeaturesError) as e:          # a bad reference; an unreadable features file
        return err(str(e))
    if args.json:
        rows = json.loads(df.to_json(orient="records"))
        print(json.dumps({**{k: v for k, v in df.attrs.items()}, "rows": rows}, indent=2, default=str))
    else:
        print(render(df))
    return 0
