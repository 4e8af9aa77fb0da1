"""Hostile and broken inputs (issue 23, items 1, 8, 9, 12): special files never read, unreadable sets named and
refused, dataset messages naming the suite's id, clear refusals for mini weights paths and mixed sample sizes,
train.py checkpoints loading with nothing more unpickled, and dopri5 tolerances as the SiT reference passes them.
"""

from __future__ import annotations

import argparse
import os
import warnings
from pathlib import Path

import pytest
import torch
from PIL import Image

from bench.cell import RunSettings
from bench.data import decode as dec
from bench.data.base import DatasetError
from bench.data.image_files import ImageFiles
from bench.data.imagefolder import ImageFolder
from bench.data.mini import MiniDataset
from bench.engine import Engine
from bench.mini import weights as W
from bench.models.base import ModelSpec
from bench.models.checkpoint import read_checkpoint
from bench.models.mini import MiniSiT
from bench.models.samples import Samples
from bench.runner import Runner
from bench.suite import Suite

ZERO = Path("/dev/zero")
needs_dev_zero = pytest.mark.skipif(not ZERO.exists(), reason="no /dev/zero")


def _png(path: Path, size=(8, 8), colour=(200, 30, 90)) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new("RGB", size, colour).save(path)
    return path


def _hostile(folder: Path) -> Path:
    """Two good PNGs, a FIFO named x.png and a y.png -> /dev/zero symlink."""
    _png(folder / "a.png")
    _png(folder / "b.png", colour=(1, 2, 3))
    os.mkfifo(folder / "x.png")
    if ZERO.exists():
        (folder / "y.png").symlink_to(ZERO)
    return folder


# ------------------------------------------------------------------------------------------ 1: special files
def test_file_kind_names_special_and_broken_entries(tmp_path):
    os.mkfifo(tmp_path / "f.png")
    (tmp_path / "loop.png").symlink_to(tmp_path / "loop.png")
    (tmp_path / "gone.png").symlink_to(tmp_path / "nothing.png")
    assert dec.file_kind(_png(tmp_path / "ok.png")) is None
    assert dec.file_kind(tmp_path / "f.png") == "a FIFO"
    assert dec.file_kind(tmp_path / "loop.png") == "a symlink loop"
    assert dec.file_kind(tmp_path / "gone.png") == "a broken symlink"
    if ZERO.exists():
        assert dec.file_kind(ZERO) == "a character device"


@pytest.mark.timeout(60)
def test_decode_refuses_a_fifo_path_without_opening_it(tmp_path):
    os.mkfifo(tmp_path / "x.png")                 # opening it for reading would block forever
    with pytest.raises(dec.DecodeError, match="^a FIFO, not a regular file: never read$"):
        dec.decode(tmp_path / "x.png")


@pytest.mark.timeout(60)
def test_samples_folder_with_a_fifo_or_dev_zero_link_is_refused_not_read(tmp_path):
    folder = _hostile(tmp_path / "s")
    with pytest.raises(ValueError) as e:
        Samples().load(ModelSpec(id="s", adapter="samples", weights=str(folder)), torch.device("cpu"))
    msg = str(e.value)
    assert "model 's': samples folder" in msg and "x.png (a FIFO)" in msg and "never read" in msg
    if ZERO.exists():
        assert "y.png (a character device)" in msg and "2 special file(s)" in msg


@pytest.mark.timeout(120)
def test_bench_run_on_a_hostile_samples_folder_fails_the_cell_with_the_reason(tmp_path, toy_suite_text):
    folder = _hostile(tmp_path / "s")
    text = toy_suite_text().split("models:")[0] + f"models:\n  - id: s\n    adapter: samples\n    weights: {folder}\n"
    s = Runner(Suite.parse(text, "toy.yaml"), db=tmp_path / "b.duckdb", progress=False).run()
    assert s.failed >= 1 and s.exit_code != 0
    assert all("x.png (a FIFO)" in f for f in s.failures), s.failures


@pytest.mark.timeout(60)
def test_datasets_skip_special_files_with_a_warning_and_read_the_rest(tmp_path):
    root = tmp_path / "d"
    _hostile(root / "cls")
    with pytest.warns(UserWarning, match=r"special file\(s\) named like images skipped, never read"):
        ds = ImageFolder("imagefolder", root=str(root), resolution=8, workers=0)
    assert [it.key for it in ds.items] == ["cls/a.png", "cls/b.png"]
    assert len(ds) == 2 and ds.decode_failures == []
    assert sum(len(x) for x, _ in ds.reference_batches(4)) == 2
    flat = _hostile(tmp_path / "flat")
    with pytest.warns(UserWarning, match=r"never read \(not regular files\): x.png \(a FIFO\)"):
        assert len(ImageFiles("imagefiles", root=str(flat), workers=0)) == 2


