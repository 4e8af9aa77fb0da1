"""File-backed sources in every layout: labels, order, counts, fingerprints, failures, errors, streaming."""

import io
import os
import shutil
import tarfile
import warnings

import numpy as np
import pytest
import torch
from PIL import Image

from bench import registry
from bench.cell import SamplePlan
from bench.data.base import DatasetError, plan_labels, prompts_for
from bench.data.imagefolder import ImageFolder
from bench.data.imagenet import ImageNetV2, ImageNetVal, ReLAIONet

pytestmark = pytest.mark.filterwarnings("ignore:dataset .* unreadable image")
SYN = {0: "n01440764", 1: "n01443537", 2: "n01484850"}   # tench, goldfish, great white shark


@pytest.fixture(autouse=True)
def _own_hash_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("STEPBENCH_HASH_CACHE", str(tmp_path / "hc" / "hashes.json"))
    monkeypatch.delenv("STEPBENCH_DATA", raising=False)


def _jpeg(path, seed, size=(24, 18)):
    path.parent.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    Image.fromarray(rng.integers(0, 255, (size[1], size[0], 3), dtype=np.uint8)).save(path, quality=90)


def _odd_images(folder):
    """CMYK, grayscale, palette, RGBA and an EXIF-rotated JPEG, plus one corrupt file."""
    folder.mkdir(parents=True, exist_ok=True)
    Image.new("CMYK", (20, 16), (10, 200, 30, 0)).save(folder / "z1_cmyk.jpg")
    Image.fromarray(np.full((16, 20), 90, np.uint8), "L").save(folder / "z2_gray.png")
    Image.new("P", (20, 16), 3).save(folder / "z3_pal.png")
    Image.new("RGBA", (20, 16), (0, 0, 0, 0)).save(folder / "z4_rgba.png")
    exif = Image.Exif()
    exif[0x0112] = 6
    Image.new("RGB", (30, 10), (5, 6, 7)).save(folder / "z5_exif.jpg", exif=exif.tobytes())
    (folder / "z6_corrupt.jpg").write_bytes(b"\xff\xd8\xff garbage")


def _val_synset_tree(root, per_class=3):
    for y, syn in SYN.items():
        for i in range(per_class):
            _jpeg(root / syn / f"ILSVRC2012_val_{y}{i:04d}.JPEG", seed=10 * y + i)
    return root


def test_imagenet_val_synset_layout(tmp_path):
    root = _val_synset_tree(tmp_path / "val")
    ds = ImageNetVal("imagenet-val", root=str(root), resolution=16, workers=0)
    assert ds.layout == "synset folders" and len(ds) == 9
    assert ds.labels().tolist() == [0, 0, 0, 1, 1, 1, 2, 2, 2]
    assert ds.class_names[2] == "great_white_shark" and ds.decode_failures == []
    assert prompts_for(ds, torch.tensor([2])) == ["a photo of a great_white_shark"]
    batches = list(ds.reference_batches(4))
    assert [b[0].shape for b in batches] == [(4, 16, 16, 3), (4, 16, 16, 3), (1, 16, 16, 3)]
    assert all(b[0].dtype == torch.uint8 for b in batches)
    assert torch.cat([b[1] for b in batches]).tolist() == ds.labels().tolist()
    first = np.asarray(Image.open(root / SYN[0] / "ILSVRC2012_val_00000.JPEG").convert("RGB")
                       .resize((16, 16), Image.BICUBIC))
    np.testing.assert_array_equal(batches[0][0][0].numpy(), first)
    readable = ImageNetVal("imagenet-val", root=str(root), class_names="readable", workers=0)
    assert readable.class_names[2] == "great white shark"


def test_imagenet_val_flat_layouts_match_synset_layout(tmp_path):
    syn_root = _val_synset_tree(tmp_path / "val")
    flat = tmp_path / "flat"
    flat.mkdir()
    rows, lines = ["ImageId,PredictionString"], []
    for y, syn in SYN.items():
        for p in sorted((syn_root / syn).iterdir()):
            shutil.copy2(p, flat / p.name)
            rows.append(f"{p.stem},{syn} 1 2 3 4")
            lines.append(f"{p.name} {y}")
    (tmp_path / "LOC_val_solution.csv").write_text("\n".join(rows[:1] + rows[:0:-1]) + "\n")   # any row order
    (tmp_path / "val_idx.txt").write_text("\n".join(lines) + "\n")
    a = ImageNetVal("imagenet-val", root=str(syn_root), workers=0)
    b = ImageNetVal("imagenet-val", root=str(flat), workers=0)                # finds ../LOC_val_solution.csv
    c = ImageNetVal("imagenet-val", root=str(flat), ground_truth=str(tmp_path / "val_idx.txt"), workers=0)
    assert b.layout == "flat + ground truth"
    assert a.labels().tolist() == b.labels().tolist() == c.labels().tolist()
    assert [it.key.split("/")[-1] for it in a.items] == [it.key for it in b.items]
    assert a.fingerprint() == b.fingerprint() == c.fingerprint()     # same files, same labels, same preprocessing
    (tmp_path / "bad.txt").write_text("ILSVRC2012_val_00000.JPEG 1\n")
    with pytest.raises(DatasetError, match="have no label in"):
        ImageNetVal("imagenet-val", root=str(flat), ground_truth=str(tmp_path / "bad.txt"))
    (tmp_path / "devkit.txt").write_text("65\n970\n")
    with pytest.raises(DatasetError, match="devkit"):
        ImageNetVal("imagenet-val", root=str(flat), ground_truth=str(tmp_path / "devkit.txt"))


