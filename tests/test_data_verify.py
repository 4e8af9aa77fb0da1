"""`bench data verify/manifest` and the real-vs-real floor on a file-backed source (two disjoint halves)."""

import math

import numpy as np
import pytest
import torch
from PIL import Image

import bench
from bench.cli import main
from bench.data.base import DatasetError
from bench.data.imagefolder import ImageFolder
from bench.runner import Runner
from bench.suite import Suite


@pytest.fixture(autouse=True)
def _own_hash_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("STEPBENCH_HASH_CACHE", str(tmp_path / "hc" / "hashes.json"))
    monkeypatch.delenv("STEPBENCH_DATA", raising=False)


def _tree(root, classes=("a", "b", "c"), per_class=6, size=16):
    rng = np.random.default_rng(0)
    for k, c in enumerate(classes):
        (root / c).mkdir(parents=True, exist_ok=True)
        for i in range(per_class):
            arr = rng.integers(0, 255, (size, size, 3), dtype=np.uint8)
            arr[..., k] = 255 - i                        # class colour; image i has its own marker
            Image.fromarray(arr).save(root / c / f"{i}.png")
    return root


def test_verify_reports_missing_changed_and_extra(tmp_path, capsys):
    root = _tree(tmp_path / "set", per_class=2)
    manifest = tmp_path / "set.sha256"
    assert main(["data", "manifest", "my-set", "--root", str(root), "--manifest", str(manifest)]) == 0
    assert len(manifest.read_text().splitlines()) == 6 and "  a/0.png" in manifest.read_text()
    assert main(["data", "verify", "my-set", "--root", str(root), "--manifest", str(manifest)]) == 0
    assert "6 of 6 files match" in capsys.readouterr().out
    (root / "a" / "0.png").unlink()
    data = bytearray((root / "b" / "1.png").read_bytes())
    data[-20] ^= 1
    (root / "b" / "1.png").write_bytes(bytes(data))
    (root / "c" / "new.png").write_bytes(b"x")
    assert main(["data", "verify", "my-set", "--root", str(root), "--manifest", str(manifest)]) == 1
    out = capsys.readouterr().out
    assert "missing: a/0.png" in out and "changed: b/1.png" in out and "extra: c/new.png" in out
    assert "1 missing, 1 changed, 1 extra" in out


def test_verify_usage_errors_exit_2(tmp_path, capsys, monkeypatch):
    assert main(["data", "verify", "imagenet-val"]) == 2                  # no --root, no $STEPBENCH_DATA
    assert "STEPBENCH_DATA" in capsys.readouterr().err
    monkeypatch.setenv("STEPBENCH_DATA", str(tmp_path))
    (tmp_path / "imagenet" / "val").mkdir(parents=True)
    assert main(["data", "verify", "imagenet-val", "--manifest", str(tmp_path / "none.sha256")]) == 2
    assert "bench data manifest imagenet-val" in capsys.readouterr().err
    assert main(["data", "verify", "my-set", "--root", str(tmp_path / "nope")]) == 2
    bad = tmp_path / "bad.sha256"
    bad.write_text("not a manifest line\n")
    assert main(["data", "verify", "imagenet-val", "--manifest", str(bad)]) == 2
    assert "bad.sha256:1" in capsys.readouterr().err
    with pytest.raises(SystemExit) as e:
        main(["data", "verify"])
    assert e.value.code == 2


def test_halves_are_disjoint_and_holdout_draws_the_other_half(tmp_path):
    root = _tree(tmp_path / "set")
    a = ImageFolder("imagefolder", root=str(root), half="a", workers=0)
    b = ImageFolder("imagefolder", root=str(root), half="b", workers=0)
    assert {it.key for it in a.items}.isdisjoint({it.key for it in b.items}) and len(a) == len(b) == 9
    assert [it.key for it in a.items][:3] == ["a/0.png", "a/2.png", "a/4.png"]
    assert a.fingerprint() != b.fingerprint()
    held = a.holdout(a.labels(), torch.arange(len(a)))
    ref_b = torch.cat([x for x, _ in b.reference_batches(4)])
    assert torch.equal(held, ref_b)                     # per_reference: exactly the other half, label for label
    with pytest.raises(DatasetError, match="options.half"):
        ImageFolder("imagefolder", root=str(root), workers=0).holdout(torch.tensor([0]), torch.tensor([0]))


SUITE = """
suite: floor
seed: 0
batch_size: 4
timing: {{enabled: false}}
datasets:
  - {{id: tiny-set, source: imagefolder, options: {{root: {root}, resolution: 16, half: a, workers: 0}}}}
metrics:
  fid_is_kid: {{feature_extractor: toy-extractor, kid_subset_size: 4, kid_subsets: 5}}
models:
  - {{id: real-vs-real, adapter: real}}
"""


