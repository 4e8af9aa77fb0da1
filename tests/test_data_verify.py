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
