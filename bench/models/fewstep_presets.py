"""Presets for the field's few-step checkpoints and the teachers they are measured against (issue 20).

`FEW_STEP_PRESETS` has the shape of `bench.models.diffusers_presets.PRESETS` (which merges it at import): ``weights``
is the preset adapter's default base pipeline (a hub id); every other key is the default of that
`DiffusersOptions` option, suite options override it. `PRESET_NOTES` says, per preset, what the suite's ``cfg`` axis
is (``cfg``), the NFE per step (``nfe``: one of `NFE_CFG` / `NFE_ONE`, which tests/test_fewstep_presets.py checks
against the declared NFE) and where the settings were read (``source``); ``caveat`` says what could not be confirmed.

Every value comes from the model card or reference code cited in the comment above its entry. Where a card loads
a file as ``hf_hub_download(repo, file)`` the preset names the same repo and file (``components.file`` /
``lora.weight_name``); cards that pass ``variant="fp16"`` download the repos' half-precision copies, the presets
load the full-precision files cast to ``dtype`` (add ``load_kwargs: {variant: fp16}`` to download less; DiT's
revision aside, the presets set no load_kwargs). Step-specific weights (SDXL-Lightning, Hyper-SD, DMD2) are one
preset per step count with ``trained_steps``: another step count is refused at validation.
``sdxl-lightning`` alone is the 4-step UNet (the card's first example; the UNets are its best quality).

Invariants: pure data, torch- and pydantic-free, no import of bench.models.diffusers_presets (which imports this
module); every preset has a note with the three keys; ``nfe`` is `NFE_CFG` exactly when the guidance kind is true
CFG. Cited ``org/name`` repositories are Hugging Face model repos; ``diffusers docs ...`` and ``*.py`` files are
paths in github:huggingface/diffusers (docs/source/en/..., src/diffusers/...), read at its 0.40.0.dev0 snapshot.
"""

from __future__ import annotations

from typing import Any

NFE_CFG = "1 per step at cfg <= 1, 2 when cfg > 1 (true CFG)"
NFE_ONE = "1 per step at every cfg"

PROMPT = "a photo of a {class_name}"          # the paper's prompt, as the sd3.5-large / flux.1-dev presets
SDXL = "stabilityai/stable-diffusion-xl-base-1.0"
_T2I = {"prompt": PROMPT, "eval_size": 256, "resize": "lanczos"}   # the paper's evaluation: LANCZOS to 256
_EMBEDDED = {"kwarg": "guidance_scale", "kind": "embedded"}
_NONE = {"kind": "none"}
_TRAILING = {"timestep_spacing": "trailing"}


def _sdxl(**options: Any) -> dict[str, Any]:
    """An SDXL-base pipeline at 1024 px in float16 (every SDXL card loads torch.float16), LANCZOS to 256."""
    return {"weights": SDXL, "pipeline": "StableDiffusionXLPipeline", "resolution": 1024, "dtype": "float16",
            **_T2I, **options}


def _unet(weights: str, file: str | None = None) -> dict[str, dict[str, Any]]:
    """A replacement SDXL UNet: ``file`` (safetensors) loaded into the base's own unet config, strict."""
    c: dict[str, Any] = {"class": "UNet2DConditionModel", "weights": weights}
    if file:
        c["file"] = file
    return {"unet": c}


def _lora(weights: str, weight_name: str | None = None, fuse: bool = True) -> list[dict[str, Any]]:
    out: dict[str, Any] = {"weights": weights, "fuse": fuse}
    if weight_name:
        out["weight_name"] = weight_name
    return [out]


FEW_STEP_PRESETS: dict[str, dict[str, Any]] = {}
PRESET_NOTES: dict[str, dict[str, str]] = {}


def _add(name: str, preset: dict[str, Any], cfg: str, nfe: str, source: str, caveat: str = "") -> None:
    FEW_STEP_PRESETS[name] = preset
    PRESET_NOTES[name] = {"cfg": cfg, "nfe": nfe, "source": source, **({"caveat": caveat} if caveat else {})}


