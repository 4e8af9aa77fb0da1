"""The `hf` source on local copies, offline: save_to_disk folders and a parquet load_dataset path."""

import numpy as np
import pytest
import torch
from PIL import Image

from bench.data.base import DatasetError

datasets = pytest.importorskip("datasets")
from bench.data.hf import HFDataset  # noqa: E402


@pytest.fixture(autouse=True)
def _offline(tmp_path, monkeypatch):
    monkeypatch.setenv("HF_DATASETS_OFFLINE", "1")      # read at import: set the parsed flags too
    monkeypatch.setattr(datasets.config, "HF_HUB_OFFLINE", True)
    monkeypatch.setattr(datasets.config, "HF_DATASETS_OFFLINE", True)
    monkeypatch.setenv("STEPBENCH_HASH_CACHE", str(tmp_path / "hc" / "hashes.json"))


def _tiny(labels=(0, 2, 1, 2, 0), seed=0, bad_row=None):
    rng = np.random.default_rng(seed)
    imgs = []
    for i in range(len(labels)):
        im = Image.fromarray(rng.integers(0, 255, (14, 18, 3), dtype=np.uint8))
        if i == 1:
            im = im.convert("L")            # grayscale row
        imgs.append(im)
    feats = datasets.Features({"img": datasets.Image(), "y": datasets.ClassLabel(names=["a", "b", "c"])})
    ds = datasets.Dataset.from_dict({"img": imgs, "y": list(labels)}, features=feats)
    if bad_row is not None:
        ds = ds.cast_column("img", datasets.Image(decode=False))
        ds = ds.map(lambda r, i: {"img": {"bytes": b"junk", "path": None}} if i == bad_row else r, with_indices=True)
        ds = ds.cast_column("img", datasets.Image())
    return ds


def test_save_to_disk_copy(tmp_path):
    _tiny().save_to_disk(str(tmp_path / "disk"))
    ds = HFDataset("hf", path=str(tmp_path / "disk"), image_column="img", label_column="y", resolution=8, workers=0)
    assert ds.class_names == ["a", "b", "c"] and ds.labels().tolist() == [0, 2, 1, 2, 0] and len(ds) == 5
    got = list(ds.reference_batches(2))
    assert [x.shape[0] for x, _ in got] == [2, 2, 1] and got[0][0].shape[1:] == (8, 8, 3)
    assert torch.cat([y for _, y in got]).tolist() == ds.labels().tolist()
    assert ds.fingerprint() == HFDataset("hf", path=str(tmp_path / "disk"), image_column="img",
                                         label_column="y", resolution=8).fingerprint()
    _tiny(seed=1).save_to_disk(str(tmp_path / "other"))
    assert HFDataset("hf", path=str(tmp_path / "other"), image_column="img", label_column="y",
                     resolution=8).fingerprint() != ds.fingerprint()
    inet = HFDataset("hf", path=str(tmp_path / "disk"), image_column="img", label_column="y", classes="imagenet-1k")
    assert inet.class_names[2] == "great_white_shark"


def test_parquet_with_load_dataset_and_workers(tmp_path):
    (tmp_path / "pq").mkdir()
    _tiny(labels=(1, 0, 2, 2, 1, 0, 1)).to_parquet(str(tmp_path / "pq" / "validation.parquet"))
    kw = dict(path="parquet", data_dir=str(tmp_path / "pq"), split="validation", cache_dir=str(tmp_path / "hfc"),
              image_column="img", label_column="y", resolution=8)
    w0 = HFDataset("hf", workers=0, **kw)
    w2 = HFDataset("hf", workers=2, **kw)
    assert w0.labels().tolist() == [1, 0, 2, 2, 1, 0, 1]
    b0, b2 = list(w0.reference_batches(3)), list(w2.reference_batches(3))
    assert all(torch.equal(x0, x2) and torch.equal(y0, y2) for (x0, y0), (x2, y2) in zip(b0, b2))
    assert w0.fingerprint() == w2.fingerprint()


def test_unreadable_row_is_listed_and_skipped(tmp_path):
    _tiny(bad_row=3).save_to_disk(str(tmp_path / "disk"))
    ds = HFDataset("hf", path=str(tmp_path / "disk"), image_column="img", label_column="y", resolution=8, workers=0)
    with pytest.warns(UserWarning, match="1 unreadable"):
        assert ds.labels().tolist() == [0, 2, 1, 0]
    assert [f["path"] for f in ds.decode_failures] == ["row/3"]
    assert sum(x.shape[0] for x, _ in ds.reference_batches(8)) == 4


def test_errors_name_the_problem(tmp_path):
    _tiny().save_to_disk(str(tmp_path / "disk"))
    with pytest.raises(DatasetError, match="options.path"):
        HFDataset("hf")
    with pytest.raises(DatasetError, match="no column 'image'.*img, y"):
        HFDataset("hf", path=str(tmp_path / "disk"))
    with pytest.raises(DatasetError, match="cannot load .*nowhere"):
        HFDataset("hf", path=str(tmp_path / "nowhere"), split="validation")
