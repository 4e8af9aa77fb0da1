"""The report of a prompt-only set (bench/report/prompt_boards.py): a PartiPrompts-format file written here, run
with the mini text-to-image generators, has no FID and no MMHM, so its board ranks models by CLIP Score and
PickScore (each model's best configuration, the leader first), the headline names each metric's leader, no
MMHM / FID board or MMHM-coverage complaint is printed for it, and its sample grid heads columns with the prompts.
"""

from __future__ import annotations

import bench
from bench.report.build import write_report
from bench.runner import Runner
from bench.suite import Suite

ROWS = [("a photo of a star", "Shapes"), ("a red circle", "Colours"), ("a heart on a black background", "Scenes"),
        ("a picture of a ring", "Shapes")]
PARTI = "Prompt\tCategory\tChallenge\tNote\n" + "".join(f"{p}\t{c}\tBasic\t\n" for p, c in ROWS)
SUITE = """
suite: parti-mini
seed: 1
batch_size: 4
samples: {{plan: per_reference}}
keep_samples: 4
timing: {{enabled: false}}
datasets:
  - {{id: parti, source: partiprompts, options: {{root: {root}}}}}
metrics:
  clip_score: {{backend: mini, model: clip, batch_size: 4, bootstrap: 0}}
  pickscore: {{backend: mini, model: pick, batch_size: 4, bootstrap: 0}}
models:
  - {{id: t2i-sit, adapter: mini-t2i-sit, steps: [2, 4], cfg: [1.0], solver: [euler]}}
  - {{id: t2i-meanflow, adapter: mini-t2i-meanflow, steps: [1], cfg: [1.0]}}
"""


def test_a_prompt_only_set_is_ranked_by_its_alignment_metrics(tmp_path):
    (tmp_path / "PartiPrompts.tsv").write_text(PARTI)
    db = tmp_path / "p.duckdb"
    summary = Runner(Suite.parse(SUITE.format(root=tmp_path / "PartiPrompts.tsv"), "p.yaml"), db=db,
                     progress=False).run()
    assert summary.failed == 0, summary.failures
    df = bench.load(db)
    assert "fid" not in df.columns or df["fid"].isna().all()
    best = df.loc[df["clip_score"].idxmax()]
    write_report(df, tmp_path / "rep", db=db)
    md = next((tmp_path / "rep").rglob("leaderboard.md")).read_text()
    assert "A prompt-only set (no reference images)" in md and "MMHM-best configuration per model" not in md
    board = md.split("### Best configuration per model: parti", 1)[1]
    first = next(line for line in board.splitlines() if line.startswith("| t2i"))
    assert first.startswith(f"| {best['model']} ")                      # the CLIP Score leader first
    assert f"CLIP Score: {best['model']}" in md.split("## parti")[0]     # and named in the headline
    page = next((tmp_path / "rep").rglob("index.html")).read_text()
    assert "lack at least one of them" not in page                      # no MMHM-coverage complaint
    assert "a heart on a black background" in page                      # the grid's column header