# -- teacher: SDXL base. diffusers StableDiffusionXLPipeline (github:huggingface/diffusers src/diffusers/pipelines/
# stable_diffusion_xl/pipeline_stable_diffusion_xl.py): default guidance_scale 5.0, true CFG when > 1; the repo's
# scheduler is EulerDiscreteScheduler (named here so a swept solver axis is the only change); 1024 px, float16.
_add("sdxl-base", _sdxl(scheduler="EulerDiscreteScheduler"),
     "guidance_scale, true CFG (the pipeline default is 5.0)", NFE_CFG,
     "stabilityai/stable-diffusion-xl-base-1.0 model card; diffusers pipeline_stable_diffusion_xl.py __call__")

# -- SDXL-Turbo (ADD). diffusers docs/source/en/api/pipelines/stable_diffusion/sdxl_turbo.md: guidance_scale=0.0,
# timestep_spacing='trailing', 1-4 steps, trained at 512x512; the repo's scheduler_config.json is
# EulerAncestralDiscreteScheduler with timestep_spacing "trailing" (set here explicitly); float16 as in the docs.
_add("sdxl-turbo", {"weights": "stabilityai/sdxl-turbo", "pipeline": "StableDiffusionXLPipeline", "resolution": 512,
                    "dtype": "float16", "scheduler": "EulerAncestralDiscreteScheduler",
                    "scheduler_config": _TRAILING, "trained_steps": [1, 2, 3, 4], **_T2I},
     "guidance_scale, true CFG; the card uses 0", NFE_CFG,
     "diffusers docs api/pipelines/stable_diffusion/sdxl_turbo.md; stabilityai/sdxl-turbo scheduler_config.json")

# -- SD-Turbo (ADD on SD 2.1): stabilityai/sd-turbo card: AutoPipelineForText2Image, float16, num_inference_steps 1,
# guidance_scale=0.0, 512x512; the repo's scheduler_config.json is EulerDiscreteScheduler, timestep_spacing trailing.
_add("sd-turbo", {"weights": "stabilityai/sd-turbo", "pipeline": "StableDiffusionPipeline", "resolution": 512,
                  "dtype": "float16", "scheduler": "EulerDiscreteScheduler", "scheduler_config": _TRAILING,
                  "trained_steps": [1, 2, 3, 4], **_T2I},
     "guidance_scale, true CFG; the card uses 0", NFE_CFG,
     "stabilityai/sd-turbo model card and scheduler/scheduler_config.json",
     "its teacher (SD 2.1) is not among the presets")

# -- SDXL-Lightning (ByteDance/SDXL-Lightning model card, "Diffusers Usage"): SDXL base + a step-specific UNet
# (sdxl_lightning_{N}step_unet.safetensors loaded into UNet2DConditionModel.from_config(base, subfolder="unet")) or
# LoRA (sdxl_lightning_{N}step_lora.safetensors, load_lora_weights + fuse_lora); EulerDiscreteScheduler with
# timestep_spacing="trailing"; guidance_scale=0; "always use the correct checkpoint for the corresponding inference
# steps". The 1-step model is UNet only (sdxl_lightning_1step_unet_x0.safetensors) and predicts the sample:
# prediction_type="sample". No 1-step LoRA is published. float16, 1024 px.
_LIGHTNING = "ByteDance/SDXL-Lightning"
_LIGHTNING_SRC = "ByteDance/SDXL-Lightning model card (Diffusers Usage: UNet, LoRA, 1-step UNet)"
for _n in (1, 2, 4, 8):
    _file = "sdxl_lightning_1step_unet_x0.safetensors" if _n == 1 else f"sdxl_lightning_{_n}step_unet.safetensors"
    _sched = {**_TRAILING, "prediction_type": "sample"} if _n == 1 else _TRAILING
    _add(f"sdxl-lightning-{_n}step", _sdxl(components=_unet(_LIGHTNING, _file), scheduler="EulerDiscreteScheduler",
                                           scheduler_config=_sched, trained_steps=[_n]),
         "guidance_scale, true CFG; the card uses 0", NFE_CFG, _LIGHTNING_SRC,
         "the card calls the 1-step model experimental" if _n == 1 else "")
