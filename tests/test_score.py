"""`bench score GENERATED --ref REFERENCE`: the same numbers as torch-fidelity's calculate_metrics on the same
folders (the toy extractor here; inception-v3-compat with random local weights below), every input form giving the
same values, CLIP Score from a prompts file equal to the one from stored labels, storing as a cell, and one clear
line for every request that cannot be scored."""

import json

import numpy as np
import pytest
import torch
import torch_fidelity
from PIL import Image

import bench
from bench.cli import main
from bench.mini import data as mini
from bench.score import Request, ScoreError, score
from tests.random_inception import random_inception

TOY = ["-o", "fid_is_kid.feature_extractor=toy-extractor", "-o", "fid_is_kid.kid_subset_size=10",
       "-o", "fid_is_kid.kid_subsets=20", "-o", "fid_is_kid.isc_splits=3"]
TF_TOY = dict(feature_extractor="toy-extractor", feature_layer_fid="feat", feature_layer_kid="feat",
              feature_layer_isc="logits_unbiased", feature_layer_prc="feat", kid_subset_size=10, kid_subsets=20,
              isc_splits=3)
KEYS = {"fid": "frechet_inception_distance", "is": "inception_score_mean", "kid": "kernel_inception_distance_mean",
        "precision": "precision", "recall": "recall"}


@pytest.fixture(autouse=True)
def _here(tmp_path, monkeypatch):
    """Caches (reference statistics, file hashes) under this test's folder."""
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("STEPBENCH_HASH_CACHE", str(tmp_path / "hc" / "hashes.json"))


def images(n, shift=0, seed=0, size=16):
    rng = np.random.default_rng(seed)
    return np.clip(rng.integers(0, 200, (n, size, size, 3)) + shift, 0, 255).astype(np.uint8)


def folder(path, imgs):
    """PNGs named 0.png, 1.png, ..., 10.png: name order (10 before 2) is not creation order."""
    path.mkdir(parents=True)
    for i, a in enumerate(imgs):
        Image.fromarray(a).save(path / f"{i}.png")
    return path


def by_name(imgs):
    """The images in the order a folder written by `folder` is read (sorted file names)."""
    return imgs[sorted(range(len(imgs)), key=lambda i: f"{i}.png")]


def run_cli(capsys, *args):
    code = main(["score", *args, "--json", "-q"])
    out = capsys.readouterr()
    return code, (json.loads(out.out) if code == 0 else None), out.err


def tf_metrics(a, b, **kw):
    return torch_fidelity.calculate_metrics(input1=str(a), input2=str(b), cuda=False, fid=True, isc=True, kid=True,
                                            prc=True, verbose=False, cache=False, save_cpu_ram=True, **kw)


def test_folders_equal_torch_fidelity_calculate_metrics(tmp_path, capsys):
    gen, ref = folder(tmp_path / "gen", images(24, 0, 1)), folder(tmp_path / "ref", images(30, 40, 2))
    code, out, errs = run_cli(capsys, str(gen), "--ref", str(ref), *TOY)
    assert code == 0, errs
    tf = tf_metrics(gen, ref, **TF_TOY)
    v = out["values"]
    for ours, theirs in KEYS.items():
        assert v[ours] == pytest.approx(tf[theirs], rel=1e-6, abs=1e-9), ours
    assert v["fid"] > 0.01 and out["n"] == 24 and out["reference_images"] == 30 and out["stored"] is None


def test_every_input_form_gives_the_same_values(tmp_path):
    """Generated: a folder or an .npz (here with class labels the unlabelled reference has no names for); reference:
    a folder or an .npz streamed row by row. The same uint8 images give the same numbers."""
    g, r = images(20, 0, 3), images(26, 30, 4)
    opts = {"fid_is_kid": {"feature_extractor": "toy-extractor", "kid_subset_size": 10, "kid_subsets": 10}}
    folder(tmp_path / "g", g)
    folder(tmp_path / "r", r)
    np.savez(tmp_path / "g.npz", arr_0=by_name(g), arr_1=np.arange(20) % 7)
    np.savez(tmp_path / "r.npz", arr_0=by_name(r))
    runs = {(a, b): score(Request(str(tmp_path / a), str(tmp_path / b), options=opts)).values
            for a, b in (("g", "r"), ("g.npz", "r"), ("g", "r.npz"), ("g.npz", "r.npz"))}
    first = runs[("g", "r")]
    assert first["fid"][0] > 0.01
    for form, values in runs.items():
        assert {k: v for k, (v, _) in values.items()} == {k: v for k, (v, _) in first.items()}, form


def test_stored_as_a_cell_and_found_again(tmp_path, capsys):
    gen, ref = folder(tmp_path / "gen", images(12, 0, 5)), folder(tmp_path / "ref", images(12, 50, 6))
    db = str(tmp_path / "s.duckdb")
    code, out, errs = run_cli(capsys, str(gen), "--ref", str(ref), "--db", db, "--name", "my-model", *TOY)
    assert code == 0 and out["stored"] == "stored", errs
    again = run_cli(capsys, str(gen), "--ref", str(ref), "--db", db, "--name", "my-model", *TOY)[1]
    assert again["stored"] == "already stored" and again["values"] == out["values"] and again["key"] == out["key"]
    df = bench.load(db)
    assert len(df) == 1
    row = df.iloc[0]
    assert (row["suite"], row["model"], row["dataset"], row["n"]) == ("score", "my-model", "ref", 12)
    assert row["fid"] == out["values"]["fid"] and row["key"] == out["key"]
    nostore = run_cli(capsys, str(gen), "--ref", str(ref), "--name", "my-model", *TOY)[1]
    assert nostore["key"] == out["key"] and nostore["values"] == out["values"]   # one key, stored or not


