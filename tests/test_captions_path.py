"""The text-to-image protocol end to end in the miniature world (bench/data/mini_captions.py,
bench/models/mini_text.py) and its checks:

- sample i is generated from caption i: the mini text-to-image adapter's image i equals the class-conditional base
  model's image i for the class caption i names (the plan's labels are not used);
- CLIP Score and PickScore score each image against its own caption: the stored values equal a hand computation
  with the mini CLIP on each (image, caption) pair, and a caption truncated by the text window is counted;
- the caption text is in the cell key; a class-conditional model, a non-per_reference plan, and FID on a suite of
  prompt-only sets are validation errors naming the key.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

import bench
from bench import registry
from bench.data.base import Dataset, DatasetError, plan_labels, prompts_for
from bench.data.mini import MiniDataset
from bench.data.mini_captions import MiniCaptions
from bench.metrics.clip_score import ClipScore
from bench.mini import data as mini
from bench.models.base import ModelSpec, SamplerSettings
from bench.models.mini import MiniSiT
from bench.models.mini_text import MiniText2ImageSiT, class_of
from bench.runner import Runner
from bench.suite import Suite, SuiteError

SUITE = """
suite: caps
seed: 7
batch_size: 16
samples: {{plan: {plan}, n: {n}}}
keep_samples: 2
timing: {{enabled: false}}
datasets:
  - {{id: {dataset}, options: {options}}}
metrics:
{metrics}
models:
{models}
"""
CLIP = "  clip_score: {backend: mini, model: clip, batch_size: 16, bootstrap: 0}\n"
PICK = "  pickscore: {backend: mini, model: pick, batch_size: 16, bootstrap: 0}\n"
FID = ("  fid_is_kid: {feature_extractor: mini-classifier, kid_subset_size: 8, kid_subsets: 2, isc_splits: 1, "
       "batch_size: 16, prc: false}\n")
T2I = "  - {id: t2i, adapter: mini-t2i-sit, steps: [2], cfg: [1.0], solver: [euler]}\n"


def suite(models=T2I, metrics=CLIP + PICK, dataset="mini-captions", options="{size: 40}", plan="per_reference",
          n=24) -> Suite:
    return Suite.parse(SUITE.format(models=models, metrics=metrics, dataset=dataset, options=options, plan=plan,
                                    n=n), "caps.yaml")


def test_mini_captions_describe_their_images_and_are_reproducible():
    a, b = MiniCaptions("mini-captions", size=30), MiniCaptions("mini-captions", size=30)
    assert a.captions() == b.captions() and len(a.captions()) == 30
    for cap, y in zip(a.captions(), a.labels().tolist()):
        assert class_of(cap) == y                       # every caption names its image's shape
    assert len(set(a.captions())) > 5                   # templates and colours vary
    other = MiniCaptions("mini-captions", size=30, caption_seed=1)
    assert other.captions() != a.captions() and other.fingerprint() != a.fingerprint()
    assert a.fingerprint() == b.fingerprint()


def test_each_sample_is_generated_from_its_own_caption():
    ds = MiniCaptions("mini-captions", size=12)
    caps = ds.captions()
    t2i, base = MiniText2ImageSiT(), MiniSiT()
    for g in (t2i, base):
        g.load(ModelSpec("m", "x"), torch.device("cpu"))
    t2i.bind_dataset(ds)
    ids = torch.arange(12)
    s = SamplerSettings(steps=2, cfg=1.0, solver="euler", seed=3)
    wrong = (ds.labels() + 1) % mini.NUM_CLASSES        # labels the text adapter must ignore
    got = t2i.generate(wrong, ids, s)
    want = base.generate(torch.tensor([class_of(c) for c in caps]), ids, s)
    assert torch.equal(got, want)
    assert not torch.equal(got, base.generate(wrong, ids, s))
    assert prompts_for(ds, wrong, ids) == caps


def test_caption_named_nothing_fails_with_the_caption():
    with pytest.raises(ValueError, match="'a red shape' names no mini shape"):
        class_of("a red shape")
    with pytest.raises(ValueError, match="more than one"):
        class_of("a star and a heart")


def hand_scores(images: torch.Tensor, prompts: list[str], metric: str) -> torch.Tensor:
    """scale x cosine(image, its own caption) with the mini CLIP loaded here, one pair at a time."""
    from bench.metrics.clip_preprocess import preprocess_uint8
    from bench.mini import metric_nets
    model, tok = metric_nets.load_clip(metric)
    model.eval()
    size = model.visual.image_size
    size = size[0] if isinstance(size, (tuple, list)) else int(size)
    cfg = getattr(model.visual, "preprocess_cfg", {}) or {}
    from bench.metrics.clip_preprocess import OPENAI_MEAN, OPENAI_STD
    out = []
    with torch.inference_mode():
        scale = 100.0 if metric == "clip" else float(model.logit_scale.exp())
        for img, p in zip(images, prompts):
            x = preprocess_uint8(img[None], size, cfg.get("mean", OPENAI_MEAN), cfg.get("std", OPENAI_STD))
            fi = model.encode_image(x).float()
            ft = model.encode_text(tok([p])).float()
            out.append(scale * float((fi / fi.norm() * (ft / ft.norm())).sum()))
    return torch.tensor(out, dtype=torch.float64)


def test_clip_and_pick_score_each_image_against_its_caption_end_to_end(tmp_path):
    s = suite()
    db = tmp_path / "caps.duckdb"
    summary = Runner(s, db=db, progress=False).run()
    assert summary.failed == 0, summary.failures
    row = bench.load(db).iloc[0]
    ds = MiniCaptions("mini-captions", size=40)
    ids = torch.arange(24)
    gen = MiniText2ImageSiT()
    gen.load(ModelSpec("t2i", "mini-t2i-sit"), torch.device("cpu"))
    gen.bind_dataset(ds)
    images = gen.generate(ds.labels()[:24], ids, SamplerSettings(steps=2, cfg=1.0, solver="euler", seed=7))
    caps = ds.captions()[:24]
    for metric, name in (("clip", "clip_score"), ("pick", "pickscore")):
        hand = hand_scores(images, caps, metric)
        assert row[name] == pytest.approx(float(hand.mean()), rel=1e-5, abs=1e-5)
        shuffled = hand_scores(images, caps[1:] + caps[:1], metric)   # scored against another image's caption
        assert abs(float(shuffled.mean()) - row[name]) > 1e-3
    assert row["clip_score_truncated"] == 0.0
    # the report's sample grid heads each column with its caption (the same prompt for every model)
    from bench.report import grids as G
    from bench.report.classnames import kept_prompts
    from bench.report.source import read_extras
    df = bench.load(db)
    prov, samples = read_extras(db, list(df["key"]))
    (grid,) = G.make_grids(df, samples, prompts=kept_prompts(prov))
    assert grid.sample_ids == [0, 1] and grid.labels == caps[:2]


def test_a_changed_caption_changes_the_cell_key():
    cell = suite().expand()[0]
    same, edited = MiniCaptions("mini-captions", size=40), MiniCaptions("mini-captions", size=40)
    edited._captions[3] = edited._captions[3].replace("a ", "one ", 1)

    def key(ds):
        return cell.key(adapter_version="v", weights_id="w", dataset_fingerprint=ds.fingerprint(),
                        metric_versions={"clip_score": "c"})
    assert key(same) == key(MiniCaptions("mini-captions", size=40))
    assert key(edited) != key(same)


class _LongCaptions(MiniCaptions):
    """mini-captions whose first caption is longer than the mini CLIP's 16-token window."""
    def __init__(self, name="mini-captions", **options):
        super().__init__(name, **options)
        self._captions[0] = " ".join([self._captions[0]] * 6)