def test_unreadable_images_are_counted_listed_and_skipped_consistently(tmp_path):
    root = _val_synset_tree(tmp_path / "val")
    _odd_images(root / SYN[1])
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        ds = ImageNetVal("imagenet-val", root=str(root), resolution=12, workers=0)
        labels = ds.labels()
    assert any("1 unreadable image" in str(w.message) for w in caught)
    assert ds.decode_failures == [{"path": f"{SYN[1]}/z6_corrupt.jpg", "error": ds.decode_failures[0]["error"]}]
    assert ds.decode_failures[0]["error"] == "UnidentifiedImageError: not an image, or a format PIL cannot read"
    assert len(ds) == 9 + 5 and labels.tolist() == [0] * 3 + [1] * 8 + [2] * 3
    got = list(ds.reference_batches(5))
    assert torch.cat([y for _, y in got]).tolist() == labels.tolist()
    imgs = torch.cat([x for x, _ in got])
    assert imgs.shape == (14, 12, 12, 3)
    rgba = imgs[3 + 3 + 3]                      # order within class 1: 3 JPEGs, then z1_cmyk, z2_gray, z3_pal, z4_rgba
    assert (rgba == 255).all()                  # fully transparent -> white
    plan_l, ids = plan_labels(ds, SamplePlan("per_reference", None), 42)
    assert plan_l.tolist() == labels.tolist() and ids.tolist() == list(range(14))
    # the scan is cached by content: a fresh object does not decode again and lists the same failure
    again = ImageNetVal("imagenet-val", root=str(root), resolution=12, workers=0)
    again.reader = None                         # would crash if it tried to read
    assert again.decode_failures == ds.decode_failures and len(again) == 14


def test_workers_stream_the_same_batches_in_order(tmp_path):
    root = _val_synset_tree(tmp_path / "val", per_class=5)
    _odd_images(root / SYN[2])
    w0 = ImageNetVal("imagenet-val", root=str(root), resolution=8, workers=0)
    w2 = ImageNetVal("imagenet-val", root=str(root), resolution=8, workers=2)
    b0, b2 = list(w0.reference_batches(3)), list(w2.reference_batches(3))
    assert [y.tolist() for _, y in b0] == [y.tolist() for _, y in b2]
    assert all(torch.equal(x0, x2) for (x0, _), (x2, _) in zip(b0, b2))
    assert w2.decode_failures == w0.decode_failures and len(w2.decode_failures) == 1


def test_fingerprint_follows_content_and_preprocessing(tmp_path):
    root = _val_synset_tree(tmp_path / "val")
    fp = ImageNetVal("imagenet-val", root=str(root)).fingerprint()
    copy = tmp_path / "copy"
    shutil.copytree(root, copy)                 # same bytes elsewhere (new mtimes): same fingerprint
    assert ImageNetVal("imagenet-val", root=str(copy)).fingerprint() == fp
    assert ImageNetVal("imagenet-val", root=str(root), transform="adm").fingerprint() != fp
    assert ImageNetVal("imagenet-val", root=str(root), resolution=64).fingerprint() != fp
    assert ImageNetVal("imagenet-val", root=str(root), class_names="readable").fingerprint() == fp
    victim = root / SYN[1] / "ILSVRC2012_val_10001.JPEG"
    data = bytearray(victim.read_bytes())
    data[-3] ^= 0x01                            # one byte, same size
    victim.write_bytes(bytes(data))
    st = victim.stat()
    os.utime(victim, ns=(st.st_atime_ns, st.st_mtime_ns + 1_000_000_000))
    assert ImageNetVal("imagenet-val", root=str(root)).fingerprint() != fp
    victim.unlink()                             # a missing image changes it too
    assert ImageNetVal("imagenet-val", root=str(root)).fingerprint() != fp


