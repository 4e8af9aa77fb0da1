"""The diffusers adapter on tiny random pipelines of every class a few-step preset uses (SDXL, LCM-style SDXL, SD3,
FLUX.1-schnell-like, SANA-Sprint, DiT, consistency model; tests/diffusers_tiny.py), each checked against a direct
diffusers call made here with the same per-sample generators:

- images bit-identical to the direct call, and the denoiser rows counted in the direct call equal to the adapter's
  declared NFE at cfg 1 and 3 (true CFG 1 vs 2 per step; embedded / none 1 and 1), and in the store end to end;
- a random LoRA saved here changes the output exactly as load_lora_weights + set_adapters (+ fuse_lora) does;
- a swapped UNet (a model folder, or a bare .safetensors file built from the base's config) is the one used;
- an explicit timestep list reaches the scheduler, and a step count without one is a validation error;
- an LCM-style UNet's guidance is detected as embedded, and a wrong declaration fails the cell's NFE check;
- DiT and consistency models get the dataset's labels as class_labels, and a label outside the model's classes
  fails with a message naming it.
"""

from __future__ import annotations

import contextlib
import functools
from pathlib import Path

import pytest
import torch
import yaml

diffusers = pytest.importorskip("diffusers")
pytest.importorskip("transformers")

import bench  # noqa: E402
from bench import noise  # noqa: E402
from bench.mini.data import CLASSES, PROMPT_TEMPLATE  # noqa: E402
from bench.models.base import ModelSpec, SamplerSettings  # noqa: E402
from bench.models.diffusers_pipe import DiffusersError, DiffusersPipeline  # noqa: E402
from bench.options import OptionsError  # noqa: E402
from bench.runner import Runner  # noqa: E402
from bench.suite import Suite  # noqa: E402
from tests import diffusers_tiny as tiny  # noqa: E402
from tests.test_adapter_options import cli  # noqa: E402

SEED, STEPS = 42, 2
LABELS, IDS = [0, 3], [5, 9]
STREAM = "diffusers/latents"        # the adapter's documented noise stream (bench/models/diffusers_pipe.py)


class Data:
    """What bind_dataset reads: the mini datasets' class names and prompt template (``n`` names to go further)."""
    def __init__(self, n=None):
        self.class_names = [CLASSES[i] if i < len(CLASSES) else f"extra{i}" for i in range(n or len(CLASSES))]
        self.prompt_template = PROMPT_TEMPLATE


# ---------------------------------------------------------------------------------------------------- the kinds
class Kind:
    """One pipeline class: its builder, the guidance kind the adapter must arrive at (true_cfg: 2 NFE per step when
    cfg > 1; embedded, none: 1; none: the cfg is not passed), the adapter options it needs, and how the direct call
    is made (size: height/width; condition: prompt or class_labels; batch_size passed)."""
    def __init__(self, build, kind, options=None, size=None, condition="prompt", batch_size=False):
        self.build, self.kind, self.guided = build, kind, kind != "none"
        self.options, self.size, self.condition, self.batch_size = dict(options or {}), size, condition, batch_size

    def per_step(self, cfg):
        return 2 if self.kind == "true_cfg" and cfg > 1 else 1


SEQ = {"max_sequence_length": 8}
KINDS = {
    "sdxl": Kind(tiny.build_sdxl, "true_cfg"),
    "lcm-sdxl": Kind(tiny.build_lcm_sdxl, "embedded"),                     # guidance is a UNet input
    "sd3": Kind(tiny.build_sd3, "true_cfg", options={"call_kwargs": SEQ}),
    "flux-schnell": Kind(functools.partial(tiny.build_flux, guidance_embeds=False), "none",
                         options={"resolution": 32, "call_kwargs": SEQ}, size=32),
    "sana-sprint": Kind(tiny.build_sana_sprint, "embedded", size=32, options={
        "resolution": 32, "call_kwargs": {"use_resolution_binning": False, "complex_human_instruction": None, **SEQ}}),
    "dit": Kind(tiny.build_dit, "true_cfg", condition="class"),
    "cm": Kind(tiny.build_cm, "none", condition="class", batch_size=True),
}