# ------------------------------------------------------------------------------------------ 8: clear errors
def test_a_symlink_loop_is_listed_with_the_decode_failures(tmp_path):
    root = tmp_path / "d"
    _png(root / "cls" / "a.png")
    (root / "cls" / "loop.png").symlink_to(root / "cls" / "loop.png")
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        ds = ImageFolder("imagefolder", root=str(root), resolution=8, workers=0)
        assert len(ds) == 1
    assert ds.decode_failures == [{"path": "cls/loop.png", "error": "a symlink loop, not a regular file: never read"}]
    assert any("1 unreadable image" in str(w.message) for w in caught)
    assert ds.provenance()["decode_failures"]["count"] == 1


def test_a_folder_of_only_unreadable_images_is_a_clear_dataset_error(tmp_path):
    root = tmp_path / "d"
    (root / "cls").mkdir(parents=True)
    (root / "cls" / "a.png").write_bytes(b"not a png")
    (root / "cls" / "b.png").write_bytes(b"")
    ds = ImageFolder("imagefolder", root=str(root), resolution=8, workers=0)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        with pytest.raises(DatasetError, match=r"dataset 'imagefolder': no readable images in .*: all 2 listed "
                                               r"image\(s\) failed to decode \(e\.g\. cls/a\.png: "):
            ds.labels()


def _engine(tmp_path) -> Engine:
    return Engine(RunSettings(device="cpu", cache_dir=str(tmp_path / "cache"), progress=False))


def _cells(text: str):
    return Suite.parse(text, "t.yaml").expand()


def test_engine_names_datasets_by_the_suite_id_not_the_source(tmp_path, toy_suite_text):
    root = tmp_path / "d"
    (root / "cls").mkdir(parents=True)
    (root / "cls" / "a.png").write_bytes(b"not a png")
    datasets = (f"datasets:\n  - id: my-photos\n    source: imagefolder\n    options: {{root: '{root}', workers: 0}}\n"
                f"  - id: other-val\n    source: mini-val\n    options: {{size: 60}}\n"
                f"  - id: gone\n    source: imagefolder\n    options: {{root: '{tmp_path / 'none'}'}}\n")
    text = toy_suite_text().replace("datasets:\n  - id: mini-val\n    options: {size: 60}\n", datasets)
    assert "my-photos" in text
    eng = _engine(tmp_path)
    by = {c.dataset: c for c in _cells(text)}
    ds = eng.dataset(by["my-photos"])
    assert ds.name == "my-photos" and ds.dataset_card.name == "imagefolder"     # the card: by the source
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        with pytest.raises(DatasetError, match="^dataset 'my-photos': no readable images"):
            len(ds)
    with pytest.raises(DatasetError, match=r"^dataset 'gone' \(imagefolder\): options.root .* does not exist"):
        eng.dataset(by["gone"])
    # the mini set's stream comes from its source and its fingerprint does not depend on the name (unchanged)
    mini = eng.dataset(by["other-val"])
    assert mini.name == "other-val" and mini.stream == "val"
    assert mini.fingerprint() == MiniDataset("mini-val", 60).fingerprint() == \
        "87a044aee96d0d5b5d3819e7a6c60e97c777021785d8d8d932eda915b197770c"


@pytest.mark.parametrize("weights", ["/tmp/net.pt", "weights/mini-sit.bin", "mini.ckpt"])
def test_mini_adapter_given_a_non_safetensors_path_says_what_a_path_must_be(weights):
    with pytest.raises(W.WeightsError, match="is a path, not a manifest name: a path must be a .safetensors file "
                                             r"with its config beside it"):
        MiniSiT().weights_id(ModelSpec(id="m", adapter="mini-sit", weights=weights))
    with pytest.raises(W.WeightsError, match="no entry 'nosuch'.*make mini-weights"):     # a name: as before
        MiniSiT().weights_id(ModelSpec(id="m", adapter="mini-sit", weights="nosuch"))


def test_samples_of_mixed_sizes_name_the_files_and_the_resolution_option(tmp_path):
    _png(tmp_path / "s" / "0.png", (8, 8))
    _png(tmp_path / "s" / "1.png", (8, 8))
    _png(tmp_path / "s" / "2.png", (12, 6))
    spec = ModelSpec(id="s", adapter="samples", weights=str(tmp_path / "s"))
    with pytest.raises(ValueError, match=r"images of 2 different sizes \(0.png is 8x8, 2.png is 12x6\); set "
                                         r"options.resolution \(e.g. 256\) to resize"):
        Samples().load(spec, torch.device("cpu"))
    g = Samples()
    g.load(ModelSpec(id="s", adapter="samples", weights=str(tmp_path / "s"), options={"resolution": 4}),
           torch.device("cpu"))
    assert tuple(g.images.shape) == (3, 4, 4, 3)


