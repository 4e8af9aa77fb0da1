"""The few-step presets (bench/models/fewstep_presets.py), their adapters and the two few-step suites, with no
weights: every preset's options validate to themselves; the NFE each adapter declares before loading is what the
preset's note says, at a cfg below and above 1; timestep lists have one entry per step; both suites validate and
their pre-flight names exactly the missing base pipelines, LoRA files and UNet files.

Not here (it needs a loaded pipeline whose denoiser is counted): a wrong but well-formed guidance declaration failing
its cell on the NFE check -- the tiny-pipeline tests (tests/test_diffusers_fewstep.py) cover it. Here: a malformed
declaration is refused at validation.
"""

from __future__ import annotations

import pickle
import re
from pathlib import Path

import pytest

from bench import registry
from bench.models.base import ModelSpec, SamplerSettings
from bench.models.diffusers_preset_adapters import ADAPTERS, class_name
from bench.models.diffusers_presets import GUIDANCE, PRESETS
from bench.models.fewstep_presets import FEW_STEP_PRESETS, NFE_CFG, NFE_ONE, PRESET_NOTES
from bench.options import OptionsError, validated
from bench.suite import Suite
from tests.test_preflight import cli, machine  # noqa: F401  (machine: an empty, offline machine)

ROOT = Path(__file__).resolve().parent.parent
T2I, CLASS = ROOT / "suites" / "few-step-t2i.yaml", ROOT / "suites" / "few-step-class.yaml"
METRIC_REPOS = {"openai/clip-vit-base-patch16", "yuvalkirstain/PickScore_v1", "laion/CLIP-ViT-H-14-laion2B-s32B-b79K"}


def steps_of(preset: str) -> int:
    """A step count the preset accepts (its trained steps, else its timestep lists, else 4)."""
    p = FEW_STEP_PRESETS[preset]
    return (p.get("trained_steps") or sorted(p.get("timesteps") or {}) or [4])[0]


def nfe(preset: str, cfg: float, **options) -> float:
    cls = ADAPTERS[preset]
    s = SamplerSettings(steps=steps_of(preset), cfg=cfg, options=cls.validate_options(options))
    return cls().nfe_per_image(s)


def test_every_preset_is_registered_documented_and_merged():
    assert set(FEW_STEP_PRESETS) == set(PRESET_NOTES) and len(FEW_STEP_PRESETS) == 30
    for name, preset in FEW_STEP_PRESETS.items():
        assert PRESETS[name] == preset, name                        # merged by diffusers_presets
        assert registry.resolve("model adapter", name) is ADAPTERS[name], name
        note = PRESET_NOTES[name]
        assert note["nfe"] in (NFE_CFG, NFE_ONE) and note["cfg"] and note["source"], name
        cls = ADAPTERS[name]
        assert cls.__name__ == class_name(name) and cls.preset == name and note["cfg"] in cls.guidance
        assert pickle.loads(pickle.dumps(cls)) is cls and pickle.loads(pickle.dumps(cls.Options)) is cls.Options
    assert class_name("sdxl-lightning-lora-4step") == "SdxlLightningLora4step"
    assert class_name("flux.1-schnell") == "Flux1Schnell" and class_name("sd3.5-large-turbo") == "Sd35LargeTurbo"
    # the bare name is the 4-step UNet; the paper's teachers keep their own presets
    assert FEW_STEP_PRESETS["sdxl-lightning"] == FEW_STEP_PRESETS["sdxl-lightning-4step"]
    assert {"sd3.5-large", "flux.1-dev"} <= set(PRESETS) and not {"sd3.5-large", "flux.1-dev"} & set(FEW_STEP_PRESETS)


@pytest.mark.parametrize("name", sorted(FEW_STEP_PRESETS))
def test_preset_options_validate_to_themselves_and_keep_the_card_settings(name):
    cls, preset = ADAPTERS[name], FEW_STEP_PRESETS[name]
    d = cls.validate_options({})
    assert validated(cls.Options, d) == d                                     # idempotent: one cell key
    assert validated(cls.Options, {k: v for k, v in preset.items() if k != "weights"}) == d   # spelt out: same
    assert cls()._weights_ref(ModelSpec("m", name)) == preset["weights"]
    for key in ("pipeline", "dtype", "scheduler", "scheduler_config", "call_kwargs", "trained_steps", "eval_size"):
        if key in preset:
            assert d[key] == preset[key], key
    if "resolution" in preset:
        assert d["resolution"] == [preset["resolution"]] * 2
    if "timesteps" in preset:
        assert d["timesteps"] == preset["timesteps"]
    for i, lora in enumerate(preset.get("lora", [])):
        assert {k: d["lora"][i][k] for k in lora} == lora
    for comp, spec in preset.get("components", {}).items():
        assert {k: d["components"][comp][k] for k in spec} == spec
    assert "prompt" not in preset or "{class_name}" in d["prompt"]


