"""A caption set built here (images + captions in a JSONL file: the ``captions`` source) runs through a tiny
random diffusers pipeline (tests/diffusers_tiny.py) end to end:

- each sample's caption reaches the pipeline: the prompts of every ``__call__`` (recorded by wrapping it) are the
  captions of the cell's sample ids, in order, and the bulk pass and the latency calls ask for nothing else;
- CLIP Score equals a hand computation with the mini CLIP on each (stored image, its caption) pair;
- the same images with one caption changed give another cell key.
"""

from __future__ import annotations

import functools
import io
import json

import numpy as np
import pytest
import torch
from PIL import Image

diffusers = pytest.importorskip("diffusers")
pytest.importorskip("transformers")

import bench  # noqa: E402
from bench.runner import Runner  # noqa: E402
from bench.suite import Suite  # noqa: E402
from tests import diffusers_tiny as tiny  # noqa: E402
from tests.test_captions_path import hand_scores  # noqa: E402

CAPTIONS = ["a photo of a red star", "a blue circle on a black background", "a photo of a heart",
            "a green square", "a photo of a cross on a white background", "a ring"]
SUITE = """
suite: caps-diffusers
seed: 3
batch_size: 2
samples: {{plan: per_reference, n: 6}}
keep_samples: 6
timing: {{enabled: false}}
datasets:
  - {{id: caps, source: captions, options: {{path: {path}}}}}
metrics:
  clip_score: {{backend: mini, model: clip, batch_size: 4, bootstrap: 0}}
models:
  - id: sdxl
    adapter: diffusers
    weights: {weights}
    options: {{eval_size: 16, dtype: float32}}
    steps: [2]
    cfg: [1.0]
"""


def write_set(folder, captions):
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    rows = []
    for i, c in enumerate(captions):
        Image.fromarray(rng.integers(0, 255, (16, 16, 3), dtype=np.uint8)).save(folder / f"{i}.png")
        rows.append({"caption": c, "image": f"{i}.png"})
    (folder / "caps.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    return folder / "caps.jsonl"


@pytest.fixture(scope="module")
def pipe_folder(tmp_path_factory):
    return tiny.build_sdxl(tmp_path_factory.mktemp("sdxl") / "p")


def test_each_caption_reaches_the_pipeline_and_clip_scores_its_own_image(pipe_folder, tmp_path, monkeypatch):
    calls: list[list[str]] = []
    cls = diffusers.StableDiffusionXLPipeline
    original = cls.__call__

    @functools.wraps(original)                  # the adapter reads the call's parameters from its signature
    def recording(self, *args, **kwargs):
        calls.append(list(kwargs["prompt"]))
        return original(self, *args, **kwargs)
    monkeypatch.setattr(cls, "__call__", recording)

    path = write_set(tmp_path / "set", CAPTIONS)
    s = Suite.parse(SUITE.format(path=path, weights=pipe_folder), "caps.yaml")
    db = tmp_path / "c.duckdb"
    summary = Runner(s, db=db, progress=False).run()
    assert summary.failed == 0, summary.failures
    assert calls == [CAPTIONS[0:2], CAPTIONS[2:4], CAPTIONS[4:6]]      # batch_size 2, in sample-id order

    row = bench.load(db).iloc[0]
    with bench.store.ResultStore(db, read_only=True) as st:
        kept = st.frame("SELECT sample_id, png FROM samples ORDER BY sample_id")
    images = torch.stack([torch.from_numpy(np.asarray(Image.open(io.BytesIO(bytes(b))).convert("RGB")))
                          for b in kept["png"]])
    assert images.shape == (6, 16, 16, 3)
    assert row["clip_score"] == pytest.approx(float(hand_scores(images, CAPTIONS, "clip").mean()), rel=1e-5)

    other = write_set(tmp_path / "other", CAPTIONS[:5] + ["a ring on a grey background"])
    keys = [Runner(Suite.parse(SUITE.format(path=p, weights=pipe_folder), "caps.yaml"), db=tmp_path / "k.duckdb",
                   progress=False).key(c, _Adapter(), "w")
            for p in (path, other) for c in Suite.parse(SUITE.format(path=p, weights=pipe_folder),
                                                         "caps.yaml").expand()]
    assert keys[0] != keys[1]


class _Adapter:
    version = "v"