@pytest.fixture(scope="module")
def folder(tmp_path_factory):
    """``folder(kind)``: the kind's tiny pipeline, built and saved on first use (once per module)."""
    root, built = tmp_path_factory.mktemp("tiny"), {}

    def get(kind):
        if kind not in built:
            built[kind] = KINDS[kind].build(root / kind)
        return built[kind]
    return get


@pytest.fixture(scope="module")
def loras(folder, tmp_path_factory):
    """Two random LoRAs on the tiny SDXL UNet: "a" as a folder (default weight name), "b" as a named file."""
    pytest.importorskip("peft")
    root = tmp_path_factory.mktemp("loras")
    base = folder("sdxl")
    return {"a": tiny.build_sdxl_lora(root / "a", base, seed=11),
            "b": tiny.build_sdxl_lora(root / "b", base, seed=12, weight_name="b.safetensors")}


@pytest.fixture(scope="module")
def unets(tmp_path_factory):
    """Differently seeded SDXL UNets: a model folder (seed 1) and a bare .safetensors file (seed 2)."""
    root = tmp_path_factory.mktemp("unets")
    return {"folder": tiny.save_unet_folder(root / "unet1", seed=1),
            "file": tiny.save_unet_file(root / "unet2" / "unet2.safetensors", seed=2)}


# ---------------------------------------------------------------------------------------------------- both sides
def adapter(path, **options):
    gen = DiffusersPipeline()
    gen.load(ModelSpec("m", "diffusers", str(path), {"eval_size": None, **options}), torch.device("cpu"))
    gen.bind_dataset(Data())
    return gen


def run_adapter(gen, steps=STEPS, cfg=3.0, labels=LABELS, ids=IDS):
    return gen.generate(torch.tensor(labels), torch.tensor(ids), SamplerSettings(steps=steps, cfg=cfg, seed=SEED))


def direct_pipe(path, **components):
    pipe = diffusers.DiffusionPipeline.from_pretrained(str(path), use_safetensors=True, **components)  # float32
    pipe.set_progress_bar_config(disable=True)
    return pipe


def generators(ids):
    return [torch.Generator("cpu").manual_seed(noise.sample_seed(SEED, i, STREAM)) for i in ids]


def quantise(images):
    """diffusers' float [0, 1] NCHW -> uint8 NHWC as the adapter documents it (round(255 x)); no resize."""
    x = torch.as_tensor(images).float().clamp(0, 1)
    return (x * 255).round().to(torch.uint8).permute(0, 2, 3, 1).contiguous()


def denoiser(pipe):
    return getattr(pipe, "transformer", None) or pipe.unet


@contextlib.contextmanager
def counted(module):
    """Rows of the denoiser's input over a call (its first positional argument, or hidden_states / sample)."""
    rows = [0]

    def hook(_, args, kwargs):
        x = args[0] if args else kwargs.get("hidden_states", kwargs.get("sample"))
        rows[0] += int(x.shape[0])
    handle = module.register_forward_pre_hook(hook, with_kwargs=True)
    try:
        yield rows
    finally:
        handle.remove()


def direct_call(pipe, kind, steps=STEPS, cfg=3.0, labels=LABELS, ids=IDS, **extra):
    """The pipeline called as a user would, with the adapter's per-sample generators; (uint8 images, rows)."""
    k = KINDS[kind]
    kw = dict(k.options.get("call_kwargs", {}))
    if k.condition == "class":
        kw["class_labels"] = list(labels)
        if k.batch_size:
            kw["batch_size"] = len(labels)
    else:
        kw["prompt"] = [PROMPT_TEMPLATE.format(class_name=CLASSES[y]) for y in labels]
    if k.size:
        kw["height"] = kw["width"] = k.size
    if k.guided:
        kw["guidance_scale"] = cfg
    kw.update(num_inference_steps=steps, output_type="pt", generator=generators(ids), **extra)
    with counted(denoiser(pipe)) as rows, torch.inference_mode():
        images = pipe(**kw).images
    return quantise(images), rows[0]