@pytest.mark.parametrize("name", sorted(FEW_STEP_PRESETS))
def test_nfe_declared_before_loading_is_the_notes(name):
    """An unloaded adapter (`bench validate`) declares steps x (2 when the note says true CFG and cfg > 1)."""
    steps, note = steps_of(name), PRESET_NOTES[name]["nfe"]
    for cfg in (0.0, 4.5):
        per_step = 2 if (note == NFE_CFG and cfg > 1) else 1
        assert nfe(name, cfg) == steps * per_step, (name, cfg)
    preset = FEW_STEP_PRESETS[name]
    kind = (preset.get("guidance") or GUIDANCE[preset["pipeline"]].as_dict())["kind"]
    assert (note == NFE_CFG) == (kind == "true_cfg"), name
    assert ADAPTERS[name].cfg_ignored == (kind == "none"), name


def test_the_guidance_the_cards_use():
    # LCM's full UNet takes w as an input: 1 NFE even at its card's 8.0; its LoRA leaves true CFG (docs: 1.0)
    assert (nfe("lcm-sdxl", 8.0), nfe("lcm-lora-sdxl", 1.0), nfe("lcm-lora-sdxl", 2.0)) == (4, 4, 8)
    assert nfe("flux.1-schnell", 3.5) == 1 and nfe("sana-sprint", 4.5) == 1 and nfe("sana-sprint-2step", 4.5) == 2
    assert nfe("dit-xl-2-256", 1.0) == 4 and nfe("dit-xl-2-256", 1.5) == 8
    assert nfe("cd-imagenet64-l2", 7.0) == 1 and nfe("sdxl-lightning-8step", 0.0) == 8
    # a declaration given by suite options replaces the preset's (the NFE check then holds the run to it)
    assert nfe("lcm-sdxl", 8.0, guidance={"kind": "true_cfg"}) == 8
    with pytest.raises(OptionsError, match="guidance"):
        ADAPTERS["lcm-sdxl"].validate_options({"guidance": {"kind": "embeded"}})
    with pytest.raises(OptionsError, match="guidance"):
        ADAPTERS["sdxl-turbo"].validate_options({"guidance": {"kwarg": "guidance_scale", "scale": 2}})


def test_the_settings_the_cards_prescribe():
    def opt(name):
        return ADAPTERS[name].validate_options({})
    assert opt("sdxl-turbo")["resolution"] == opt("sd-turbo")["resolution"] == [512, 512]
    for name in ("sdxl-turbo", "sd-turbo", "sdxl-lightning-4step", "sdxl-lightning-lora-8step",
                 "hyper-sdxl-lora-2step"):
        assert opt(name)["scheduler_config"]["timestep_spacing"] == "trailing", name
    one = opt("sdxl-lightning-1step")            # the 1-step Lightning UNet predicts x0
    assert one["scheduler_config"]["prediction_type"] == "sample"
    assert one["components"]["unet"]["file"] == "sdxl_lightning_1step_unet_x0.safetensors"
    assert opt("flux.1-schnell")["call_kwargs"] == {"max_sequence_length": 256}
    assert opt("tcd-sdxl")["call_kwargs"] == {"eta": 0.3}
    assert opt("hyper-sdxl-lora-1step")["call_kwargs"] == {"eta": 1.0}
    assert opt("sana-sprint")["call_kwargs"] == {"intermediate_timesteps": None}
    assert opt("dit-xl-2-256")["load_kwargs"] == {"revision": "refs/pr/1"}          # the safetensors PR
    assert all(opt(n)["eval_size"] == 64 for n in ("cd-imagenet64-l2", "cd-imagenet64-lpips", "ct-imagenet64"))
    assert {opt(n)["dtype"] for n in ("flux.1-schnell", "sd3.5-large-turbo", "sana-sprint")} == {"bfloat16"}