def test_imagenet_v2_folder_and_tar_without_extracting(tmp_path):
    base = tmp_path / "v2"
    folder = base / ImageNetV2.ARCHIVE_DIR
    for y in (0, 7, 12):
        for i in range(2):
            _jpeg(folder / str(y) / f"{y}_{i}.jpeg", seed=100 + 3 * y + i)
    a = ImageNetV2("imagenet-v2", root=str(base), resolution=8, workers=0)   # finds the standard sub-folder
    assert a.layout == "folder" and a.labels().tolist() == [0, 0, 7, 7, 12, 12]
    tgz = tmp_path / "imagenetv2-matched-frequency.tar.gz"
    with tarfile.open(tgz, "w:gz") as tf:       # archive order deliberately not sorted: 12, 0, 7
        for y in (12, 0, 7):
            for i in (1, 0):
                tf.add(folder / str(y) / f"{y}_{i}.jpeg", arcname=f"{ImageNetV2.ARCHIVE_DIR}/{y}/{y}_{i}.jpeg")
        for member, data in (("README.txt", b"hi"), ("7/broken.jpeg", b"junk")):    # not an image; unreadable
            info = tarfile.TarInfo(f"{ImageNetV2.ARCHIVE_DIR}/{member}")
            info.size = len(data)
            tf.addfile(info, io.BytesIO(data))
    for workers in (0, 2):
        t = ImageNetV2("imagenet-v2", root=str(tgz), resolution=8, workers=workers)
        assert t.layout == "tar" and t.labels().tolist() == [12, 12, 0, 0, 7, 7]     # archive order
        assert t.decode_failures[0]["path"] == f"{ImageNetV2.ARCHIVE_DIR}/7/broken.jpeg"
        got = list(t.reference_batches(4))
        assert torch.cat([y for _, y in got]).tolist() == t.labels().tolist()
        want = np.asarray(Image.open(folder / "12" / "12_1.jpeg").convert("RGB").resize((8, 8), Image.BICUBIC))
        np.testing.assert_array_equal(got[0][0][0].numpy(), want)
    assert not (tmp_path / ImageNetV2.ARCHIVE_DIR).exists()          # nothing extracted
    only_tar = tmp_path / "only_tar"
    only_tar.mkdir()
    shutil.copy(tgz, only_tar)
    assert ImageNetV2("imagenet-v2", root=str(only_tar), workers=0).layout == "tar"
    assert ImageNetV2("imagenet-v2", root=str(only_tar)).fingerprint() == \
        ImageNetV2("imagenet-v2", root=str(tgz)).fingerprint()
    assert a.fingerprint() != t.fingerprint()
    (tmp_path / "empty").mkdir()
    with pytest.raises(DatasetError, match="no class folders 0..999.*ImageNetV2"):
        ImageNetV2("imagenet-v2", root=str(tmp_path / "empty"))


def test_relaionet_names_map_to_ids_and_unmapped_folders_are_reported(tmp_path):
    images = tmp_path / "rl" / "reLAIONet-cleaned-v1" / "images"
    names = {"Great White Shark": 2, "jack-o'-lantern": 607, "JACK_O__LANTERN": 607, "goldfish": 1,
             "not a real class": None, "crane": None}
    for k, (folder, _) in enumerate(names.items()):
        for i in range(2):
            _jpeg(images / folder / f"web {i}.jpg", seed=200 + 2 * k + i)
    with pytest.warns(UserWarning, match="2 folder.*map to no ImageNet-1k id"):
        ds = ReLAIONet("relaionet", root=str(tmp_path / "rl"), workers=0)
    assert [u["folder"] for u in ds.unmapped_folders] == ["crane", "not a real class"]
    assert all(u["images"] == 2 for u in ds.unmapped_folders)
    assert ds.labels().tolist() == [1, 1, 2, 2] + [607] * 4 and len(ds) == 8
    assert [it.key for it in ds.items][:2] == ["goldfish/web 0.jpg", "goldfish/web 1.jpg"]
    with pytest.raises(DatasetError, match="map to no ImageNet-1k id"):
        ReLAIONet("relaionet", root=str(images), strict=True)
    mapped = ReLAIONet("relaionet", root=str(images), class_map={"crane": 134, "not a real class": 0}, strict=True)
    assert mapped.unmapped_folders == [] and mapped.labels().tolist()[:2] == [0, 0] and 134 in mapped.labels()
    with pytest.raises(DatasetError, match="class_map"):
        ReLAIONet("relaionet", root=str(images), class_map={"crane": 1000})


