"""The `captions` source: a local JSONL / CSV / TSV of (caption, optional image, optional label) rows, with images
(relative to the file) or prompt-only; the same rows in any format are the same set; a changed caption or image
changes the fingerprint; an unreadable image takes its caption out with it; bad columns are named."""

import csv
import json

import numpy as np
import pytest
import torch
from PIL import Image

from bench.data.base import DatasetError
from bench.data.captions import CaptionsFile

ROWS = [("a red cube on a table", "img/a.png", "cube"), ("two dogs, running", "img/b.jpg", "dog"),
        ('a sign that says "hi"', "img/c.png", "sign"), ("a dog\nasleep", "img/d.png", "dog")]


@pytest.fixture(autouse=True)
def _own_caches(tmp_path, monkeypatch):
    monkeypatch.setenv("STEPBENCH_HASH_CACHE", str(tmp_path / "hc" / "hashes.json"))


def images(folder, seed=0):
    rng = np.random.default_rng(seed)
    for k, (_, rel, _) in enumerate(ROWS):
        (folder / rel).parent.mkdir(parents=True, exist_ok=True)
        Image.fromarray(rng.integers(0, 255, (10 + k, 14, 3), dtype=np.uint8)).save(folder / rel, quality=95)


def write(path, fmt, columns=("caption", "image", "label"), rows=ROWS):
    path.parent.mkdir(parents=True, exist_ok=True)
    index = {"caption": 0, "image": 1, "label": 2}
    recs = [{c: r[index[c]] if c in index else "x" for c in columns} for r in rows]
    if fmt == "jsonl":
        path.write_text("".join(json.dumps(r) + "\n" + ("\n" if i == 1 else "") for i, r in enumerate(recs)))
    elif fmt == "tsv":                          # plain tab-separated text, as PartiPrompts.tsv: quotes are text
        path.write_text("".join("\t".join(r[c].replace("\n", " ") for c in columns) + "\n"
                                for r in [dict(zip(columns, columns)), *recs]))
    else:
        with open(path, "w", newline="", encoding="utf-8") as f:
            w = csv.DictWriter(f, columns)
            w.writeheader()
            w.writerows(recs)
    return path


def test_a_jsonl_with_images_and_class_names(tmp_path):
    images(tmp_path)
    ds = CaptionsFile("captions", path=str(write(tmp_path / "set.jsonl", "jsonl")), resolution=8, workers=0)
    assert ds.conditioning == "caption" and ds.has_images and len(ds) == 4
    assert [it.key for it in ds.items] == ["1:img/a.png", "2:img/b.jpg", "4:img/c.png", "5:img/d.png"]  # lines
    assert ds.captions() == ["a red cube on a table", "two dogs, running", 'a sign that says "hi"', "a dog asleep"]
    assert ds.class_names == ["cube", "dog", "sign"] and ds.labels().tolist() == [0, 1, 2, 1]
    x, y = next(ds.reference_batches(8))
    assert x.shape == (4, 8, 8, 3) and y.tolist() == [0, 1, 2, 1]
    assert CaptionsFile.describes("captions", {"path": str(tmp_path / "set.jsonl")}) == ("caption", True)
    with_classes = CaptionsFile("captions", path=str(tmp_path / "set.jsonl"), classes=["sign", "dog", "cube"])
    assert with_classes.labels().tolist() == [2, 1, 0, 1] and with_classes.class_names == ["sign", "dog", "cube"]


def test_csv_tsv_and_jsonl_of_the_same_rows_are_the_same_set(tmp_path):
    images(tmp_path)
    sets = {fmt: CaptionsFile("captions", path=str(write(tmp_path / f"set.{fmt}", fmt)), resolution=8, workers=0)
            for fmt in ("jsonl", "csv", "tsv")}
    caps = {f: d.captions() for f, d in sets.items()}
    assert caps["jsonl"] == caps["csv"] == caps["tsv"]          # TSV keeps the quotes; whitespace is made one space
    assert len({d.fingerprint() for d in sets.values()}) == 1
    assert all(torch.equal(next(d.reference_batches(4))[0], next(sets["csv"].reference_batches(4))[0])
               for d in sets.values())
    txt = write(tmp_path / "plain.txt", "tsv")
    with pytest.raises(DatasetError, match="cannot tell the format from the extension '.txt'; set options.format"):
        CaptionsFile("captions", path=str(txt))
    same = CaptionsFile("captions", path=str(txt), format="tsv", resolution=8)
    assert same.fingerprint() == sets["tsv"].fingerprint()