def test_the_table_names_each_value_and_its_direction(tmp_path, capsys):
    gen, ref = folder(tmp_path / "gen", images(12, 0, 5)), folder(tmp_path / "ref", images(12, 50, 6))
    assert main(["score", str(gen), "--ref", str(ref), "-q", *TOY]) == 0
    out = capsys.readouterr().out
    assert "FID" in out and "lower is better" in out and "higher is better" in out and "not stored" in out


def test_prompts_file_gives_the_clip_score_of_stored_labels(tmp_path):
    """Sample i scored against line i of a prompts file equals sample i scored against its label's class name."""
    imgs, labels = mini.batch("val", 0, 30)
    folder(tmp_path / "g", imgs)
    order = sorted(range(30), key=lambda i: f"{i}.png")
    (tmp_path / "prompts.txt").write_text("".join(mini.PROMPT_TEMPLATE.format(class_name=mini.CLASSES[labels[i]])
                                                  + "\n" for i in order))
    np.savez(tmp_path / "g.npz", arr_0=imgs[order], arr_1=labels[order])
    opts = {"clip_score": {"backend": "mini", "model": "clip", "bootstrap": 50}}
    common = dict(reference="mini-val", metrics=("clip_score",), options=opts)
    by_prompts = score(Request(str(tmp_path / "g"), prompts=str(tmp_path / "prompts.txt"), **common)).values
    by_labels = score(Request(str(tmp_path / "g.npz"), labels=True, **common)).values
    assert by_prompts["clip_score"][0] == pytest.approx(by_labels["clip_score"][0], rel=1e-6)
    assert by_prompts["clip_score"][0] > 0
    assert not any("/class/" in k for k in by_prompts)          # a "class" per prompt: no per-class rows
    (tmp_path / "prompts.txt").write_text("a photo of a star\n" * 30)
    other = score(Request(str(tmp_path / "g"), prompts=str(tmp_path / "prompts.txt"), **common)).values
    assert other["clip_score"][0] != by_prompts["clip_score"][0]   # the prompts are what is scored


@pytest.mark.parametrize("args, says", [
    (["--metrics", "clip_score"], "--prompts FILE"),
    (["-o", "fid_is_kid.kid_subset_siz=5"], "did you mean 'kid_subset_size'"),
    (["-o", "fid_is_kid.kid_subset_size=0"], "kid_subset_size"),
    (["-o", "nosuch.x=1"], "neither 'ref' nor one of --metrics"),
    (["--metrics", "fid_is_kdi"], "did you mean 'fid_is_kid'"),
    (["--labels", "--metrics", "clip_score"], "carries no labels"),
])
def test_requests_that_cannot_be_scored_are_one_line(tmp_path, capsys, args, says):
    gen, ref = folder(tmp_path / "gen", images(6)), folder(tmp_path / "ref", images(6, 10))
    code, _, errs = run_cli(capsys, str(gen), "--ref", str(ref), *args)
    assert code == 2 and says in errs and "Traceback" not in errs, errs


def test_inputs_that_are_not_there_are_one_line(tmp_path, capsys):
    gen = folder(tmp_path / "gen", images(6))
    for args, says in ((["--ref", "imagenet-vall"], "did you mean 'imagenet-val'"),
                       (["--ref", str(tmp_path / "none")], "not a registered dataset")):
        code, _, errs = run_cli(capsys, str(gen), *args)
        assert code == 2 and says in errs, errs
    code, _, errs = run_cli(capsys, str(tmp_path / "nothing"), "--ref", str(gen))
    assert code == 2 and "no such folder or .npz" in errs
    (tmp_path / "p.txt").write_text("one\ntwo\n")
    with pytest.raises(ScoreError, match="2 prompts for 6 images"):
        score(Request(str(gen), "mini-val", metrics=("clip_score",), prompts=str(tmp_path / "p.txt")))


@pytest.fixture(scope="module")
def inception_weights(tmp_path_factory):
    path = tmp_path_factory.mktemp("w") / "inception.pth"
    torch.save(random_inception(informative=True).state_dict(), path)
    return path


@pytest.mark.slow          # ~40 s on a 2-core CPU: 32 Inception passes at 299 x 299
def test_folders_equal_torch_fidelity_with_inception_v3_compat(tmp_path, capsys, inception_weights):
    """The real network (random local weights, informative init): `bench score` defaults to inception-v3-compat."""
    gen, ref = folder(tmp_path / "gen", images(8, 0, 7)), folder(tmp_path / "ref", images(8, 60, 8))
    code, out, errs = run_cli(capsys, str(gen), "--ref", str(ref), "--batch-size", "8",
                              "-o", f"fid_is_kid.feature_extractor_weights_path={inception_weights}",
                              "-o", "fid_is_kid.kid_subset_size=8", "-o", "fid_is_kid.isc_splits=2",
                              "-o", "fid_is_kid.batch_size=8")
    assert code == 0, errs
    tf = tf_metrics(gen, ref, feature_extractor="inception-v3-compat",
                    feature_extractor_weights_path=str(inception_weights), kid_subset_size=8, isc_splits=2,
                    batch_size=8)
    for ours, theirs in KEYS.items():
        assert out["values"][ours] == pytest.approx(tf[theirs], rel=1e-6, abs=1e-9), ours
    assert out["values"]["fid"] > 1e-3