def test_real_vs_real_row_on_a_file_source(tmp_path):
    root = _tree(tmp_path / "set")
    suite = Suite.parse(SUITE.format(root=root), "floor.yaml")
    s = Runner(suite, db=tmp_path / "b.duckdb", progress=False).run()
    assert (s.ran, s.failed) == (1, 0), s.failures
    df = bench.load(tmp_path / "b.duckdb")
    assert len(df) == 1 and df.iloc[0]["n"] == 9 and math.isfinite(df.iloc[0]["fid"]) and df.iloc[0]["fid"] > 0


def _v2_tree(root, per_class=4, classes=3):
    rng = np.random.default_rng(1)
    for c in range(classes):
        (root / str(c)).mkdir(parents=True, exist_ok=True)
        for i in range(per_class):
            Image.fromarray(rng.integers(0, 255, (8, 8, 3), dtype=np.uint8)).save(root / str(c) / f"{i}.jpeg")
    return root


@pytest.fixture
def small_v2_card(monkeypatch):
    """imagenet-v2's card, shrunk to the 12 images in 3 classes of `_v2_tree`."""
    from dataclasses import replace

    from bench.data.imagenet import ImageNetV2
    card = ImageNetV2.cards["imagenet-v2"]
    monkeypatch.setitem(ImageNetV2.cards, "imagenet-v2", replace(card, images=12, classes=3))


def test_verify_without_a_manifest_checks_layout_counts_and_a_sample(tmp_path, capsys, monkeypatch, small_v2_card):
    root = _v2_tree(tmp_path / "data" / "imagenet-v2")
    monkeypatch.setenv("STEPBENCH_DATA", str(tmp_path / "data"))
    assert main(["data", "verify", "imagenet-v2"]) == 0
    out = capsys.readouterr().out
    assert "12 images in 3 classes (the card: 12 images, 3 classes)" in out and "12 of 12 sampled files decode" in out
    assert "no manifest" in out and "bench data manifest imagenet-v2" in out
    (root / "0" / "0.jpeg").rename(root / "1" / "moved.jpeg")             # same total, uneven classes
    (root / "2" / "1.jpeg").write_bytes(b"not an image")
    assert main(["data", "verify", "imagenet-v2"]) == 1
    out = capsys.readouterr().out
    assert "2 of the 3 classes with images do not hold 4 each" in out
    assert "unreadable: 2/1.jpeg" in out and "11 of 12 sampled files decode" in out
    main(["data", "verify", "imagenet-v2", "--sample", "3"])
    assert "of 3 sampled files decode" in capsys.readouterr().out


def test_verify_without_a_manifest_names_count_mismatches_and_bad_layouts(tmp_path, capsys):
    root = _v2_tree(tmp_path / "v2")
    assert main(["data", "verify", "imagenet-v2", "--root", str(root)]) == 1     # the real card: 10,000 / 1000
    out = capsys.readouterr().out
    assert "problem: 12 images; the card (ImageNetV2 matched-frequency) expects 10,000" in out
    assert "problem: 3 classes with images; the card expects 1,000" in out
    assert main(["data", "verify", "imagenet-val", "--root", str(root)]) == 2    # class-id folders are not synsets
    assert "no synset folders or images" in capsys.readouterr().err
    assert main(["data", "verify", "imagefolder", "--root", str(root)]) == 0    # no expected counts: layout, sample
    assert "12 images in 3 classes;" in capsys.readouterr().out
    assert main(["data", "verify", "mini-val"]) == 2
    assert "not read from local files" in capsys.readouterr().err


def test_a_misspelt_dataset_name_gets_a_did_you_mean(tmp_path, capsys):
    root = _tree(tmp_path / "set", per_class=1)
    assert main(["data", "verify", "imagenet-vall", "--root", str(root)]) == 2
    assert "did you mean 'imagenet-val'" in capsys.readouterr().err
    assert main(["data", "manifest", "imagenet-vall", "--root", str(root)]) == 2
    assert "did you mean 'imagenet-val'" in capsys.readouterr().err
    from bench.data.verify import CARDS
    assert not (CARDS / "imagenet-vall.sha256").exists()


def test_manifest_of_a_registered_dataset_then_verify_by_it(tmp_path, capsys, monkeypatch):
    """`bench data manifest NAME --root DIR` writes datasets/<card's manifest>.sha256 by default; verify reads it."""
    from bench.data import verify as v
    monkeypatch.setattr(v, "CARDS", tmp_path / "cards")
    (tmp_path / "cards").mkdir()
    root = _v2_tree(tmp_path / "v2")
    assert main(["data", "manifest", "imagenet-v2", "--root", str(root)]) == 0
    assert (tmp_path / "cards" / "imagenet-v2.sha256").read_text().count("\n") == 12
    capsys.readouterr()
    assert main(["data", "verify", "imagenet-v2", "--root", str(root)]) == 0
    out = capsys.readouterr().out
    assert "12 of 12 files match imagenet-v2.sha256" in out and "the imagenet-v2 card" in out   # 12 vs 10,000