for _n in (2, 4, 8):
    _add(f"sdxl-lightning-lora-{_n}step",
         _sdxl(lora=_lora(_LIGHTNING, f"sdxl_lightning_{_n}step_lora.safetensors"), scheduler="EulerDiscreteScheduler",
               scheduler_config=_TRAILING, trained_steps=[_n]),
         "guidance_scale, true CFG; the card uses 0", NFE_CFG, _LIGHTNING_SRC)
# the bare name: the 4-step UNet (the card's first example; its UNets have the best quality)
_add("sdxl-lightning", dict(FEW_STEP_PRESETS["sdxl-lightning-4step"]),
     PRESET_NOTES["sdxl-lightning-4step"]["cfg"], NFE_CFG, _LIGHTNING_SRC, "the same settings as sdxl-lightning-4step")

# -- LCM-LoRA-SDXL. diffusers docs/source/en/api/pipelines/latent_consistency_models.md (LCM-LoRA tab): SDXL base,
# LCMScheduler, load_lora_weights("latent-consistency/lcm-lora-sdxl") (not fused there), 4 steps, guidance_scale 1.0
# ("best values between [1.0, 2.0]"). The LoRA leaves the UNet without time_cond_proj_dim, so the SDXL pipeline's
# do_classifier_free_guidance (guidance_scale > 1 and time_cond_proj_dim is None) is true CFG above 1.
_add("lcm-lora-sdxl", _sdxl(lora=_lora("latent-consistency/lcm-lora-sdxl", fuse=False), scheduler="LCMScheduler"),
     "guidance_scale, true CFG (the LoRA UNet has no guidance embedding); the docs use 1.0",
     NFE_CFG, "diffusers docs api/pipelines/latent_consistency_models.md (LCM-LoRA); pipeline_stable_diffusion_xl.py",
     "no step counts are fixed by the card (2-8 steps); the docs' example uses 4")

# -- LCM-SDXL (full distilled UNet): same docs page (LCM tab): UNet2DConditionModel.from_pretrained(
# "latent-consistency/lcm-sdxl") (root config.json + diffusion_pytorch_model.safetensors), LCMScheduler, 4 steps,
# guidance_scale 8.0 ("ideal range [3., 13.]"): w is a UNet input (time_cond_proj_dim), no batch doubling. Declared
# embedded here so the NFE is known before the UNet is loaded (the adapter checks it against the count).
_add("lcm-sdxl", _sdxl(components=_unet("latent-consistency/lcm-sdxl"), scheduler="LCMScheduler",
                       guidance=_EMBEDDED),
     "guidance_scale, LCM's embedded guidance input w (the docs use 8.0)", NFE_ONE,
     "diffusers docs api/pipelines/latent_consistency_models.md (LCM); latent-consistency/lcm-sdxl files")

# -- Hyper-SDXL (ByteDance/Hyper-SD model card, "Text-to-Image Usage / SDXL-related models"): LoRAs
# Hyper-SDXL-{2,4,8}steps-lora.safetensors with DDIMScheduler(timestep_spacing="trailing"), guidance_scale=0, fused;
# the unified Hyper-SDXL-1step-lora.safetensors ("support 1 to 8 steps inference") with TCDScheduler and eta=1.0
# (passed to the call); the 1-step UNet Hyper-SDXL-1step-Unet.safetensors with LCMScheduler and timesteps=[800].
_HYPER = "ByteDance/Hyper-SD"
_HYPER_SRC = "ByteDance/Hyper-SD model card (Text-to-Image Usage, SDXL-related models)"
_HYPER_CAVEAT = ("the CFG-preserving Hyper-SDXL-8steps-CFG / 12steps-CFG LoRAs (guidance 5-8) are not presets: their "
                 "diffusers usage was not confirmed; give them with lora: and scheduler: options")