# ---------------------------------------------------------------------------------------------------- (a) (b)
@pytest.mark.parametrize("kind", list(KINDS))
def test_images_equal_a_direct_call_and_counted_nfe_equals_declared(kind, folder):
    k, path = KINDS[kind], folder(kind)
    gen, pipe = adapter(path, **k.options), direct_pipe(path)
    assert (gen.gmap.kind, gen.gmap.condition) == (k.kind, k.condition)     # table entry, refined by the denoiser
    out = {}
    for cfg in (1.0, 3.0):
        got = run_adapter(gen, cfg=cfg)
        ref, rows = direct_call(pipe, kind, cfg=cfg)
        assert got.dtype == torch.uint8 and got.shape == ref.shape and torch.equal(got, ref), (kind, cfg)
        declared = gen.nfe_per_image(SamplerSettings(steps=STEPS, cfg=cfg, seed=SEED))
        assert declared == STEPS * k.per_step(cfg) and rows == declared * len(IDS), (kind, cfg, declared, rows)
        out[cfg] = got
    assert torch.equal(out[1.0], out[3.0]) == (not k.guided)       # the cfg reaches the pipeline when it has one
    assert not torch.equal(got[0], got[1])                          # per-sample noise (and labels / prompts)


def suite_text(models):
    """A suite over mini-val, one sample per class (labels 0..9), toy FID; ``models`` as dicts (see `model`)."""
    fid = {"feature_extractor": "toy-extractor", "kid_subset_size": 2, "kid_subsets": 2, "isc_splits": 1,
           "batch_size": 5, "prc": False}
    return yaml.safe_dump({"suite": "diffusers-fewstep", "seed": SEED, "batch_size": 5, "keep_samples": 1,
                           "samples": {"plan": "per_class", "n": 1}, "timing": {"enabled": False},
                           "datasets": [{"id": "mini-val", "options": {"size": 20}}],
                           "metrics": {"fid_is_kid": fid}, "models": models})


def model(mid, path, options, cfg=(1.0, 3.0), steps=(STEPS,)):
    return {"id": mid, "adapter": "diffusers", "weights": str(path), "options": {"eval_size": 16, **options},
            "steps": list(steps), "cfg": list(cfg)}


def test_suite_end_to_end_stores_counted_nfe_equal_to_declared(folder, tmp_path):
    """Every kind through Runner on mini-val (labels 0..9, one per class) at cfg 1 and 3: counted nfe ==
    nfe_declared == the kind's per-step NFE x steps. An LCM UNet declared as true CFG fails its cfg-3 cell with the
    NFE check (1 NFE either way at cfg 1); a consistency model with 4 classes fails on labels 4..9, naming them."""
    cm4 = tiny.build_cm(tmp_path / "cm4", num_classes=4)
    models = [model(kind, folder(kind), KINDS[kind].options) for kind in KINDS]
    models += [model("lcm-wrong", folder("lcm-sdxl"), {"guidance": {"kind": "true_cfg"}}),
               model("cm4", cm4, {}, cfg=[1.0])]
    db = tmp_path / "s.duckdb"
    summary = Runner(Suite.parse(suite_text(models), "s.yaml"), db=db, progress=False).run()
    df = bench.load(db)
    status = {(r.model, r.cfg): (r.status, r.error or "") for r in df.itertuples()}
    assert status.pop(("lcm-wrong", 1.0))[0] == "ok"
    st, err = status.pop(("lcm-wrong", 3.0))
    assert st == "failed" and "NFE check" in err, err
    st, err = status.pop(("cm4", 1.0))
    assert st == "failed" and "outside the model's classes 0..3" in err, err
    assert all(v[0] == "ok" for v in status.values()), status
    assert summary.failed == 2
    got = {(r.model, r.cfg): (r.nfe, r.nfe_declared) for r in df.itertuples() if r.status == "ok"}
    want = {(kind, cfg): (STEPS * KINDS[kind].per_step(cfg),) * 2 for kind in KINDS for cfg in (1.0, 3.0)}
    want[("lcm-wrong", 1.0)] = (STEPS, STEPS)
    assert got == want