def test_captions_longer_than_the_text_window_are_counted():
    ds = _LongCaptions(size=8)
    metric = ClipScore({"backend": "mini", "model": "clip", "batch_size": 8, "bootstrap": 0}, torch.device("cpu"),
                       Path("unused-cache"))
    acc = metric.accumulator(ds)
    images = torch.from_numpy(mini.batch("val", 0, 8)[0])
    ids = torch.arange(8)
    acc.update(images, ds.labels(), prompts_for(ds, ds.labels(), ids), ids)
    assert acc.result()["clip_score_truncated"] == 1.0
    # a class set carries no such row
    plain = metric.accumulator(MiniDataset("mini-val", size=8))
    plain.update(images, ds.labels(), ["a photo of a star"] * 8, ids)
    assert "clip_score_truncated" not in plain.result()


def test_a_class_conditional_model_on_a_caption_set_is_a_validation_error():
    with pytest.raises(SuiteError, match=r"models\[0\]\.adapter: dataset 'mini-captions': a class-conditional model"):
        suite(models="  - {id: sit, adapter: mini-sit, steps: [2], cfg: [1.0], solver: [euler]}\n")


def test_a_caption_set_needs_a_per_reference_plan():
    with pytest.raises(SuiteError, match="samples.plan: dataset 'mini-captions' gives each item its own caption"):
        suite(plan="uniform", n=10)
    ds = MiniCaptions("mini-captions", size=10)
    from bench.cell import SamplePlan
    with pytest.raises(DatasetError, match="per_reference"):
        plan_labels(ds, SamplePlan("per_class", 1), 0)


class PromptOnly(Dataset):
    """A prompt-only set built here: three prompts, no reference images."""
    conditioning, has_images = "caption", False

    def __init__(self, name="prompt-only", **options):
        self.name, self.class_names, self.prompt_template = name, ["all"], "{class_name}"

    def __len__(self):
        return 3

    def fingerprint(self):
        return "prompt-only-1"

    def labels(self):
        return torch.zeros(3, dtype=torch.long)

    def captions(self):
        return ["a photo of a star", "a red circle", "a heart on a black background"]

    def reference_batches(self, batch_size):
        raise DatasetError("prompt-only: no reference images")


registry.register("dataset", "test-prompt-only", PromptOnly, replace=True)


def test_prompt_only_sets_take_no_fid_and_store_no_fid_row(tmp_path):
    with pytest.raises(SuiteError, match="metrics.fid_is_kid: compares with reference images, and no dataset"):
        suite(dataset="test-prompt-only", options="{}", metrics=FID + CLIP, n=3)
    mixed = Suite.parse(SUITE.format(models=T2I, metrics=FID + CLIP, dataset="mini-captions", options="{size: 20}",
                                     plan="per_reference", n=3).replace(
        "datasets:\n", "datasets:\n  - {id: test-prompt-only}\n"), "mixed.yaml")
    cells = {c.dataset: c for c in mixed.expand()}
    assert set(cells["test-prompt-only"].metrics) == {"clip_score"}
    assert set(cells["mini-captions"].metrics) == {"fid_is_kid", "clip_score"}
    db = tmp_path / "p.duckdb"
    summary = Runner(mixed, db=db, progress=False).run()
    assert summary.failed == 0, summary.failures
    df = bench.load(db).set_index("dataset")
    assert np.isnan(df.loc["test-prompt-only", "fid"]) and not np.isnan(df.loc["mini-captions", "fid"])
    with bench.store.ResultStore(db, read_only=True) as st:
        names = st.frame("SELECT m.metric FROM metrics m JOIN cells c USING (key) "
                         "WHERE c.dataset = 'test-prompt-only'")["metric"].tolist()
    assert "clip_score" in names and not any(n.startswith(("fid", "kid", "isc")) for n in names)