def test_timestep_lists_have_one_entry_per_step_and_follow_the_references():
    expected = {"dmd2-sdxl-4step": {4: [999, 749, 499, 249]}, "dmd2-sdxl-lora-4step": {4: [999, 749, 499, 249]},
                "dmd2-sdxl-1step": {1: [399]}, "hyper-sdxl-1step": {1: [800]},
                "cd-imagenet64-l2": {1: [0], 2: [22, 0]}, "cd-imagenet64-lpips": {1: [0], 2: [22, 0]},
                "ct-imagenet64": {1: [0], 2: [106, 0]}}
    assert {n: p["timesteps"] for n, p in FEW_STEP_PRESETS.items() if "timesteps" in p} == expected
    for name, table in expected.items():
        for steps, ts in table.items():
            assert len(ts) == steps and ts == sorted(ts, reverse=True) and len(set(ts)) == steps, name
        assert set(FEW_STEP_PRESETS[name].get("trained_steps") or table) <= set(table), name
    with pytest.raises(OptionsError, match="timesteps"):       # a list of the wrong length is refused
        ADAPTERS["dmd2-sdxl-4step"].validate_options({"timesteps": {4: [999, 499]}})
    # the consistency models' grids: 40 points for CD, 201 for CT (every index below the grid's size)
    assert max(expected["cd-imagenet64-l2"][2]) < 40 and max(expected["ct-imagenet64"][2]) < 201


@pytest.mark.parametrize("adapter, steps, option", [("dmd2-sdxl-4step", 2, "trained_steps"),
                                                    ("sdxl-lightning-lora-4step", 8, "trained_steps"),
                                                    ("cd-imagenet64-lpips", 3, "timesteps")])
def test_a_step_count_the_weights_do_not_take_is_refused(adapter, steps, option, tmp_path):
    suite = tmp_path / "s.yaml"
    suite.write_text(f"suite: s\ndatasets: [imagenet-val]\nmetrics: {{fid_is_kid: {{}}}}\n"
                     f"models:\n  - {{id: m, adapter: {adapter}, steps: [{steps}], cfg: [0.0]}}\n")
    with pytest.raises(Exception, match=option):
        ADAPTERS[adapter]().nfe_per_image(SamplerSettings(steps=steps, cfg=0.0,
                                                          options=ADAPTERS[adapter].validate_options({})))
    code, _, err = cli("validate", str(suite), "--plan-only")
    assert code == 2 and option in err, err


def _expected_downloads(suite: Path) -> tuple[set[str], set[str]]:
    """From the presets (not the adapter): the hub downloads and $STEPBENCH_WEIGHTS files the suite needs."""
    hub, local = set(), set()
    for m in Suite.load(suite).spec.models:
        p = PRESETS[m.adapter]
        rev = (p.get("load_kwargs") or {}).get("revision")
        hub.add(f"huggingface-cli download {p['weights']}" + (f" --revision {rev}" if rev else ""))
        files = [(x["weights"], x.get("weight_name")) for x in p.get("lora", [])]
        files += [(c["weights"], c.get("file")) for c in p.get("components", {}).values()]
        for repo, file in files:
            if repo.startswith("$"):
                local.add(repo)
            else:
                hub.add(" ".join(["huggingface-cli download", repo, *([file] if file else [])]))
    return hub, local


@pytest.mark.parametrize("suite, cells", [(T2I, 28), (CLASS, 10)])
def test_suites_validate_offline_and_the_preflight_names_every_missing_checkpoint(machine, suite, cells):  # noqa: F811
    code, out, err = cli("validate", str(suite), "--plan-only")
    assert (code, err) == (0, "") and f"{cells} cells" in out, err
    for m in Suite.load(suite).spec.models:                       # what cfg means, for every model
        assert re.search(rf"(guidance|note): {re.escape(m.id)} \({re.escape(m.adapter)}\)", out), m.id
    code, out, err = cli("validate", str(suite))
    assert code == 2 and err.startswith(f"pre-flight: {cells} of {cells} cells lack inputs"), err
    hub, local = _expected_downloads(suite)
    found = set(re.findall(r"`(huggingface-cli download [^`]+)`", err))
    assert hub <= found, sorted(hub - found)
    assert {f.split()[2] for f in found} - {h.split()[2] for h in hub} <= METRIC_REPOS, sorted(found)
    for path in local:                                            # the converted DMD2 1-step UNet
        assert f"$STEPBENCH_WEIGHTS is not set; put it at {path}" in err
    for m in Suite.load(suite).spec.models:
        assert m.id in err, m.id
