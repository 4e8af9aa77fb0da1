"""The diffusers adapter on tiny random SD3, FLUX and PixArt-Sigma pipelines built here (tokenizers included), saved
with save_pretrained and run through suites end to end on CPU: NFE counted == declared with guidance on and off,
per-sample seeding (bit-identical across batch sizes), scheduler override, resize, YAML-only pipelines."""

from __future__ import annotations

import pytest
import torch

diffusers = pytest.importorskip("diffusers")
transformers = pytest.importorskip("transformers")

import bench  # noqa: E402
import bench.hub  # noqa: E402
from bench.models.base import ModelSpec, SamplerSettings  # noqa: E402
from bench.models.diffusers_pipe import DiffusersError, DiffusersPipeline, Flux1Dev, SD35Large  # noqa: E402
from bench.options import OptionsError  # noqa: E402
from bench.runner import Runner  # noqa: E402
from bench.suite import Suite  # noqa: E402
from tests.diffusers_tiny import build_flux, build_pixart, build_sd3  # noqa: E402


@pytest.fixture(scope="module")
def pipes(tmp_path_factory):
    root = tmp_path_factory.mktemp("pipes")
    return {"sd3": build_sd3(root / "sd3"), "flux": build_flux(root / "flux"), "pixart": build_pixart(root / "pixart")}


# ---------------------------------------------------------------------------------------------------- suites
SUITE = """
suite: diffusers-tiny
seed: 42
batch_size: 2
samples: {{plan: uniform, n: 2}}
keep_samples: 1
timing: {{enabled: false}}
datasets:
  - id: mini-val
    options: {{size: 20}}
metrics:
  fid_is_kid: {{feature_extractor: toy-extractor, kid_subset_size: 2, kid_subsets: 2, isc_splits: 1, batch_size: 2,
               prc: false}}
models:
{models}
"""


def run_suite(tmp_path, models: str, name="s.yaml"):
    db = tmp_path / (name + ".duckdb")
    summary = Runner(Suite.parse(SUITE.format(models=models), name), db=db, progress=False).run()
    return summary, bench.load(db)


def _failures(summary):
    return "\n".join(summary.failures)


# ---------------------------------------------------------------------------------------------------- tests
def test_sd3_and_flux_presets_end_to_end_nfe_counted_equals_declared(pipes, tmp_path):
    """SD3: guidance_scale is true CFG (2 NFE/step when > 1); FLUX: guidance_scale is embedded (1 NFE/step) and
    true_cfg_scale doubles it. The preset adapters run the tiny pipelines (resolution and prompt length shrunk)."""
    models = f"""
  - id: sd3
    adapter: sd3.5-large
    weights: {pipes['sd3']}
    options: {{resolution: 32, dtype: float32, call_kwargs: {{max_sequence_length: 8}}}}
    steps: [2]
    cfg: [1.0, 3.5]
  - id: flux
    adapter: flux.1-dev
    weights: {pipes['flux']}
    options: {{resolution: 32, dtype: float32, call_kwargs: {{max_sequence_length: 8}}}}
    steps: [1]
    cfg: [1.0, 3.5]
  - id: flux-true-cfg
    adapter: flux.1-dev
    weights: {pipes['flux']}
    options: {{resolution: 32, dtype: float32, true_cfg_scale: 2.0, call_kwargs: {{max_sequence_length: 8}}}}
    steps: [1]
    cfg: [3.5]
"""
    summary, df = run_suite(tmp_path, models)
    assert summary.failed == 0, _failures(summary)
    got = {(r.model, r.cfg): (r.nfe, r.nfe_declared) for r in df.itertuples()}
    assert got == {("sd3", 1.0): (2, 2), ("sd3", 3.5): (4, 4), ("flux", 1.0): (1, 1), ("flux", 3.5): (1, 1),
                   ("flux-true-cfg", 3.5): (2, 2)}
    assert (df["fid"] > 0).all()