def test_caption_text_and_image_bytes_change_the_fingerprint(tmp_path):
    images(tmp_path)
    images(tmp_path / "b")                                   # the same image bytes in another folder
    base = CaptionsFile("captions", path=str(write(tmp_path / "set.csv", "csv")))
    copy = CaptionsFile("captions", path=str(write(tmp_path / "b" / "set.csv", "csv")))
    assert copy.fingerprint() == base.fingerprint()          # content, not place
    rows = [list(r) for r in ROWS]
    rows[2][0] = 'a sign that says "bye"'
    changed = CaptionsFile("captions", path=str(write(tmp_path / "b" / "set.csv", "csv", rows=rows)))
    assert changed.captions()[2] != base.captions()[2] and changed.captions()[:2] == base.captions()[:2]
    assert changed.fingerprint() != base.fingerprint()
    write(tmp_path / "b" / "set.csv", "csv")
    images(tmp_path / "b", seed=1)
    assert CaptionsFile("captions", path=str(tmp_path / "b" / "set.csv")).fingerprint() != base.fingerprint()


def test_without_an_image_column_it_is_prompt_only(tmp_path):
    path = write(tmp_path / "p.tsv", "tsv", columns=("caption",))
    ds = CaptionsFile("captions", path=str(path))
    assert not ds.has_images and len(ds) == 4 and ds.labels().tolist() == [0, 0, 0, 0]
    assert list(ds.class_names) == ["image"]
    assert ds.captions()[3] == "a dog asleep" and ds.provenance()["captions"]["count"] == 4
    with pytest.raises(DatasetError, match="'captions' is prompt-only: it has no reference images"):
        next(ds.reference_batches(2))
    assert CaptionsFile.describes("captions", {"path": str(path)}) == ("caption", False)
    # no decoding, so no resolution or transform in its identity
    assert CaptionsFile("captions", path=str(path), resolution=64).fingerprint() == ds.fingerprint()


def test_an_unreadable_image_takes_its_caption_out_with_it(tmp_path):
    images(tmp_path)
    (tmp_path / "img" / "b.jpg").write_bytes(b"not a jpeg")
    ds = CaptionsFile("captions", path=str(write(tmp_path / "set.jsonl", "jsonl")), resolution=8, workers=0)
    with pytest.warns(UserWarning, match="1 unreadable"):
        assert ds.captions() == [ROWS[0][0], ROWS[2][0], "a dog asleep"]
    assert ds.labels().tolist() == [0, 2, 1] and sum(len(x) for x, _ in ds.reference_batches(2)) == 3
    assert [f["path"] for f in ds.decode_failures] == ["2:img/b.jpg"]          # keyed by line: JSONL line 2


def test_bad_columns_and_values_are_named(tmp_path):
    path = write(tmp_path / "set.csv", "csv", columns=("text", "image"))
    with pytest.raises(DatasetError, match=r"set.csv: no caption column 'caption' \(columns: 'text', 'image'\); "
                                           r"set options.caption_column"):
        CaptionsFile("captions", path=str(path))
    images(tmp_path)
    assert len(CaptionsFile("captions", path=str(path), caption_column="text")) == 4
    rows = [list(r) for r in ROWS]
    rows[1][1] = ""
    bad = write(tmp_path / "bad.csv", "csv", rows=rows)
    with pytest.raises(DatasetError, match=r"bad.csv:3: column 'image' needs an image path"):
        CaptionsFile("captions", path=str(bad))
    rows = [list(r) for r in ROWS]
    rows[0][0] = "   "
    with pytest.raises(DatasetError, match=r"empty.csv:2: column 'caption': the caption is empty"):
        CaptionsFile("captions", path=str(write(tmp_path / "empty.csv", "csv", rows=rows)))
    with pytest.raises(DatasetError, match=r"label 'cube' is not in options.classes"):
        CaptionsFile("captions", path=str(write(tmp_path / "l.csv", "csv")), classes=["dog", "sign"])
    mixed = tmp_path / "mixed.jsonl"
    mixed.write_text('{"caption": "a", "label": 1}\n{"caption": "b", "label": "dog"}\n')
    with pytest.raises(DatasetError, match=r"mixed.jsonl:2: column 'label' mixes class ids and names"):
        CaptionsFile("captions", path=str(mixed))
    ids = tmp_path / "ids.jsonl"
    ids.write_text('{"caption": "a", "label": 2}\n{"caption": "b", "label": 0}\n')
    assert CaptionsFile("captions", path=str(ids)).class_names == ["0", "1", "2"]
    (tmp_path / "x.jsonl").write_text('{"caption": "a"}\n[1, 2]\n')
    with pytest.raises(DatasetError, match=r"x.jsonl:2: expected a JSON object per line, got list"):
        CaptionsFile("captions", path=str(tmp_path / "x.jsonl"))
    with pytest.raises(DatasetError, match=r"options.path '.*nowhere.csv' is not a file; point options.path at"):
        CaptionsFile("captions", path=str(tmp_path / "nowhere.csv"))


def test_the_preflight_checks_the_file(tmp_path):
    [req] = CaptionsFile.requirements("captions", CaptionsFile.validate_options({"path": str(tmp_path / "no.csv")}))
    assert "is not a file" in req.check().missing
    write(tmp_path / "p.csv", "csv", columns=("caption",))
    [req] = CaptionsFile.requirements("captions", CaptionsFile.validate_options({"path": str(tmp_path / "p.csv")}))
    assert req.check().missing is None
