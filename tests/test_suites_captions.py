"""suites/coco30k.yaml and suites/partiprompts.yaml validate offline on an empty machine: the plan passes, and the
pre-flight exits 2 naming what is missing (the data folder with where to get it, every model's weights, the
metrics' weights); with the data in place the dataset line goes, and a copy too small for the plan is named."""

from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from bench.suite import Suite
from tests.test_preflight import cli, machine  # noqa: F401  (machine: an empty, offline machine)

ROOT = Path(__file__).resolve().parent.parent
COCO, PARTI, T2I = (ROOT / "suites" / f"{n}.yaml" for n in ("coco30k", "partiprompts", "few-step-t2i"))


@pytest.mark.parametrize("suite, dataset, where", [
    (COCO, "coco30k", r"https://cocodataset.org/#download.*\$STEPBENCH_DATA/coco"),
    (PARTI, "partiprompts", r"PartiPrompts.tsv from https://github.com/google-research/parti.*"
                            r"\$STEPBENCH_DATA/partiprompts")])
def test_the_suites_validate_offline_and_name_what_is_missing(machine, suite, dataset, where):  # noqa: F811
    code, out, err = cli("validate", str(suite), "--plan-only")
    assert (code, err) == (0, "") and "28 cells" in out, err
    code, out, err = cli("validate", str(suite))
    lines = err.splitlines()
    assert code == 2 and lines[0].startswith("pre-flight: 28 of 28 cells lack inputs"), err
    [line] = [ln for ln in lines if ln.startswith(f"  dataset {dataset} (28 cells): ")]
    assert re.search(where, line), line
    for m in Suite.load(suite).spec.models:                      # every model named with its missing weights
        assert any(m.id in ln for ln in lines[1:] if ln.lstrip().startswith("model")), m.id
    metrics = next(ln for ln in lines if ln.startswith("  metrics: "))
    assert "openai/clip-vit-base-patch16" in err and "yuvalkirstain/PickScore_v1" in metrics
    assert ("Inception" in metrics) == (suite == COCO)          # FID only where there are reference images


def test_the_suites_are_the_few_step_models_at_their_usual_steps():
    t2i = {m.id: (m.adapter, m.steps, m.cfg) for m in Suite.load(T2I).spec.models}
    for path in (COCO, PARTI):
        spec = Suite.load(path).spec
        assert {m.id: (m.adapter, m.steps, m.cfg) for m in spec.models} == t2i
        assert spec.samples.plan == "per_reference"
    coco = Suite.load(COCO).spec
    assert coco.samples.n == 30000 and set(coco.metrics) == {"fid_is_kid", "clip_score", "pickscore"}
    [d] = coco.datasets
    assert d.source_name == "coco" and d.options["n"] == 30000 and d.options["year"] == 2014
    assert set(Suite.load(PARTI).spec.metrics) == {"clip_score", "pickscore"}


def _coco_copy(root: Path, n: int) -> None:
    (root / "annotations").mkdir(parents=True)
    (root / "val2014").mkdir()
    images, anns = [], []
    for i in range(n):
        name = f"COCO_val2014_{i:012d}.jpg"
        Image.fromarray(np.full((12, 16, 3), i * 20, np.uint8)).save(root / "val2014" / name)
        images.append({"id": i, "file_name": name})
        anns.append({"id": i, "image_id": i, "caption": f"picture {i}"})
    (root / "annotations" / "captions_val2014.json").write_text(json.dumps({"images": images, "annotations": anns}))


def test_with_the_data_in_place_the_dataset_lines_go(machine, monkeypatch):  # noqa: F811
    data = machine / "data"
    _coco_copy(data / "coco", 4)
    (data / "partiprompts").mkdir(parents=True)
    (data / "partiprompts" / "PartiPrompts.tsv").write_text("Prompt\tCategory\tChallenge\tNote\n"
                                                            "a corgi\tAnimals\tBasic\t\n")
    monkeypatch.setenv("STEPBENCH_DATA", str(data))
    code, out, err = cli("validate", str(PARTI))
    assert code == 2 and "dataset partiprompts" not in err, err
    assert "note: partiprompts: the copy lists 1 images (its card: 1,632)" in out, out
    code, out, err = cli("validate", str(COCO))
    assert code == 2, err
    [line] = [ln for ln in err.splitlines() if ln.startswith("  dataset coco30k ")]
    assert "options.n = 30,000 exceeds the 4 captioned images" in line, line