def test_samples_with_an_unreadable_file_are_refused_naming_it(tmp_path):
    _png(tmp_path / "s" / "0.png")
    (tmp_path / "s" / "1.png").write_bytes(b"junk")
    with pytest.raises(ValueError, match=r"1 unreadable image\(s\): 1.png: UnidentifiedImageError"):
        Samples().load(ModelSpec(id="s", adapter="samples", weights=str(tmp_path / "s")), torch.device("cpu"))


# ------------------------------------------------------------------------------------------ 9: train.py checkpoints
class NotAllowed:
    """Any class but argparse.Namespace: its instances must stay refused."""

    def __init__(self):
        self.x = 1


def _train_py(path: Path, args) -> tuple[Path, dict]:
    """A checkpoint in SiT's train.py shape at ``path``, and what was saved in it."""
    net = torch.nn.Linear(2, 3)
    ema = {k: v + 1 for k, v in net.state_dict().items()}
    opt = torch.optim.AdamW(net.parameters(), lr=1e-4)
    net(torch.randn(4, 2)).sum().backward()
    opt.step()
    saved = {"model": net.state_dict(), "ema": ema, "opt": opt.state_dict(), "args": args}
    torch.save(saved, path)
    return path, saved


def test_a_sit_train_py_checkpoint_loads_its_ema_weights(tmp_path):
    args = argparse.Namespace(model="SiT-XL/2", image_size=256, num_classes=1000, lr=1e-4, global_seed=0,
                              results_dir="results", ckpt=None, path_type="Linear", betas=(0.9, 0.999))
    path, raw = _train_py(tmp_path / "0400000.pt", args)
    sd = read_checkpoint(path, "SiT weights")
    assert set(sd) == {"weight", "bias"}
    assert torch.equal(sd["weight"], raw["ema"]["weight"]) and not torch.equal(sd["weight"], raw["model"]["weight"])


@pytest.mark.parametrize("args", [NotAllowed(), argparse.Namespace(evil=NotAllowed())],
                         ids=["another-class", "namespace-holding-another-class"])
def test_anything_beyond_namespace_is_still_refused(tmp_path, args):
    path, _ = _train_py(tmp_path / "x.pt", args)
    with pytest.raises(ValueError, match=r"SiT weights: cannot read .* weights-only torch checkpoint "
                                         r"\(UnpicklingError: Weights only load failed"):
        read_checkpoint(path, "SiT weights")


# ------------------------------------------------------------------------------------------ 12: dopri5 parity
def test_dopri5_joint_solve_matches_the_reference_call_exactly():
    """The reference (SiT transport/integrators.py ``ode.sample``) calls odeint(_fn, x, linspace(t0, t1, N),
    method, atol=[atol], rtol=[rtol]); list tolerances make torchdiffeq's error ratio float64."""
    from torchdiffeq import odeint

    from bench import noise
    from bench.models.sit import INIT_STREAM
    from tests.test_sit import IDS, LABELS, settings, tiny_sit

    sit = tiny_sit(dopri5_per_sample=False)                      # SiT defaults: atol 1e-6, rtol 1e-3
    s = settings(steps=1, cfg=1.0, solver="dopri5")
    ours = sit.sample_latents(LABELS, IDS, s)
    x = noise.gaussian(s.seed, IDS, (4, 8, 8), stream=INIT_STREAM)
    f = sit.velocity_fn(LABELS, 1.0)

    def _fn(t, x):
        return f(x, torch.ones(x.size(0)) * t)

    def reference(atol, rtol):
        with torch.inference_mode():
            return odeint(_fn, x, torch.linspace(0.0, 1.0, 50), method="dopri5", atol=atol, rtol=rtol)[-1]

    assert torch.equal(ours, reference([1e-6], [1e-3]))
    floats = reference(1e-6, 1e-3)                             # the old call: a float32 error ratio
    assert not torch.equal(ours, floats) and (ours - floats).abs().max() < 1e-4
    # the per-sample default differs from the joint solve by design (documented in bench.models.samplers)
    per_sample = tiny_sit().sample_latents(LABELS, IDS, s)
    assert not torch.equal(per_sample, ours) and (per_sample - ours).abs().max() < 1e-2
