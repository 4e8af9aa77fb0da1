"""FID family extras: torchmetrics agreement, batch-size and shard invariance, precision/recall, the FID bootstrap,
and the reference-statistics cache (content keys, stale entries never used, `bench cache ls/clear`)."""

import os

import pytest
import torch

from bench.cli import main
from bench.data.mini import MiniDataset
from bench.metrics.base import MetricError
from bench.metrics.clip_score import ClipScore
from bench.metrics.fid_is_kid import FidIsKid
from bench.metrics.refcache import RefCache, parse_age
from bench.mini import data

CPU = torch.device("cpu")
TOY = {"feature_extractor": "toy-extractor", "kid_subset_size": 40, "kid_subsets": 10, "batch_size": 16}


def _gen(n=90, stream="ood"):
    imgs, labels = data.batch(stream, 0, n)
    return torch.from_numpy(imgs), torch.from_numpy(labels)


def _feed(acc, images, labels, step, ids=None):
    ids = torch.arange(len(images)) if ids is None else ids
    for s in range(0, len(images), step):
        acc.update(images[s:s + step], labels[s:s + step], [""] * len(images[s:s + step]), ids[s:s + step])
    return acc


def test_fid_equals_torchmetrics_with_the_same_extractor(tmp_path):
    from torchmetrics.image.fid import FrechetInceptionDistance

    ref = MiniDataset("mini-val", 100)
    images, labels = _gen()
    m = FidIsKid(TOY, CPU, tmp_path)
    ours = _feed(m.accumulator(ref), images, labels, 30).result()

    class Feat(torch.nn.Module):          # torchmetrics' custom-extractor path: same network, features only
        def __init__(self, ext):
            super().__init__()
            self.ext = ext

        def forward(self, x):
            return self.ext(x)[0]

    tm = FrechetInceptionDistance(feature=Feat(m.extractor), input_img_size=(3, 16, 16))
    tm.update(torch.cat([x for x, _ in ref.reference_batches(64)]).permute(0, 3, 1, 2), real=True)
    tm.update(images.permute(0, 3, 1, 2), real=False)
    assert ours["fid"] == pytest.approx(float(tm.compute()), rel=1e-5)
    assert ours["fid"] > 0.01


def test_results_identical_for_batch_sizes_1_8_64_and_merged_shards(tmp_path):
    ref = MiniDataset("mini-val", 60)
    images, labels = _gen(48)
    prompts = [data.prompt(int(y)) for y in labels]
    fid = FidIsKid({**TOY, "bootstrap": 5}, CPU, tmp_path)
    clip = ClipScore({"backend": "mini", "model": "clip", "batch_size": 16, "bootstrap": 50}, CPU, tmp_path)
    for m in (fid, clip):
        results = []
        for step in (1, 8, 64):
            results.append(_feed_prompts(m.accumulator(ref), images, labels, prompts, step, torch.arange(48)).result())
        perm = torch.randperm(48, generator=torch.Generator().manual_seed(1))   # shards in any order
        shards = [_feed_prompts(m.accumulator(ref), images[idx], labels[idx], [prompts[i] for i in idx], 9, idx)
                  for idx in perm.split(17)]
        merged = shards[0].merge(shards[1]).merge(shards[2])
        results.append(merged.result())
        assert all(r == results[0] for r in results[1:]), f"{m.name}: results differ across batch sizes/shards"


def _feed_prompts(acc, images, labels, prompts, step, ids):
    for s in range(0, len(images), step):
        acc.update(images[s:s + step], labels[s:s + step], prompts[s:s + step], ids[s:s + step])
    return acc


def test_precision_recall_and_seeded_fid_bootstrap(tmp_path):
    ref = MiniDataset("mini-val", 60)
    images, labels = _gen(50)
    m = FidIsKid({**TOY, "bootstrap": 20, "bootstrap_seed": 3}, CPU, tmp_path)
    a = _feed(m.accumulator(ref), images, labels, 50).result()
    assert 0 <= a["precision"] <= 1 and 0 <= a["recall"] <= 1
    assert a["fid_ci_low"] < a["fid_ci_high"] and a["fid_ci_low"] < a["fid"] * 1.5
    b = _feed(FidIsKid({**TOY, "bootstrap": 20, "bootstrap_seed": 3}, CPU, tmp_path).accumulator(ref),
              images, labels, 7).result()
    assert a == b
    c = _feed(FidIsKid({**TOY, "bootstrap": 20, "bootstrap_seed": 4}, CPU, tmp_path).accumulator(ref),
              images, labels, 50).result()
    assert c["fid_ci_low"] != a["fid_ci_low"] and c["fid"] == a["fid"]
    off = _feed(FidIsKid({**TOY, "prc": False}, CPU, tmp_path).accumulator(ref), images, labels, 50).result()
    assert "precision" not in off and "fid_ci_low" not in off
    d = m.describe()
    assert d["implementation"].startswith("torch-fidelity") and d["prc_neighborhood"] == 3 and d["bootstrap"] == 20