_add("hyper-sdxl-lora-1step", _sdxl(lora=_lora(_HYPER, "Hyper-SDXL-1step-lora.safetensors"), scheduler="TCDScheduler",
                                    call_kwargs={"eta": 1.0}, trained_steps=[1, 2, 3, 4, 5, 6, 7, 8]),
     "guidance_scale, true CFG; the card uses 0", NFE_CFG, _HYPER_SRC,
     "the unified LoRA: one file for 1-8 steps (TCD eta 1.0; the card suggests lower eta for more steps)")
for _n in (2, 4, 8):
    _add(f"hyper-sdxl-lora-{_n}step",
         _sdxl(lora=_lora(_HYPER, f"Hyper-SDXL-{_n}steps-lora.safetensors"), scheduler="DDIMScheduler",
               scheduler_config=_TRAILING, trained_steps=[_n]),
         "guidance_scale, true CFG; the card uses 0", NFE_CFG, _HYPER_SRC, _HYPER_CAVEAT)
_add("hyper-sdxl-1step", _sdxl(components=_unet(_HYPER, "Hyper-SDXL-1step-Unet.safetensors"),
                               scheduler="LCMScheduler", timesteps={1: [800]}, trained_steps=[1]),
     "guidance_scale, true CFG; the card uses 0", NFE_CFG, _HYPER_SRC)

# -- TCD-SDXL. diffusers docs using-diffusers/inference_with_tcd_lora.md and the h1t/TCD-SDXL-LoRA card: SDXL base,
# TCDScheduler, load_lora_weights("h1t/TCD-SDXL-LoRA") + fuse_lora(), num_inference_steps 4 (4-50 allowed),
# guidance_scale=0, eta=0.3 (the SDXL pipeline passes its own eta=0.0 to TCDScheduler.step unless given).
_add("tcd-sdxl", _sdxl(lora=_lora("h1t/TCD-SDXL-LoRA"), scheduler="TCDScheduler", call_kwargs={"eta": 0.3}),
     "guidance_scale, true CFG; the card uses 0", NFE_CFG,
     "h1t/TCD-SDXL-LoRA model card; diffusers docs inference_with_tcd_lora.md (v0.27)")

# -- DMD2-SDXL (tianweiy/DMD2 model card, "Diffusers usage"; github:tianweiy/DMD2 README.md): SDXL base, LCMScheduler,
# guidance_scale=0; 4-step UNet (dmd2_sdxl_4step_unet_fp16.safetensors, added to the repo as safetensors) with
# timesteps=[999, 749, 499, 249] ("LCMScheduler's default timesteps are different from the one we used for
# training"); the 4-step LoRA dmd2_sdxl_4step_lora_fp16.safetensors, fuse_lora(lora_scale=1.0), same timesteps;
# the 1-step UNet with timesteps=[399] -- published ONLY as dmd2_sdxl_1step_unet_fp16.bin / .bin (pickle), which
# components do not load: convert it once (README "Few-step presets") to $STEPBENCH_WEIGHTS/dmd2/.
_DMD2 = "tianweiy/DMD2"
_DMD2_SRC = "tianweiy/DMD2 model card (Diffusers usage); github:tianweiy/DMD2 README.md"
_DMD2_STEPS = {4: [999, 749, 499, 249]}
_add("dmd2-sdxl-4step", _sdxl(components=_unet(_DMD2, "dmd2_sdxl_4step_unet_fp16.safetensors"),
                              scheduler="LCMScheduler", timesteps=_DMD2_STEPS, trained_steps=[4]),
     "guidance_scale, true CFG; the card uses 0", NFE_CFG, _DMD2_SRC)
_add("dmd2-sdxl-lora-4step", _sdxl(lora=_lora(_DMD2, "dmd2_sdxl_4step_lora_fp16.safetensors"),
                                   scheduler="LCMScheduler", timesteps=_DMD2_STEPS, trained_steps=[4]),
     "guidance_scale, true CFG; the card uses 0", NFE_CFG, _DMD2_SRC)