def test_wrong_guidance_declaration_is_caught(pipes, tmp_path):
    """Declaring FLUX's guidance_scale as true CFG (or SD3's as embedded) fails the cell with the NFE check."""
    models = f"""
  - id: flux-wrong
    adapter: diffusers
    weights: {pipes['flux']}
    options:
      resolution: 32
      guidance: {{kwarg: guidance_scale, kind: true_cfg}}
      call_kwargs: {{max_sequence_length: 8}}
    steps: [1]
    cfg: [3.5]
  - id: sd3-wrong
    adapter: diffusers
    weights: {pipes['sd3']}
    options: {{guidance: {{kind: embedded}}, call_kwargs: {{max_sequence_length: 8}}}}
    steps: [1]
    cfg: [1.0, 3.5]
"""
    summary, df = run_suite(tmp_path, models)
    status = {(r.model, r.cfg): (r.status, r.error or "") for r in df.itertuples()}
    assert status[("sd3-wrong", 1.0)][0] == "ok"           # 1 NFE either way without guidance
    for key in (("flux-wrong", 3.5), ("sd3-wrong", 3.5)):
        assert status[key][0] == "failed" and "NFE check" in status[key][1], status[key]


def test_pipeline_no_preset_names_runs_by_yaml_alone(pipes, tmp_path):
    """PixArt-Sigma through the generic adapter: class named in YAML, scheduler swapped by name, native 8 px made
    32 px, resized to 48 with LANCZOS, call kwargs passed through; true CFG doubles its NFE."""
    models = f"""
  - id: pixart
    adapter: diffusers
    weights: {pipes['pixart']}
    options:
      pipeline: PixArtSigmaPipeline
      scheduler: EulerDiscreteScheduler
      resolution: 32
      eval_size: 48
      prompt: "a photo of a {{class_name}}"
      call_kwargs: {{use_resolution_binning: false, max_sequence_length: 8}}
    steps: [2]
    cfg: [1.0, 4.5]
"""
    summary, df = run_suite(tmp_path, models)
    assert summary.failed == 0, _failures(summary)
    df = df.sort_values(["steps", "cfg"])
    assert list(df["nfe"]) == [2, 4] and list(df["nfe"]) == list(df["nfe_declared"])
    gen = DiffusersPipeline()
    gen.load(ModelSpec("p", "diffusers", str(pipes["pixart"]), {
        "scheduler": "EulerDiscreteScheduler", "resolution": 32, "eval_size": 48,
        "call_kwargs": {"use_resolution_binning": False, "max_sequence_length": 8}}), torch.device("cpu"))
    assert type(gen.pipe.scheduler).__name__ == "EulerDiscreteScheduler"
    assert gen.describe()["resize"] == "lanczos" and gen.describe()["pipeline"] == "PixArtSigmaPipeline"
    gen.bind_dataset(type("D", (), {"class_names": ["circle", "star"], "prompt_template": "{class_name}"})())
    img = gen.generate(torch.tensor([0, 1]), torch.tensor([0, 1]), SamplerSettings(steps=1, cfg=1.0, seed=0))
    assert img.dtype == torch.uint8 and tuple(img.shape) == (2, 48, 48, 3)


def _sd3_gen(folder, **opts):
    gen = DiffusersPipeline()
    gen.load(ModelSpec("sd3", "diffusers", str(folder), {"call_kwargs": {"max_sequence_length": 8}, **opts}),
             torch.device("cpu"))
    gen.bind_dataset(type("D", (), {"class_names": ["circle", "square", "star"],
                                    "prompt_template": "a photo of a {class_name}"})())
    return gen


def test_images_depend_only_on_seed_and_sample_id(pipes):
    """One generator per sample: batch 3 equals three batch-1 calls bit for bit (with CFG: 2B-row forwards); the seed
    changes the images; native 32 px resized to 256 (the default evaluation size)."""
    gen = _sd3_gen(pipes["sd3"])
    labels, ids = torch.tensor([0, 1, 2]), torch.tensor([5, 6, 7])
    s = SamplerSettings(steps=2, cfg=3.0, seed=42)
    batched = gen.generate(labels, ids, s)
    single = torch.cat([gen.generate(labels[k:k + 1], ids[k:k + 1], s) for k in range(3)])
    assert tuple(batched.shape) == (3, 256, 256, 3)
    assert torch.equal(batched, single)
    other = gen.generate(labels[:1], ids[:1], SamplerSettings(steps=2, cfg=3.0, seed=43))
    assert not torch.equal(other, batched[:1])