def test_imagefolder_label_maps(tmp_path):
    root = tmp_path / "if"
    for k, folder in enumerate(["dog", "cat", "n01443537"]):
        for i in range(2):
            _jpeg(root / folder / "sub" / f"{i}.png", seed=300 + 2 * k + i)
    plain = ImageFolder("imagefolder", root=str(root), resolution=8, workers=0)
    assert plain.class_names == ["cat", "dog", "n01443537"] and plain.labels().tolist() == [0, 0, 1, 1, 2, 2]
    assert [it.key for it in plain.items][:1] == ["cat/sub/0.png"]
    mapped = ImageFolder("imagefolder", root=str(root), classes=["animal", "fish"],
                         label_map={"dog": 0, "cat": 0, "n01443537": 1}, workers=0)
    assert mapped.labels().tolist() == [0, 0, 0, 0, 1, 1]
    with pytest.raises(DatasetError, match="not ImageNet-1k synsets"):
        ImageFolder("imagefolder", root=str(root), class_index="imagenet-1k")
    inet = ImageFolder("imagefolder", root=str(root), class_index="imagenet-1k", label_map={"dog": 5, "cat": 6},
                       workers=0)
    assert inet.labels().tolist() == [1, 1, 5, 5, 6, 6] and len(inet.class_names) == 1000
    with pytest.raises(DatasetError, match="not in options.classes"):
        ImageFolder("imagefolder", root=str(root), classes=["dog"])
    with pytest.raises(DatasetError, match="options.transform"):
        ImageFolder("imagefolder", root=str(root), transform="crop")


def test_locations_and_missing_dataset_errors(tmp_path, monkeypatch):
    with pytest.raises(DatasetError, match=r"neither options.root nor \$STEPBENCH_DATA.*ILSVRC2012_img_val.tar"):
        ImageNetVal("imagenet-val")
    monkeypatch.setenv("STEPBENCH_DATA", str(tmp_path))
    with pytest.raises(DatasetError, match=r"not found at \$STEPBENCH_DATA/imagenet-v2.*ImageNetV2"):
        ImageNetV2("imagenet-v2")
    with pytest.raises(DatasetError, match="options.root .* does not exist"):
        ReLAIONet("relaionet", root=str(tmp_path / "nope"))
    _val_synset_tree(tmp_path / "imagenet" / "val", per_class=1)
    ds = ImageNetVal("imagenet-val", workers=0)
    assert ds.root == tmp_path / "imagenet" / "val" and len(ds) == 3
    empty = tmp_path / "empty"
    (empty / "n01440764").mkdir(parents=True)
    with pytest.raises(DatasetError, match="no images found"):
        ImageNetVal("imagenet-val", root=str(empty))
    with pytest.raises(DatasetError, match="options.half"):
        ImageNetVal("imagenet-val", half="c")
    with pytest.raises(DatasetError, match=r"^dataset 'imagenet-val': options.rot: unknown option \(did you mean "
                                           r"'root'"):
        ImageNetVal("imagenet-val", rot=str(tmp_path))
    with pytest.raises(DatasetError, match="options.clas_map: unknown option.*did you mean 'class_map'"):
        registry.resolve("dataset", "relaionet")("relaionet", clas_map={})


def test_sample_plans_on_a_real_source(tmp_path):
    ds = ImageNetVal("imagenet-val", root=str(_val_synset_tree(tmp_path / "val")), workers=0)
    y, ids = plan_labels(ds, SamplePlan("per_reference", 4), 0)
    assert y.tolist() == [0, 0, 0, 1] and ids.tolist() == [0, 1, 2, 3]
    y, _ = plan_labels(ds, SamplePlan("per_class", 2), 0)
    assert len(y) == 2000 and y[:4].tolist() == [0, 0, 1, 1]
    y1, _ = plan_labels(ds, SamplePlan("uniform", 50), 7)
    assert len(y1) == 50 and int(y1.max()) < 1000 and torch.equal(y1, plan_labels(ds, SamplePlan("uniform", 50), 7)[0])
    with pytest.raises(DatasetError, match="exceeds the 9 reference images"):
        plan_labels(ds, SamplePlan("per_reference", 10), 0)


def test_registry_builds_the_sources_by_name(tmp_path):
    root = _val_synset_tree(tmp_path / "val", per_class=1)
    for name in ("imagenet-val", "imagenet-v2", "relaionet", "imagefolder", "hf"):
        registry.check("dataset", name)
    ds = registry.resolve("dataset", "imagenet-val")("imagenet-val", **{"root": str(root), "workers": 0})
    assert len(ds) == 3 and isinstance(ds.fingerprint(), str) and len(ds.fingerprint()) == 64


def test_reference_batches_stream_lazily(tmp_path, monkeypatch):
    from bench.data import decode as dec
    ds = ImageNetVal("imagenet-val", root=str(_val_synset_tree(tmp_path / "val", per_class=4)), resolution=8,
                     workers=0)
    len(ds)                                    # the failure scan runs first (and is cached)
    calls = []
    orig = dec.apply
    monkeypatch.setattr(dec, "apply", lambda *a: calls.append(1) or orig(*a))
    it = ds.reference_batches(3)
    assert calls == []                         # nothing decoded until asked
    next(it)
    assert len(calls) == 3                     # one batch decoded, not the set
    assert sum(len(x) for x, _ in it) == 9 and len(calls) == 12