_add("dmd2-sdxl-1step", _sdxl(components=_unet("$STEPBENCH_WEIGHTS/dmd2/dmd2_sdxl_1step_unet_fp16.safetensors"),
                              scheduler="LCMScheduler", timesteps={1: [399]}, trained_steps=[1]),
     "guidance_scale, true CFG; the card uses 0", NFE_CFG, _DMD2_SRC,
     "tianweiy/DMD2 ships the 1-step UNet as .bin only: convert dmd2_sdxl_1step_unet_fp16.bin to safetensors "
     "(torch.load(weights_only=True) + safetensors.torch.save_file) at $STEPBENCH_WEIGHTS/dmd2/, or point "
     "components.unet.weights at your copy")

# -- FLUX.1-schnell. diffusers docs/source/en/api/pipelines/flux.md ("Timestep-distilled"): guidance_scale needs to
# be 0 (the transformer has no guidance embedding, so the argument does nothing), max_sequence_length <= 256,
# num_inference_steps 4, bfloat16. Declared kind none: the cfg axis is not passed. The repo's scheduler is
# FlowMatchEulerDiscreteScheduler (named as in the flux.1-dev preset); 1024 px as the paper's FLUX.1-dev.
_add("flux.1-schnell", {"weights": "black-forest-labs/FLUX.1-schnell", "pipeline": "FluxPipeline",
                        "resolution": 1024, "dtype": "bfloat16", "scheduler": "FlowMatchEulerDiscreteScheduler",
                        "guidance": _NONE, "call_kwargs": {"max_sequence_length": 256},
                        "trained_steps": [1, 2, 3, 4], **_T2I},
     "none: FLUX.1-schnell has no guidance input; the cfg axis is not passed and has no effect", NFE_ONE,
     "diffusers docs api/pipelines/flux.md (Timestep-distilled)")

# -- SD3.5-Large-Turbo (ADD): stabilityai/stable-diffusion-3.5-large-turbo card: StableDiffusion3Pipeline, bfloat16,
# 4 steps, guidance_scale 0.0 ("typically 4 steps, guidance 0.0"); FlowMatch Euler and 1024 px as the sd3.5-large
# preset. The Hugging Face SD3.5 blog's example uses guidance_scale 1.0; both are <= 1, i.e. 1 NFE per step.
_add("sd3.5-large-turbo", {"weights": "stabilityai/stable-diffusion-3.5-large-turbo",
                           "pipeline": "StableDiffusion3Pipeline", "resolution": 1024, "dtype": "bfloat16",
                           "scheduler": "FlowMatchEulerDiscreteScheduler", **_T2I},
     "guidance_scale, true CFG; the card uses 0", NFE_CFG,
     "stabilityai/stable-diffusion-3.5-large-turbo model card (gated); huggingface.co/blog/sd3-5",
     "the gated card's code was read through a mirror only; no trained_steps (the card says 4 steps, not only 4)")

# -- SANA-Sprint. diffusers docs api/pipelines/sana_sprint.md and pipeline_sana_sprint.py __call__: SCMScheduler,
# bfloat16, 1024 px, guidance_scale 4.5 (a guidance embedding, 1 NFE), "1-4 steps" (one step-adaptive model); the
# call's intermediate_timesteps=1.3 default is only valid for 2 steps (SCMScheduler.set_timesteps raises otherwise),
# so `sana-sprint` passes null (timesteps linspace(max_timesteps=1.5708, 0, N+1) for every N) and
# `sana-sprint-2step` keeps the pipeline's own 2-step schedule [1.5708, 1.3, 0]. SCM timesteps are N+1 floats, not
# the N-entry `timesteps` option, so the schedules are set through call_kwargs.
_SANA = {"weights": "Efficient-Large-Model/Sana_Sprint_1.6B_1024px_diffusers", "pipeline": "SanaSprintPipeline",
         "resolution": 1024, "dtype": "bfloat16", "scheduler": "SCMScheduler", **_T2I}
_SANA_SRC = "diffusers docs api/pipelines/sana_sprint.md; pipeline_sana_sprint.py; scheduling_scm.py"
_add("sana-sprint", {**_SANA, "call_kwargs": {"intermediate_timesteps": None}, "trained_steps": [1, 2, 3, 4]},
     "guidance_scale, SANA-Sprint's embedded guidance (the pipeline default is 4.5)", NFE_ONE, _SANA_SRC)