def test_second_evaluation_does_no_reference_pass_and_stale_entries_are_never_used(tmp_path, monkeypatch):
    ref = MiniDataset("mini-val", 40)
    images, labels = _gen(30)
    first = FidIsKid(TOY, CPU, tmp_path)
    want = _feed(first.accumulator(ref), images, labels, 30).result()
    assert first.cache.computed == 1
    entries = RefCache(tmp_path).entries()
    assert len(entries) == 1 and entries[0].material["dataset"] == ref.fingerprint()
    assert not list((tmp_path / "refstats").glob(".*.tmp")), "atomic write leaves no temporary file"

    second = FidIsKid(TOY, CPU, tmp_path)          # a new run: only the generated images go through the network
    seen = []
    orig = second.features
    monkeypatch.setattr(second, "features", lambda x: seen.append(len(x)) or orig(x))
    monkeypatch.setattr(MiniDataset, "reference_batches", lambda *a: pytest.fail("recomputed reference features"))
    assert _feed(second.accumulator(ref), images, labels, 30).result() == want
    assert second.cache.computed == 0 and sum(seen) == 30
    monkeypatch.undo()

    # an entry whose stored material differs from its key's (stale, foreign or damaged) is recomputed, not used
    path = entries[0].path
    cache = RefCache(tmp_path)
    material = first.reference_material(ref)
    cache.save({**material, "weights": "something-else"}, {"features": torch.zeros(40, 16)})
    os.replace(cache.path({**material, "weights": "something-else"}), path)
    third = FidIsKid(TOY, CPU, tmp_path)
    assert _feed(third.accumulator(ref), images, labels, 30).result() == want and third.cache.computed == 1
    path.write_bytes(b"not a safetensors file")
    fourth = FidIsKid(TOY, CPU, tmp_path)
    assert _feed(fourth.accumulator(ref), images, labels, 30).result() == want and fourth.cache.computed == 1

    # library versions are part of the key
    monkeypatch.setattr("bench.metrics.fid_is_kid.library_versions", lambda *a: {"torch-fidelity": "0.0-other"})
    fifth = FidIsKid(TOY, CPU, tmp_path)
    fifth.reference_features(ref)
    assert fifth.cache.computed == 1 and len(RefCache(tmp_path).entries()) == 2


def test_bench_cache_ls_and_clear(tmp_path, capsys):
    FidIsKid(TOY, CPU, tmp_path / "cache").reference_features(MiniDataset("mini-val", 20))
    FidIsKid(TOY, CPU, tmp_path / "cache").reference_features(MiniDataset("mini-v2", 20))
    db = str(tmp_path / "bench.duckdb")
    assert main(["cache", "ls", "--db", db]) == 0
    out = capsys.readouterr().out
    assert "2 entries" in out and "toy-extractor" in out
    assert main(["cache", "clear", "--db", db, "--older-than", "1d"]) == 0
    assert len(RefCache(tmp_path / "cache").entries()) == 2
    assert main(["cache", "clear", "--db", db, "--older-than", "bogus"]) == 2
    assert "--older-than 'bogus'" in capsys.readouterr().err
    assert main(["cache", "clear", "--cache-dir", str(tmp_path / "cache"), "--all"]) == 0
    assert RefCache(tmp_path / "cache").entries() == []
    assert parse_age("12h") == 43200 and parse_age("2") == 2 * 86400


def test_inception_weights_from_env_and_clear_error_when_missing(tmp_path, monkeypatch):
    monkeypatch.setenv("STEPBENCH_INCEPTION_WEIGHTS", str(tmp_path / "nope.pth"))
    with pytest.raises(MetricError, match="nope.pth"):
        FidIsKid({}, CPU, tmp_path).weights_id()
    f = tmp_path / "w.pth"
    torch.save({"x": torch.zeros(1)}, f)
    monkeypatch.setenv("STEPBENCH_INCEPTION_WEIGHTS", str(f))
    assert FidIsKid({}, CPU, tmp_path).weights()[0] == f
    monkeypatch.delenv("STEPBENCH_INCEPTION_WEIGHTS")
    monkeypatch.setattr(torch.hub, "get_dir", lambda: str(tmp_path / "hub"))
    m = FidIsKid({}, CPU, tmp_path)
    assert m.weights() == (None, "torch-fidelity:weights-inception-2015-12-05-6726825d.pth")
    monkeypatch.setattr("torch_fidelity.feature_extractor_inceptionv3.load_state_dict_from_url",
                        lambda *a, **k: (_ for _ in ()).throw(OSError("offline")))
    with pytest.raises(MetricError, match=r"put torch-fidelity's file at .*hub/checkpoints/weights-inception"):
        m.extractor