# ---------------------------------------------------------------------------------------------------- (c) LoRA
def _lora_reference(base, entries):
    """diffusers' own LoRA use on a fresh pipeline: the fused entries loaded, weighted with set_adapters, fused with
    fuse_lora(lora_scale=1.0) and their layers unloaded; then the live entries loaded and weighted."""
    pipe = direct_pipe(base)
    for group in filter(None, ([e for e in entries if e.get("fuse")], [e for e in entries if not e.get("fuse")])):
        for e in group:
            p = Path(e["weights"])
            where, name = (p.parent, p.name) if p.is_file() else (p, e.get("weight_name"))
            pipe.load_lora_weights(str(where), weight_name=name, adapter_name=e["adapter_name"])
        pipe.set_adapters([e["adapter_name"] for e in group], adapter_weights=[e["scale"] for e in group])
        if group[0].get("fuse"):
            pipe.fuse_lora(adapter_names=[e["adapter_name"] for e in group], lora_scale=1.0)
            pipe.unload_lora_weights()
    return pipe


LORA_CASES = {
    "live": lambda lo: [{"weights": str(lo["a"].parent), "adapter_name": "a", "scale": 0.7}],
    "fused-file": lambda lo: [{"weights": str(lo["b"]), "adapter_name": "b", "scale": 0.5, "fuse": True}],
    "live-and-fused": lambda lo: [{"weights": str(lo["a"].parent), "adapter_name": "a", "scale": 0.7},
                                  {"weights": str(lo["b"].parent), "weight_name": "b.safetensors",
                                   "adapter_name": "b", "scale": 0.5, "fuse": True}],
}


@pytest.fixture(scope="module")
def sdxl_base(folder):
    """The tiny SDXL's output without LoRA or swap (direct call), the reference the compositions must change."""
    return direct_call(direct_pipe(folder("sdxl")), "sdxl")[0]


@pytest.mark.parametrize("case", list(LORA_CASES))
def test_lora_changes_the_output_exactly_as_diffusers_does(case, folder, loras, sdxl_base):
    base, entries = folder("sdxl"), LORA_CASES[case](loras)
    gen = adapter(base, lora=entries)
    got = run_adapter(gen)
    ref, _ = direct_call(_lora_reference(base, entries), "sdxl")
    assert torch.equal(got, ref)
    assert not torch.equal(got, sdxl_base)
    spec = functools.partial(ModelSpec, "m", "diffusers", str(base))
    ids = {gen.weights_id(spec({})), gen.weights_id(spec({"lora": entries})),
           gen.weights_id(spec({"lora": LORA_CASES["live"](loras) if case != "live" else
                                LORA_CASES["fused-file"](loras)}))}
    assert len(ids) == 3                       # the LoRA files are part of the weights identity


# ---------------------------------------------------------------------------------------------------- (d) UNet swap
def test_a_swapped_unet_from_a_folder_is_the_one_used(folder, unets, sdxl_base):
    base, swap = folder("sdxl"), unets["folder"]
    gen = adapter(base, components={"unet": {"class": "UNet2DConditionModel", "weights": str(swap)}})
    want = diffusers.UNet2DConditionModel.from_pretrained(str(swap)).state_dict()
    _same_state(gen.pipe.unet.state_dict(), want)
    got = run_adapter(gen)
    ref, _ = direct_call(direct_pipe(base, unet=diffusers.UNet2DConditionModel.from_pretrained(str(swap))), "sdxl")
    assert torch.equal(got, ref) and not torch.equal(got, sdxl_base)


