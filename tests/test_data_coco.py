"""The `coco` source on a small copy in COCO's own layout written here (annotations/captions_val2014.json +
val2014/*.jpg): the JSON parsed, n images drawn by a seed with one caption each (reproducible, changing with the
seed, nested in n), captions ordered by annotation id for `first`, the centre crop + named filter checked against
PIL by hand, the fingerprint following caption text and image bytes, and the where-to-put-it errors."""

import json

import numpy as np
import pytest
import torch
from PIL import Image

from bench.data.base import DatasetError
from bench.data.coco import COUNTS, Coco, center_crop, read_captions

SIZES = [(30, 20), (20, 30), (24, 24), (40, 18), (18, 26), (22, 36), (28, 28), (34, 21)]   # (w, h) per image


@pytest.fixture(autouse=True)
def _own_caches(tmp_path, monkeypatch):
    monkeypatch.setenv("STEPBENCH_HASH_CACHE", str(tmp_path / "hc" / "hashes.json"))
    monkeypatch.delenv("STEPBENCH_DATA", raising=False)


def write_coco(root, year=2014, split="val", n=8, captions_per=3, seed=0, uncaptioned=0):
    """A COCO copy: n images (ids 100, 107, 114, ...), `captions_per` captions each, annotation ids in a shuffled
    order so "first" must sort by id; `uncaptioned` extra images with no caption."""
    sub = f"{split}{year}"
    (root / sub).mkdir(parents=True)
    (root / "annotations").mkdir()
    rng = np.random.default_rng(seed)
    images, anns = [], []
    ann_ids = rng.permutation(n * captions_per) + 1
    for i in range(n + uncaptioned):
        iid, (w, h) = 100 + 7 * i, SIZES[i % len(SIZES)]
        name = f"COCO_{sub}_{iid:012d}.jpg"
        Image.fromarray(rng.integers(0, 255, (h, w, 3), dtype=np.uint8)).save(root / sub / name, quality=95)
        images.append({"id": iid, "file_name": name, "width": w, "height": h, "license": 1})
        if i < n:
            for k in range(captions_per):
                anns.append({"id": int(ann_ids[i * captions_per + k]), "image_id": iid,
                             "caption": f"  image {iid} caption {int(ann_ids[i * captions_per + k])}\n"})
    data = {"info": {"year": year}, "licenses": [], "images": images, "annotations": anns}
    (root / "annotations" / f"captions_{sub}.json").write_text(json.dumps(data))
    return root


def test_the_json_layout_is_parsed_and_captions_are_ordered_by_annotation_id(tmp_path):
    root = write_coco(tmp_path / "coco", uncaptioned=2)
    files, caps = read_captions(root / "annotations" / "captions_val2014.json")
    assert len(files) == 10 and len(caps) == 8 and all(len(c) == 3 for c in caps.values())
    for iid, c in caps.items():
        ids = [int(x.rsplit(" ", 1)[1]) for x in c]
        assert ids == sorted(ids) and all(x.startswith(f"image {iid} caption ") for x in c)   # cleaned ends
    ds = Coco("coco", root=str(root), caption_choice="first", resolution=16, workers=0)
    assert len(ds) == 8 and ds.labels().tolist() == [0] * 8 and ds.conditioning == "caption" and ds.has_images
    by_file = {files[i]: c for i, c in caps.items()}
    assert ds.captions() == [by_file[it.key][0] for it in ds.items]
    assert ds.captions_total == 24 and ds.listed() == (8, None)
    batches = list(ds.reference_batches(3))
    assert [x.shape for x, _ in batches] == [(3, 16, 16, 3), (3, 16, 16, 3), (2, 16, 16, 3)]


def test_the_seeded_draw_is_reproducible_changes_with_the_seed_and_nests_in_n(tmp_path):
    root = str(write_coco(tmp_path / "coco"))
    kw = dict(root=root, workers=0)
    a, b = Coco("coco", n=5, seed=3, **kw), Coco("coco", n=5, seed=3, **kw)
    assert [it.key for it in a.items] == [it.key for it in b.items] and a.captions() == b.captions()
    assert a.fingerprint() == b.fingerprint()
    others = [Coco("coco", n=5, seed=s, **kw) for s in (4, 5, 6)]
    assert any([it.key for it in o.items] != [it.key for it in a.items] for o in others)
    assert all(o.fingerprint() != a.fingerprint() for o in others)
    # the draw is numpy's permutation of the sorted ids; n keeps a prefix of it
    ids = sorted(100 + 7 * i for i in range(8))
    order = np.random.default_rng(3).permutation(8)[:5]
    assert [it.key for it in a.items] == [f"COCO_val2014_{ids[i]:012d}.jpg" for i in order]
    full = Coco("coco", seed=3, **kw)
    assert [it.key for it in full.items][:5] == [it.key for it in a.items] and len(full) == 8
    assert full.captions()[:5] == a.captions()
    # random captions: one of the image's own; more than one index is drawn across images and seeds
    picks = set()
    for s in range(4):
        ds = Coco("coco", seed=s, **kw)
        for it, c in zip(ds.items, ds.captions()):
            assert c.startswith(f"image {int(it.key[-16:-4])} caption ")
        picks |= set(ds.captions())
    first = set(Coco("coco", caption_choice="first", **kw).captions())
    assert len(picks - first) > 0
    with pytest.raises(DatasetError, match="options.n = 9 exceeds the 8 captioned images"):
        Coco("coco", n=9, **kw)