_add("sana-sprint-2step", {**_SANA, "trained_steps": [2]},
     "guidance_scale, SANA-Sprint's embedded guidance (the pipeline default is 4.5)", NFE_ONE, _SANA_SRC,
     "trained_steps [2] guards the 2-step schedule (intermediate_timesteps 1.3), not a 2-step-only distillation")

# -- DiT-XL/2 256 (class-conditional). diffusers docs api/pipelines/dit.md and pipeline_dit.py: DiTPipeline(
# class_labels, guidance_scale=4.0 default, true CFG above 1 with null class 1000), 256x256 output (no height/width
# argument), the docs' example uses DPMSolverMultistepScheduler at 25 steps and float16; the DiT paper's FID setting
# is cfg 1.5 (github:facebookresearch/DiT). facebook/DiT-XL-2-256 main holds .bin weights; the safetensors are in the
# hub PR "Adding safetensors variant of this model", hence load_kwargs.revision refs/pr/1.
_add("dit-xl-2-256", {"weights": "facebook/DiT-XL-2-256", "pipeline": "DiTPipeline", "dtype": "float16",
                      "scheduler": "DPMSolverMultistepScheduler", "eval_size": 256, "resize": "lanczos",
                      "load_kwargs": {"revision": "refs/pr/1"}},
     "guidance_scale, true CFG on the class label vs the null class (pipeline default 4.0; the DiT paper's FID "
     "uses 1.5)", NFE_CFG, "diffusers docs api/pipelines/dit.md; pipeline_dit.py; facebook/DiT-XL-2-256 files",
     "main has no safetensors (checked on the hub's file listing): refs/pr/1 is the safetensors PR; pin its commit")

# -- Consistency models on ImageNet 64 (class-conditional). diffusers pipeline_consistency_models.py (example docstring)
# and docs api/pipelines/consistency_models.md: ConsistencyModelPipeline, CMStochasticIterativeScheduler, float16,
# one step, or explicit timesteps for multistep: [22, 0] for cd_imagenet64_l2, "from the original GitHub repo"
# (github:openai/consistency_models scripts/launch.sh: two-step `--ts 0,22,39 --steps 40` for CD l2 and LPIPS,
# `--ts 0,106,200 --steps 201` for CT). diffusers' timesteps are Karras-grid indices in descending order with the
# grid's last point implied (num_train_timesteps 40 for CD, 201 for CT: scripts/convert_consistency_to_diffusers.py),
# so launch.sh's 0,22,39 is [22, 0] and 0,106,200 is [106, 0]; one step is [0] (sigma_max, the pipeline's own
# 1-step schedule). No CFG (kind none). Native 64 px: eval_size 64 (no resize). The hub repos hold
# unet/diffusion_pytorch_model.safetensors since the "fix mid block attention group norm bug" upload (PR #1).
_CM = {"pipeline": "ConsistencyModelPipeline", "dtype": "float16", "scheduler": "CMStochasticIterativeScheduler",
       "eval_size": 64, "resize": "lanczos"}
_CM_SRC = ("diffusers pipeline_consistency_models.py + docs api/pipelines/consistency_models.md; "
           "github:openai/consistency_models scripts/launch.sh (two-step --ts)")
_CM_CFG = "none: consistency models have no guidance; the cfg axis is not passed and has no effect"
for _loss in ("l2", "lpips"):
    _add(f"cd-imagenet64-{_loss}", {"weights": f"openai/diffusers-cd_imagenet64_{_loss}", **_CM,
                                    "timesteps": {1: [0], 2: [22, 0]}},
         _CM_CFG, NFE_ONE, _CM_SRC, "" if _loss == "l2" else "diffusers documents [22, 0] for the l2 model; launch.sh "
         "gives the same 0,22,39 for LPIPS")
_add("ct-imagenet64", {"weights": "openai/diffusers-ct_imagenet64", **_CM, "timesteps": {1: [0], 2: [106, 0]}},
     _CM_CFG, NFE_ONE, _CM_SRC, "[106, 0] is launch.sh's 0,106,200 mapped to diffusers' indices (not in the docs)")