def test_a_swapped_unet_from_a_safetensors_file_is_built_from_the_base_config(folder, unets, sdxl_base):
    from safetensors.torch import load_file
    base, file = folder("sdxl"), Path(unets["file"])
    gen = adapter(base, components={"unet": {"class": "UNet2DConditionModel", "weights": str(file.parent),
                                             "file": file.name}})
    want = load_file(str(file))
    _same_state(gen.pipe.unet.state_dict(), want)
    unet = diffusers.UNet2DConditionModel.from_config(diffusers.UNet2DConditionModel.load_config(
        str(base), subfolder="unet"))
    unet.load_state_dict(want, strict=True)
    got = run_adapter(gen)
    ref, _ = direct_call(direct_pipe(base, unet=unet.eval()), "sdxl")
    assert torch.equal(got, ref) and not torch.equal(got, sdxl_base)
    with pytest.raises(OptionsError, match="^components.unet.file: components load safetensors only"):
        DiffusersPipeline.validate_options({"components": {"unet": {"class": "UNet2DConditionModel",
                                                                    "weights": "x", "file": "unet.bin"}}})


def _same_state(got, want):
    assert set(got) == set(want)
    bad = [k for k in want if not torch.equal(got[k], want[k].to(got[k].dtype))]
    assert not bad, bad[:3]


# ---------------------------------------------------------------------------------------------------- (e) timesteps
def _reference_timesteps(scheduler, timesteps):
    fresh = type(scheduler).from_config(scheduler.config)
    fresh.set_timesteps(timesteps=timesteps)
    return fresh.timesteps


@pytest.mark.parametrize("kind, timesteps, scheduler", [
    ("sdxl", [999, 499], None),                        # Euler (leading, offset 1) would run [501, 1]
    ("sdxl", [899, 399], "LCMScheduler"),
    ("lcm-sdxl", [799, 299], None),                    # its own LCMScheduler would run [999, 499]
    ("cm", [22, 0], None),                             # indices into the 40 Karras sigmas
])
def test_an_explicit_timestep_list_reaches_the_scheduler(kind, timesteps, scheduler, folder):
    k, path = KINDS[kind], folder(kind)
    opts = {**k.options, **({"scheduler": scheduler} if scheduler else {})}
    plain = run_adapter(adapter(path, **opts))
    gen = adapter(path, **opts, timesteps={STEPS: timesteps})
    got = run_adapter(gen)
    assert torch.equal(gen.pipe.scheduler.timesteps, _reference_timesteps(gen.pipe.scheduler, timesteps))
    assert not torch.equal(got, plain)
    pipe = direct_pipe(path)
    if scheduler:
        pipe.scheduler = getattr(diffusers, scheduler).from_config(pipe.scheduler.config)
    steps = None if kind == "cm" else STEPS            # the consistency pipeline takes one of the two
    ref, rows = direct_call(pipe, kind, steps=steps, timesteps=timesteps)
    assert torch.equal(got, ref) and rows == STEPS * len(IDS) * KINDS[kind].per_step(3.0)


def test_a_step_count_without_its_list_is_a_validation_error(folder, tmp_path):
    """With timesteps given, a swept step count without its list is refused before loading (the adapter's NFE
    declaration, i.e. what bench validate plans) and by `bench validate` itself (exit 2, naming the option); a
    list of the wrong length is an option error; left at its default the option is not in the cell key."""
    opts = {"pipeline": "StableDiffusionXLPipeline", "timesteps": {2: [999, 499]}}
    with pytest.raises(DiffusersError, match="options.timesteps.*no schedule for 4 steps"):
        DiffusersPipeline().nfe_per_image(SamplerSettings(steps=4, cfg=1.0, options=opts))
    with pytest.raises(DiffusersError, match="options.timesteps.*no schedule for 4 steps"):
        adapter(folder("sdxl"), timesteps={2: [999, 499]}).nfe_per_image(SamplerSettings(steps=4, cfg=1.0))
    with pytest.raises(OptionsError, match="^timesteps: 2: the list for 2 steps has 1 entries"):
        DiffusersPipeline.validate_options({"timesteps": {2: [999]}})
    assert "timesteps" not in DiffusersPipeline.validate_options({})
    path = tmp_path / "s.yaml"
    path.write_text(suite_text([model("sdxl", folder("sdxl"), opts, cfg=[1.0], steps=[2, 4])]))
    code, out, err = cli("validate", str(path))
    assert code == 2 and "Traceback" not in err and "options.timesteps" in err and "4 steps" in err, (code, out, err)


