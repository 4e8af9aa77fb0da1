"""Smoke runs (`bench run SUITE --limit N`): every cell capped at its first N samples, the cap part of the cell key
(cells without it keep their keys and stored config exactly), a `limit` column in the tidy frame, reports that rank
smoke cells apart under a "smoke run (N samples)" marker; and end to end, the paper suite on a machine laid out as
the README says (a fake data tree, tiny random weights in $STEPBENCH_WEIGHTS and the Hugging Face cache): the
pre-flight passes and `--limit 4` runs every cell."""

from __future__ import annotations

import contextlib
import hashlib
import io
import json
from dataclasses import asdict
from pathlib import Path

import pytest
import torch
import yaml

import bench
from bench.cell import KEY_SCHEMA, Cell, ModelSpec, SamplePlan, canonical_json
from bench.cli import main
from tests.test_preflight import PAPER, data_tree, hub_put

ROOT = Path(__file__).resolve().parent.parent


def cli(*args: str) -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        code = main(list(args))
    return code, out.getvalue(), err.getvalue()


def _cell(**kw) -> Cell:
    return Cell(suite="s", model=ModelSpec("m", "toy", None, {"init_seed": 0}), dataset="d", dataset_source="mini-val",
                dataset_options={"size": 10}, steps=2, cfg=1.5, solver="euler", seed=42, plan=SamplePlan(),
                metrics={"fid_is_kid": {}}, batch_size=8, **kw)


def test_a_cell_without_a_limit_keeps_its_config_and_key_and_a_limit_is_keyed():
    c = _cell()
    assert "limit" not in c.config()
    before = {"suite": "s", "model": asdict(c.model), "dataset": "d", "dataset_source": "mini-val",
              "dataset_options": {"size": 10}, "steps": 2, "cfg": 1.5, "solver": "euler", "seed": 42,
              "plan": asdict(SamplePlan()), "metrics": {"fid_is_kid": {}}, "dtype": "float32"}
    assert c.config() == before                        # the config (and so the key) cells had before limits
    kw = dict(adapter_version="v", weights_id="w", dataset_fingerprint="f", metric_versions={"fid_is_kid": "1"})
    payload = {"schema": KEY_SCHEMA, "cell": before, "adapter_version": "v", "weights": "w", "dataset_fingerprint": "f",
               "metric_versions": {"fid_is_kid": "1"}}
    assert c.key(**kw) == hashlib.sha256(canonical_json(payload).encode()).hexdigest()
    smoke = _cell(limit=4)
    assert smoke.config() == {**before, "limit": 4} and smoke.key(**kw) != c.key(**kw)
    assert _cell(limit=4).key(**kw) == smoke.key(**kw) != _cell(limit=5).key(**kw)


def test_limit_caps_every_cell_is_stored_apart_and_reports_mark_it(tmp_path, toy_suite_text):
    suite = tmp_path / "toy.yaml"
    suite.write_text(toy_suite_text(n=2))             # per_class 2 x 10 classes = 20 samples per cell, 4 cells
    db = str(tmp_path / "b.duckdb")
    code, out, err = cli("run", str(suite), "--db", db, "-q", "--limit", "3")
    assert code == 0 and "(smoke run: at most 3 samples per cell)" in out, err
    smoke = bench.load(db)
    assert list(smoke["n"]) == [3] * 4 and list(smoke["limit"]) == [3] * 4
    code, out, _ = cli("run", str(suite), "--db", db, "-q")            # the full cells: new keys, nothing skipped
    assert code == 0 and "4 ran, 0 already stored" in out
    code, out, _ = cli("run", str(suite), "--db", db, "-q", "--limit", "3")   # the smoke cells: stored already
    assert code == 0 and "0 ran, 4 already stored" in out
    df = bench.load(db)                                 # a smoke cell never supersedes a full one, nor the reverse
    assert len(df) == 8 and sorted(df["n"]) == [3] * 4 + [20] * 4
    assert df["limit"].isna().sum() == 4 and (df.loc[df["limit"].notna(), "n"] == 3).all()
    full = df[df["limit"].isna()].set_index(["steps", "cfg"])["fid"]
    few = df[df["limit"].notna()].set_index(["steps", "cfg"])["fid"]
    assert not full.equals(few)
    code, _, err = cli("report", "--db", db, "--suite", "toy", "--out", str(tmp_path / "rep"))
    assert code == 0, err
    md = (tmp_path / "rep" / "toy" / "leaderboard.md").read_text()
    assert "## mini-val\n" in md and "## mini-val — smoke run (3 samples)" in md
    assert md.index("## mini-val\n") < md.index("smoke run (3 samples)")          # full cells first
    page = (tmp_path / "rep" / "toy" / "index.html").read_text()
    assert "smoke run (3 samples)</span></h3>" in page and "4 smoke-run cell(s)" in page