def test_memory_and_precision_options(pipes):
    """bf16 weights, VAE tiling/slicing, an attention backend and a solver sweep by scheduler name all apply; an
    unknown option, scheduler or backend, and offload on a CPU-only suite, are one-line errors naming the key."""
    gen = _sd3_gen(pipes["sd3"], dtype="bfloat16", vae_tiling=True, vae_slicing=True, attention_backend="native",
                   eval_size=None)
    assert gen.pipe.transformer.dtype == torch.bfloat16
    assert gen.pipe.vae.use_tiling and gen.pipe.vae.use_slicing
    s = SamplerSettings(steps=2, cfg=2.0, seed=0, solver="FlowMatchHeunDiscreteScheduler")
    assert gen.nfe_per_image(s) == 2 * (2 * 2 - 1)
    img = gen.generate(torch.tensor([0]), torch.tensor([0]), s)       # check_nfe verifies the Heun count too
    assert tuple(img.shape) == (1, 32, 32, 3)
    with pytest.raises(OptionsError, match="^vae_tilling: unknown option .*vae_tiling"):
        DiffusersPipeline.validate_options({"vae_tilling": True})
    with pytest.raises(OptionsError, match="^call_kwargs: 'num_inference_steps' is set by the adapter"):
        DiffusersPipeline.validate_options({"call_kwargs": {"num_inference_steps": 3}})
    with pytest.raises(OptionsError, match="^vae_tilling: unknown option"):
        _sd3_gen(pipes["sd3"], vae_tilling=True)                      # load() parses its options too
    with pytest.raises(DiffusersError, match="options.cpu_offload"):
        _sd3_gen(pipes["sd3"], cpu_offload="model")
    with pytest.raises(DiffusersError, match="options.attention_backend: unknown backend 'nope'"):
        _sd3_gen(pipes["sd3"], attention_backend="nope")
    with pytest.raises(DiffusersError, match="options.scheduler: 'FlowMatchEuler' is not a diffusers scheduler"):
        _sd3_gen(pipes["sd3"], scheduler="FlowMatchEuler")


def test_missing_preset_weights_say_how_to_get_them(monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(bench.hub.WeightsNotFound, match="stabilityai/stable-diffusion-3.5-large.*HF_HUB_OFFLINE"):
        SD35Large().load(ModelSpec("sd", "sd3.5-large"), torch.device("cpu"))


def test_presets_match_the_paper():
    sd, fx = SD35Large.validate_options({}), Flux1Dev.validate_options({})
    for o in (sd, fx):
        assert (o["resolution"], o["dtype"], o["eval_size"], o["resize"]) == ([1024, 1024], "bfloat16", 256, "lanczos")
        assert o["prompt"] == "a photo of a {class_name}" and o["scheduler"] == "FlowMatchEulerDiscreteScheduler"
    assert SD35Large()._weights_ref(ModelSpec("a", "sd3.5-large")) == "stabilityai/stable-diffusion-3.5-large"
    assert Flux1Dev()._weights_ref(ModelSpec("a", "flux.1-dev")) == "black-forest-labs/FLUX.1-dev"
    assert Flux1Dev.validate_options({"resolution": [512, 768]})["resolution"] == [512, 768]
    assert DiffusersPipeline.validate_options({})["resolution"] is None            # the presets' defaults are theirs


def test_nfe_is_declared_before_loading_for_bench_validate():
    """`bench validate` plans with unloaded adapters: the preset or options.pipeline / options.guidance declare it."""
    def nfe(cls, cfg, steps=25, solver=None, **opts):
        return cls().nfe_per_image(SamplerSettings(steps=steps, cfg=cfg, solver=solver, options=opts))
    assert (nfe(SD35Large, 1.0), nfe(SD35Large, 3.5), nfe(SD35Large, 7.0, steps=1)) == (25, 50, 2)
    assert (nfe(Flux1Dev, 1.0), nfe(Flux1Dev, 3.5), nfe(Flux1Dev, 3.5, true_cfg_scale=4.0)) == (25, 25, 50)
    assert nfe(DiffusersPipeline, 2.0, steps=4, pipeline="SDXLNotAClass", guidance={"kind": "none"}) == 4
    assert nfe(DiffusersPipeline, 2.0, steps=4, pipeline="StableDiffusionXLPipeline",
               solver="HeunDiscreteScheduler") == 2 * 7
    with pytest.raises(DiffusersError, match="options.pipeline: name the pipeline class"):
        nfe(DiffusersPipeline, 2.0)
    with pytest.raises(DiffusersError, match="no declared guidance mapping for MyPipeline"):
        nfe(DiffusersPipeline, 2.0, pipeline="MyPipeline")
