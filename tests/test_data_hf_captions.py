"""The `hf` source's caption options on tiny local save_to_disk copies, offline: ``caption_column`` (with or
without a label column), ``image_column: null`` (prompt-only); and at the defaults nothing changes: the validated
options and the fingerprint are those of before."""

import numpy as np
import pytest
from PIL import Image

from bench.data.base import DatasetError
from bench.data.hashing import digest
from bench.provenance import sha256_path

datasets = pytest.importorskip("datasets")
from bench.data.hf import HFDataset  # noqa: E402

CAPS = ["a red square", "a  blue\ncircle", "two green lines", "a yellow dot"]


@pytest.fixture(autouse=True)
def _offline(tmp_path, monkeypatch):
    monkeypatch.setattr(datasets.config, "HF_HUB_OFFLINE", True)
    monkeypatch.setattr(datasets.config, "HF_DATASETS_OFFLINE", True)
    monkeypatch.setenv("STEPBENCH_HASH_CACHE", str(tmp_path / "hc" / "hashes.json"))


def save(path, captions=CAPS, labels=True, images=True, seed=0):
    rng = np.random.default_rng(seed)
    cols, feats = {"text": list(captions)}, {"text": datasets.Value("string")}
    if images:
        cols["img"] = [Image.fromarray(rng.integers(0, 255, (9, 11, 3), dtype=np.uint8)) for _ in captions]
        feats["img"] = datasets.Image()
    if labels:
        cols["y"] = [i % 2 for i in range(len(captions))]
        feats["y"] = datasets.ClassLabel(names=["a", "b"])
    datasets.Dataset.from_dict(cols, features=datasets.Features(feats)).save_to_disk(str(path))
    return str(path)


def test_caption_column_makes_a_caption_set(tmp_path):
    p = save(tmp_path / "d")
    ds = HFDataset("hf", path=p, image_column="img", label_column="y", caption_column="text", resolution=8,
                   workers=0)
    assert ds.conditioning == "caption" and ds.has_images and ds.labels().tolist() == [0, 1, 0, 1]
    assert ds.captions() == ["a red square", "a blue circle", "two green lines", "a yellow dot"]
    assert next(ds.reference_batches(4))[0].shape == (4, 8, 8, 3)
    assert HFDataset.describes("hf", {"path": p, "caption_column": "text"}) == ("caption", True)
    # without a label column: label 0 of one unnamed class
    q = save(tmp_path / "nolabel", labels=False)
    nl = HFDataset("hf", path=q, image_column="img", caption_column="text", workers=0)
    assert nl.labels().tolist() == [0] * 4 and list(nl.class_names) == ["image"]
    # the caption text is in the fingerprint
    r = save(tmp_path / "other", captions=[*CAPS[:3], "a yellow dot at noon"])
    other = HFDataset("hf", path=r, image_column="img", label_column="y", caption_column="text", resolution=8)
    assert other.captions()[:3] == ds.captions()[:3] and other.fingerprint() != ds.fingerprint()


def test_image_column_null_is_prompt_only(tmp_path):
    p = save(tmp_path / "p", labels=False, images=False)
    ds = HFDataset("hf", path=p, image_column=None, caption_column="text")
    assert not ds.has_images and len(ds) == 4 and ds.captions()[1] == "a blue circle"
    with pytest.raises(DatasetError, match="'hf' is prompt-only"):
        next(ds.reference_batches(2))
    assert HFDataset.describes("hf", {"path": p, "image_column": None, "caption_column": "text"}) == \
        ("caption", False)
    with pytest.raises(DatasetError, match="image_column: null .* needs options.caption_column"):
        HFDataset("hf", path=p, image_column=None)


def test_errors_name_the_caption_column(tmp_path):
    p = save(tmp_path / "d")
    with pytest.raises(DatasetError, match=r"has no column 'caption' \(columns: .*text.*caption_column"):
        HFDataset("hf", path=p, image_column="img", label_column="y", caption_column="caption")
    q = save(tmp_path / "e", captions=["fine", "   ", "x", "y"])
    with pytest.raises(DatasetError, match=r"row 1: column 'text': the caption is empty"):
        HFDataset("hf", path=q, image_column="img", label_column="y", caption_column="text")


def test_the_defaults_keep_the_options_and_fingerprint_of_before(tmp_path):
    opts = HFDataset.validate_options({"path": "x"})
    assert "caption_column" not in opts and opts["image_column"] == "image"
    assert set(opts) == {"resolution", "transform", "workers", "half", "prompt_template", "path", "split", "config",
                         "revision", "data_dir", "cache_dir", "image_column", "label_column", "classes",
                         "class_names"}
    assert HFDataset.validate_options(opts) == opts
    assert HFDataset.validate_options({"path": "x", "caption_column": "t"})["caption_column"] == "t"
    p = save(tmp_path / "d")
    ds = HFDataset("hf", path=p, image_column="img", label_column="y", resolution=8)
    assert ds.conditioning == "class" and ds.captions() is None and ds.provenance() == {}
    arrow = [sha256_path(f) for f in ds._arrow]                  # the content hash of before, spelt out
    assert ds.content_hash() == digest({"arrow": arrow, "split": "validation", "labels": [0, 1, 0, 1]})
    assert HFDataset.describes("hf", {"path": p}) == ("class", True)