def test_a_limit_larger_than_the_plan_is_the_plan(tmp_path, toy_suite_text):
    suite = tmp_path / "toy.yaml"
    suite.write_text(toy_suite_text(n=1, steps="[1]", cfg="[1.0]"))
    db = str(tmp_path / "b.duckdb")
    assert cli("run", str(suite), "--db", db, "-q", "--limit", "1000")[0] == 0
    assert list(bench.load(db)["n"]) == [10]


def test_limit_must_be_a_whole_number(tmp_path, toy_suite_text, capsys):
    suite = tmp_path / "toy.yaml"
    suite.write_text(toy_suite_text())
    with pytest.raises(SystemExit) as e:
        main(["run", str(suite), "--db", str(tmp_path / "b.duckdb"), "--limit", "0"])
    assert e.value.code == 2 and "expected a whole number >= 1" in capsys.readouterr().err


# -- the paper suite end to end, on tiny random weights laid out as the README says --------------------------------
def _paper_machine(root: Path) -> tuple[dict, dict[str, dict]]:
    """$STEPBENCH_DATA, $STEPBENCH_WEIGHTS and a Hugging Face cache holding every system of suites/paper.yaml as a
    tiny random network (the adapter tests' builders), at the paths and hub ids the suite names. Returns the
    environment and the options each model needs beyond the suite's (only the network sizes, which the
    full-size defaults would otherwise give)."""
    from safetensors.torch import save_file

    from tests import test_diffusers_adapter as tdiff
    from tests import test_meanflow_imf_soflow as tmf
    from tests import test_rae as trae
    from tests import test_scale_rae as tsr
    from tests.test_sit import _tiny_vae, tiny_net
    from tests.tiny_models import save_tiny_clip

    hf, w = root / "hf", root / "weights"
    (w / "sit").mkdir(parents=True)
    # SiT at a standard width (384: 6 heads), so the suite's options need nothing added
    torch.save({"ema": tiny_net(hidden_size=384, num_heads=6, depth=1).state_dict()}, w / "sit" / "SiT-XL-2-256.pt")
    mf = tmf._tiny_net("meanflow")
    (w / "meanflow").mkdir()
    save_file({k: v.contiguous() for k, v in mf.state_dict().items()}, str(w / "meanflow" / "mf-b4.safetensors"),
              metadata={"arch": json.dumps(asdict(mf.config))})        # as `bench convert meanflow` records it
    (w / "imf").mkdir()
    torch.save(tmf._tiny_net("imf").state_dict(), w / "imf" / "iMF-XL-2.pth")
    (w / "soflow").mkdir()
    torch.save({"ema_model": tmf._tiny_net("soflow").state_dict()}, w / "soflow" / "XL-2-cond.pt")
    _tiny_vae(root / "vae")
    hub_put(hf, "stabilityai/sd-vae-ft-mse", root / "vae")
    trae._save_layout(root / "rae", trae._nets())
    hub_put(hf, "nyu-visionx/RAE-collections", root / "rae")
    sr = tsr._save(root / "scale-rae", tsr._parts())
    snap = hub_put(hf, "nyu-visionx/Scale-RAE-Qwen1.5B_DiT2.4B", root / "scale-rae")
    hub_put(hf, "nyu-visionx/siglip2_decoder",
            {"siglip2_sop14_i224_web73M_ganw3_decXL.pt": (root / "scale-rae" / "decoder.pt").read_bytes()})
    hub_put(hf, "stabilityai/stable-diffusion-3.5-large", tdiff.build_sd3(root / "sd3"))
    hub_put(hf, "black-forest-labs/FLUX.1-dev", tdiff.build_flux(root / "flux"))
    (root / "clip").mkdir()
    clip = save_tiny_clip(root / "clip")
    for repo in ("openai/clip-vit-base-patch16", "yuvalkirstain/PickScore_v1", "laion/CLIP-ViT-H-14-laion2B-s32B-b79K"):
        hub_put(hf, repo, clip)
    env = {"STEPBENCH_DATA": str(data_tree(root / "data", per_class=3)), "STEPBENCH_WEIGHTS": str(w),
           "HF_HUB_OFFLINE": "1", "TORCH_HOME": str(root / "torch")}
    small = {"imf-xl2": {"arch": tmf.TINY_IMF}, "soflow-xl2": {"arch": tmf.TINY_DIT},
             "rae-ditdh-xl": {"stage2_arch": trae.S2, "decoder_arch": trae.DEC},
             "scale-rae": {"tokenizer": str(snap / "tok"), "head_arch": sr["head_arch"],
                           "decoder_arch": sr["decoder_arch"], "dtype": "float32"},
             "sd3.5-large": {"resolution": 32, "dtype": "float32"},
             "flux.1-dev": {"resolution": 32, "dtype": "float32"}}
    return env, small


