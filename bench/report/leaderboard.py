"""Per-dataset leaderboards: each model's best configuration by MMHM beside its FID-best configuration."""

from __future__ import annotations

from pathlib import Path

import pandas as pd

SHOW = ["steps", "cfg", "fid", "is", "clip_score", "pickscore", "mmhm", "nfe", "latency_s"]


def _fmt(v) -> str:
    if v is None or (not isinstance(v, (list, tuple)) and pd.isna(v)):
        return "–"
    if isinstance(v, float):
        return f"{v:.4g}"
    return str(v)


def markdown_table(df: pd.DataFrame, cols: list[str]) -> str:
    cols = [c for c in cols if c in df.columns]
    lines = ["| " + " | ".join(cols) + " |", "|" + "|".join("---" for _ in cols) + "|"]
    for _, r in df.iterrows():
        lines.append("| " + " | ".join(_fmt(r[c]) for c in cols) + " |")
    return "\n".join(lines)


def leaderboard(df: pd.DataFrame) -> pd.DataFrame:
    """One row per model: its MMHM-best configuration and its FID-best configuration, side by side."""
    ok = df[df["status"] == "ok"]
    rows = []
    for model, g in ok.groupby("model", sort=False):
        best_m = g.loc[g["mmhm"].idxmax()] if "mmhm" in g and g["mmhm"].notna().any() else None
        best_f = g.loc[g["fid"].idxmin()] if "fid" in g and g["fid"].notna().any() else None
        row = {"model": model}
        for tag, best in (("mmhm-best", best_m), ("fid-best", best_f)):
            for c in SHOW:
                row[f"{tag} {c}"] = None if best is None or c not in best else best[c]
        row["picks agree"] = (None if best_m is None or best_f is None else bool(best_m["key"] == best_f["key"]))
        rows.append(row)
    out = pd.DataFrame(rows)
    if not out.empty and "mmhm-best mmhm" in out:
        out = out.sort_values("mmhm-best mmhm", ascending=False, na_position="last")
    return out


def write_report(df: pd.DataFrame, out_dir: str | Path) -> list[Path]:
    written = []
    for suite, sdf in df.groupby("suite"):
        d = Path(out_dir) / str(suite)
        d.mkdir(parents=True, exist_ok=True)
        parts = [f"# {suite}: leaderboards\n",
                 "Each model's best configuration by MMHM next to its FID-best one; they often disagree.\n"]
        for dataset, g in sdf.groupby("dataset"):
            lb = leaderboard(g)
            cols = ["model"] + [f"mmhm-best {c}" for c in ("steps", "cfg", "mmhm", "fid", "clip_score", "pickscore")] \
                + [f"fid-best {c}" for c in ("steps", "cfg", "fid", "clip_score", "pickscore")] + ["picks agree"]
            parts += [f"\n## {dataset}\n", markdown_table(lb, cols), ""]
            failed = g[g["status"] == "failed"]
            if not failed.empty:
                parts.append(f"{len(failed)} failed cell(s): " + "; ".join(
                    f"{r.model} steps={r.steps} cfg={r.cfg}: {r.error}" for r in failed.itertuples()))
        md = d / "leaderboard.md"
        md.write_text("\n".join(parts) + "\n")
        csv = d / "sweep.csv"
        sdf.to_csv(csv, index=False)
        written += [md, csv]
    return written