def test_caption_text_and_image_bytes_change_the_fingerprint(tmp_path):
    root = write_coco(tmp_path / "coco")
    kw = dict(root=str(root), caption_choice="first", workers=0)
    before = Coco("coco", **kw)
    ann = root / "annotations" / "captions_val2014.json"
    data = json.loads(ann.read_text())
    chosen = before.captions()[0]
    for a in data["annotations"]:
        if " ".join(a["caption"].split()) == chosen:
            a["caption"] = chosen + " at night"
    ann.write_text(json.dumps(data))
    after = Coco("coco", **kw)
    assert after.captions()[0] == chosen + " at night" and after.captions()[1:] == before.captions()[1:]
    assert after.fingerprint() != before.fingerprint()
    # an unchosen caption (not the first of its image) does not: the fingerprint is of the set as drawn
    unchosen = next(a for a in data["annotations"] if " ".join(a["caption"].split()) not in after.captions())
    unchosen["caption"] += " changed"
    ann.write_text(json.dumps(data))
    same = Coco("coco", **kw)
    assert same.captions() == after.captions() and same.fingerprint() == after.fingerprint()
    img = root / "val2014" / before.items[2].key
    Image.fromarray(np.zeros((20, 20, 3), np.uint8)).save(img)
    assert Coco("coco", **kw).fingerprint() != after.fingerprint()
    # the filter and transform are part of it too
    assert Coco("coco", filter="lanczos", **kw).fingerprint() != Coco("coco", **kw).fingerprint()
    assert Coco("coco", transform="adm", **kw).fingerprint() != Coco("coco", **kw).fingerprint()


def test_center_crop_is_the_largest_centred_square_resized_with_the_named_filter(tmp_path):
    root = write_coco(tmp_path / "coco", n=3)
    ds = Coco("coco", root=str(root), resolution=12, filter="lanczos", workers=0)
    got = torch.cat([x for x, _ in ds.reference_batches(2)])
    for k, it in enumerate(ds.items):
        im = Image.open(root / "val2014" / it.key).convert("RGB")
        w, h = im.size
        s = min(w, h)
        box = ((w - s) // 2, (h - s) // 2, (w - s) // 2 + s, (h - s) // 2 + s)
        want = np.asarray(im.crop(box).resize((12, 12), Image.LANCZOS))
        assert np.array_equal(got[k].numpy(), want), it.key
    two = Coco("coco", root=str(root), resolution=12, filter="lanczos", workers=2)     # the same in workers
    assert torch.equal(torch.cat([x for x, _ in two.reference_batches(2)]), got)
    a = np.arange(5 * 9 * 3, dtype=np.uint8).reshape(5, 9, 3)
    assert np.array_equal(center_crop(a, None, "bicubic"), a[:, 2:7])         # crop only, offsets floored
    with pytest.raises(DatasetError, match="filter 'lanczos' applies to transform center-crop only"):
        Coco("coco", root=str(root), transform="paper", filter="lanczos")


def test_a_missing_copy_says_where_to_put_it(tmp_path, monkeypatch):
    with pytest.raises(DatasetError, match=r"neither options.root nor \$STEPBENCH_DATA.*cocodataset.org.*"
                                           r"\$STEPBENCH_DATA/coco"):
        Coco("coco")
    monkeypatch.setenv("STEPBENCH_DATA", str(tmp_path))
    with pytest.raises(DatasetError, match=r"not found at \$STEPBENCH_DATA/coco .*annotations_trainval2014"):
        Coco("coco")
    write_coco(tmp_path / "coco", year=2017)
    with pytest.raises(DatasetError, match=r"captions annotation file .*captions_val2014.json' is missing; "
                                           r"download"):
        Coco("coco")
    ds = Coco("coco", year=2017, workers=0)                   # found under $STEPBENCH_DATA/coco
    assert len(ds) == 8
    (tmp_path / "coco" / "val2017").rename(tmp_path / "coco" / "elsewhere")
    with pytest.raises(DatasetError, match=r"the images folder .*val2017' is missing"):
        Coco("coco", year=2017)
    (tmp_path / "coco" / "val2017").mkdir()
    with pytest.raises(DatasetError, match="none of the 8 chosen images is in"):
        Coco("coco", year=2017)


def test_bad_annotation_files_are_named(tmp_path):
    root = write_coco(tmp_path / "coco", n=2)
    ann = root / "annotations" / "captions_val2014.json"
    data = json.loads(ann.read_text())
    for broken, msg in [({"images": []}, "expected an object with 'images' and 'annotations'"),
                        ({**data, "annotations": [{"image_id": 5, "caption": "x"}]}, "annotations\\[0\\] names "
                                                                                     "image_id 5"),
                        ({**data, "annotations": [{"image_id": 100}]}, "annotations\\[0\\] needs an integer"),
                        ({**data, "annotations": [{"image_id": 100, "caption": "  "}]}, "caption is empty")]:
        ann.write_text(json.dumps(broken))
        with pytest.raises(DatasetError, match=msg):
            Coco("coco", root=str(root))
    ann.write_text("{not json")
    with pytest.raises(DatasetError, match="not JSON"):
        Coco("coco", root=str(root))


def test_planned_size_and_describes_need_no_copy():
    assert Coco.planned_size("coco", {}) == 40_504 == COUNTS[(2014, "val")][0]
    assert Coco.planned_size("coco", {"n": 30_000}) == 30_000
    assert Coco.planned_size("coco", {"year": 2017}) == 5_000
    assert Coco.describes("coco", {}) == ("caption", True)
    assert Coco.card("coco").folder == "coco" and "CC BY 4.0" in Coco.card("coco").licence