def test_the_paper_suite_on_a_readme_layout_passes_the_preflight_and_limit_4_runs_every_cell(tmp_path,
                                                                                               monkeypatch):
    """The paper's grid, datasets, weights paths and hub ids as shipped; the suite only gains the tiny networks'
    sizes and a cheap FID extractor (the random-Inception path is the pre-flight test's). Each dataset has 6
    images, so --limit 4 caps every cell."""
    pytest.importorskip("diffusers")
    import huggingface_hub.constants as hc
    env, small = _paper_machine(tmp_path)
    for k, v in env.items():
        monkeypatch.setenv(k, v)
    monkeypatch.setattr(hc, "HF_HUB_CACHE", str(tmp_path / "hf"))
    doc = yaml.safe_load(PAPER.read_text())
    for m in doc["models"]:
        m["options"] = {**(m.get("options") or {}), **small.get(m["id"], {})}
    doc["metrics"]["fid_is_kid"] = {"feature_extractor": "toy-extractor", "batch_size": 4}
    doc["timing"] = {"warmup": 0, "repeats": 1, "throughput": "bulk"}
    suite = tmp_path / "paper-tiny.yaml"
    suite.write_text(yaml.safe_dump(doc, sort_keys=False))
    code, out, err = cli("validate", str(suite), "--max-rows", "2")
    assert code == 0 and "96 cells" in out, err                     # the pre-flight passes: nothing missing
    db = str(tmp_path / "b.duckdb")
    code, out, err = cli("run", str(suite), "--db", db, "-q", "--limit", "4")
    assert code == 0, err
    assert "96 cells planned, 96 ran, 0 already stored, 0 failed" in out
    df = bench.load(db)
    assert len(df) == 96 and (df["status"] == "ok").all() and (df["n"] == 4).all() and (df["limit"] == 4).all()
    assert set(df["model"]) == {m["id"] for m in doc["models"]}
    assert set(df["dataset"]) == {"imagenet-val", "imagenet-v2", "relaionet"}
    assert (df["nfe"] == df["nfe_declared"]).all()