# ---------------------------------------------------------------------------------------------------- (f) LCM
def test_an_lcm_unet_is_detected_as_embedded_and_a_wrong_declaration_fails(folder):
    path = folder("lcm-sdxl")
    gen = adapter(path)
    assert gen.gmap.kind == "embedded" and gen.describe()["guidance"]["kind"] == "embedded"
    assert gen.nfe_per_image(SamplerSettings(steps=STEPS, cfg=3.0)) == STEPS
    wrong = adapter(path, guidance={"kind": "true_cfg"})
    assert wrong.nfe_per_image(SamplerSettings(steps=STEPS, cfg=3.0)) == 2 * STEPS      # a declaration is kept
    run_adapter(wrong, cfg=1.0)                                                         # 1 NFE either way
    with pytest.raises(DiffusersError, match="NFE check"):
        run_adapter(wrong, cfg=3.0)
    sdxl = adapter(folder("sdxl"))                                                      # a plain UNet: true CFG
    assert sdxl.gmap.kind == "true_cfg" and sdxl.nfe_per_image(SamplerSettings(steps=STEPS, cfg=3.0)) == 2 * STEPS


# ---------------------------------------------------------------------------------------------------- (g) labels
@pytest.mark.parametrize("kind, classes", [("dit", 1000), ("cm", tiny.CM_CLASSES)])
def test_class_conditional_pipelines_get_the_dataset_labels(kind, classes, folder):
    gen = adapter(folder(kind))
    assert gen.gmap.condition == "class"
    same_noise = run_adapter(gen, labels=[1, 2], ids=[7, 7])           # one sample id, two labels
    assert not torch.equal(same_noise[0], same_noise[1])              # the label reaches the model
    assert torch.equal(same_noise[:1], run_adapter(gen, labels=[1], ids=[7]))
    gen.bind_dataset(Data(classes + 2))                               # a dataset with more classes than the model
    with pytest.raises(DiffusersError, match=f"label {classes} is outside the model's classes 0..{classes - 1}"):
        run_adapter(gen, labels=[0, classes])


# ---------------------------------------------------------------------------------------------------- presets
def test_presets_run_their_pipeline_class_and_a_wrong_guidance_declaration_fails_its_cell(folder, tmp_path):
    """The preset adapters on the tiny pipelines of their class (the preset's scheduler, spacing and guidance kept;
    size and dtype shrunk): counted NFE equals the preset's declaration at cfg 1 and 3; the same presets given a
    wrong guidance declaration by the suite fail their cfg-3 cell with the NFE check (SDXL-Turbo's true CFG declared
    embedded; DiT's declared none, so the pipeline's own default scale 4.0 doubles its rows unannounced)."""
    small = {"dtype": "float32", "eval_size": 16, "resolution": None, "load_kwargs": {}}
    presets = {"sdxl-turbo": ("sdxl", {"kind": "embedded"}), "dit-xl-2-256": ("dit", {"kind": "none",
                                                                                     "condition": "class"})}
    models = []
    for name, (kind, wrong) in presets.items():
        for mid, extra in ((name, {}), (f"{name}-wrong", {"guidance": wrong})):
            models.append({"id": mid, "adapter": name, "weights": str(folder(kind)), "options": {**small, **extra},
                           "steps": [STEPS], "cfg": [1.0, 3.0]})
    db = tmp_path / "p.duckdb"
    Runner(Suite.parse(suite_text(models), "p.yaml"), db=db, progress=False).run()
    df = bench.load(db)
    status = {(r.model, r.cfg): (r.status, r.error or "", r.nfe, r.nfe_declared) for r in df.itertuples()}
    for name in presets:
        assert status[(name, 1.0)][:1] == ("ok",) and status[(name, 1.0)][2:] == (STEPS, STEPS)
        assert status[(name, 3.0)][:1] == ("ok",) and status[(name, 3.0)][2:] == (2 * STEPS, 2 * STEPS)
        st, err = status[(f"{name}-wrong", 3.0)][:2]
        assert st == "failed" and "NFE check" in err, (name, err)
