"""The diffusers adapter's composition options (lora, components, timesteps / sigmas, trained_steps, the class
condition) validated without any pipeline: typed and strict, idempotent, absent from the validated dict (so from
cell keys) at their defaults, step counts checked before loading, and LoRA / component files in the weights identity
and the pre-flight."""

from __future__ import annotations

import pytest

from bench.models.base import ModelSpec, SamplerSettings
from bench.models.diffusers_options import DiffusersError, DiffusersOptions
from bench.models.diffusers_presets import Guidance
from bench.options import OptionsError, validated

# the option names of the previous release: a default-valued new option must not enter a cell key
PREVIOUS_KEYS = {"attention_backend", "call_kwargs", "check_nfe", "cpu_offload", "denoiser", "dtype", "eval_size",
                 "guidance", "load_kwargs", "negative_prompt", "pipeline", "prompt", "resize", "resolution",
                 "scheduler", "scheduler_config", "true_cfg_scale", "vae_slicing", "vae_tiling"}

FULL = {"lora": [{"weights": "org/lora", "weight_name": "a.safetensors", "scale": 0.8},
                 {"weights": "/x/b.safetensors", "adapter_name": "b", "fuse": True}],
        "components": {"unet": {"class": "UNet2DConditionModel", "weights": "org/unet",
                                "file": "unet.safetensors"}},
        "timesteps": {1: [399], 4: [999, 749, 499, 249]}, "trained_steps": [1, 4],
        "guidance": {"kind": "none", "condition": "class"}}


def test_defaults_keep_the_previous_validated_dict():
    assert set(validated(DiffusersOptions, {})) == PREVIOUS_KEYS
    g = validated(DiffusersOptions, {"guidance": {"kind": "true_cfg"}})["guidance"]
    assert "condition" not in g and Guidance.model_validate(g).condition == "prompt"


def test_set_options_are_kept_and_validation_is_idempotent():
    d = validated(DiffusersOptions, FULL)
    assert d["timesteps"] == {1: [399], 4: [999, 749, 499, 249]} and d["trained_steps"] == [1, 4]
    assert d["components"]["unet"]["class"] == "UNet2DConditionModel" and d["guidance"]["condition"] == "class"
    assert [x["adapter_name"] for x in d["lora"]] == [None, "b"] and d["lora"][1]["fuse"] is True
    assert validated(DiffusersOptions, d) == d
    # a stored (JSON) config has string step keys: read back, it is the same options
    stored = {**d, "timesteps": {str(k): v for k, v in d["timesteps"].items()}}
    assert validated(DiffusersOptions, stored) == d


@pytest.mark.parametrize("bad, where", [
    ({"timesteps": {2: [999]}}, "timesteps"),
    ({"timesteps": {1: [399]}, "sigmas": {1: [1.0]}}, "timesteps and sigmas"),
    ({"sigmas": {2: [1.0, -0.5]}}, "sigmas"),
    ({"components": {"unet": {"class": "UNet2DConditionModel", "weights": "o/u", "file": "u.bin"}}},
     "safetensors only"),
    ({"components": {"unet": {"weights": "o/u"}}}, "components.unet.class"),
    ({"lora": [{"weights": "a/b"}, {"weights": "c/d", "adapter_name": "lora0"}]}, "lora0"),
    ({"lora": [{"weights": "a/b", "scael": 1.0}]}, "scale"),
    ({"call_kwargs": {"timesteps": [1]}}, "timesteps"),
    ({"guidance": {"kind": "none", "condition": "label"}}, "condition"),
])
def test_bad_composition_options_name_the_key(bad, where):
    with pytest.raises(OptionsError) as e:
        validated(DiffusersOptions, bad)
    assert where in str(e.value)


def test_step_counts_are_checked_before_loading():
    """bench validate declares the NFE with the options only: a step count without its schedule, or one the weights
    were not distilled for, is refused there, naming the option."""
    from bench.models.diffusers_pipe import DiffusersPipeline

    gen = DiffusersPipeline()
    opts = {"pipeline": "StableDiffusionXLPipeline", "timesteps": {4: [999, 749, 499, 249]}}
    assert gen.nfe_per_image(SamplerSettings(steps=4, cfg=0.0, options=opts)) == 4
    with pytest.raises(DiffusersError, match=r"no schedule for 2 steps \(given for \[4\]\)"):
        gen.nfe_per_image(SamplerSettings(steps=2, cfg=0.0, options=opts))
    opts = {"pipeline": "StableDiffusionXLPipeline", "trained_steps": [4]}
    with pytest.raises(DiffusersError, match="trained_steps"):
        gen.nfe_per_image(SamplerSettings(steps=8, cfg=0.0, options=opts))
    # the class-conditional table entries: DiT doubles with CFG, consistency models have none
    assert gen.nfe_per_image(SamplerSettings(steps=3, cfg=4.0, options={"pipeline": "DiTPipeline"})) == 6
    assert gen.nfe_per_image(SamplerSettings(steps=2, cfg=4.0, options={"pipeline": "ConsistencyModelPipeline"})) == 2


def test_lora_and_component_files_enter_the_weights_identity(tmp_path):
    from bench.models.diffusers_pipe import DiffusersPipeline

    base = tmp_path / "pipe"
    base.mkdir()
    (base / "model_index.json").write_text("{}")
    lora = tmp_path / "l.safetensors"
    lora.write_bytes(b"one")
    gen = DiffusersPipeline()

    def wid(**opts):
        return gen.weights_id(ModelSpec("m", "diffusers", str(base), opts))

    plain = wid()
    with_lora = wid(lora=[{"weights": str(lora)}])
    lora.write_bytes(b"two")
    assert len({plain, with_lora, wid(lora=[{"weights": str(lora)}])}) == 3      # the file's content counts
    assert wid(lora=[{"weights": str(lora)}]) == wid(lora=[{"weights": str(lora), "scale": 0.5}])  # options: key
    comp = wid(components={"unet": {"class": "UNet2DConditionModel", "weights": "org/unet", "file": "u.safetensors"}})
    pinned = wid(components={"unet": {"class": "UNet2DConditionModel", "weights": "org/unet", "file": "u.safetensors",
                                      "revision": "abc"}})
    assert len({plain, comp, pinned}) == 3


def test_preflight_names_the_lora_and_component_files(tmp_path, monkeypatch):
    """Offline, with nothing cached: the pre-flight lists the base pipeline, each LoRA file, each component file
    and peft, each under its option name."""
    from bench.models.diffusers_pipe import DiffusersPipeline

    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf"))
    spec = ModelSpec("m", "diffusers", "org/base", {
        "lora": [{"weights": "org/lora", "weight_name": "x.safetensors"}],
        "components": {"unet": {"class": "UNet2DConditionModel", "weights": "org/unet", "file": "u.safetensors"}}})
    reqs = DiffusersPipeline().requirements(spec)
    whats = [r.what for r in reqs]
    assert whats[:3] == ["diffusers pipeline", "LoRA options.lora[0]",
                         "component options.components.unet (UNet2DConditionModel)"]
    assert "peft (LoRA loading)" in whats
    missing = [r.check().missing for r in reqs[:3]]
    assert all(missing) and "x.safetensors" in missing[1] and "u.safetensors" in missing[2]
