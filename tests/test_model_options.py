"""Every non-latent adapter declares its options as a strict model: a misspelt key and a wrong-typed value are
`OptionsError`s naming the key, ``validate_options({})`` equals the defaults spelt out (so a cell key does not
depend on which were written), and ``load`` applies / refuses options through the same model. Torch-light: no
diffusers needed (its options module is torch-free)."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image

from bench.data.base import Dataset
from bench.models.base import Generator, ModelSpec, SamplerSettings
from bench.models.diffusers_pipe import DiffusersPipeline, Flux1Dev, SD35Large
from bench.models.mini import MiniDistill, MiniMeanFlow, MiniSiT
from bench.models.real import RealImages
from bench.models.samples import Samples
from bench.models.toy import ToyFlow
from bench.options import NoOptions, OptionsError

DIFFUSERS_DEFAULTS = {
    "pipeline": None, "dtype": "float32", "resolution": None, "eval_size": 256, "resize": "lanczos",
    "prompt": None, "negative_prompt": None, "scheduler": None, "scheduler_config": {}, "guidance": None,
    "true_cfg_scale": None, "call_kwargs": {}, "load_kwargs": {}, "cpu_offload": "none", "vae_tiling": False,
    "vae_slicing": False, "attention_backend": None, "denoiser": None, "check_nfe": True,
}
PAPER = {"resolution": 1024, "dtype": "bfloat16", "scheduler": "FlowMatchEulerDiscreteScheduler",
         "prompt": "a photo of a {class_name}", "eval_size": 256, "resize": "lanczos"}

# adapter -> (defaults spelt out, a misspelt key with its intended key, a wrong-typed option)
CASES = {
    ToyFlow: ({"resolution": 16, "num_classes": 10, "init_seed": 0}, ("num_class", "num_classes"),
              {"resolution": "16"}),
    Samples: ({"resolution": None}, ("resoltion", "resolution"), {"resolution": 8.0}),
    DiffusersPipeline: (DIFFUSERS_DEFAULTS, ("vae_tilling", "vae_tiling"), {"eval_size": "256"}),
    SD35Large: ({**DIFFUSERS_DEFAULTS, **PAPER, "pipeline": "StableDiffusion3Pipeline"},
                ("dtpye", "dtype"), {"vae_slicing": 1}),
    Flux1Dev: ({**DIFFUSERS_DEFAULTS, **PAPER, "pipeline": "FluxPipeline"}, ("true_cfg_scal", "true_cfg_scale"),
               {"true_cfg_scale": "2.0"}),
}
NO_OPTIONS = [RealImages, MiniSiT, MiniMeanFlow, MiniDistill]


def _problem(cls, options) -> tuple[str, str]:
    with pytest.raises(OptionsError) as e:
        cls.validate_options(options)
    assert len(e.value.problems) >= 1
    return e.value.problems[0]


@pytest.mark.parametrize("cls", list(CASES) + NO_OPTIONS, ids=lambda c: c.__name__)
def test_every_adapter_is_a_generator_with_a_strict_options_model(cls):
    assert issubclass(cls, Generator)
    assert cls.Options.model_config["extra"] == "forbid" and cls.Options.model_config["strict"]


@pytest.mark.parametrize("cls", list(CASES), ids=lambda c: c.__name__)
def test_misspelt_and_wrong_typed_options_name_the_key(cls):
    _, (typo, meant), wrong = CASES[cls]
    key, msg = _problem(cls, {typo: 1})
    assert key == typo and f"did you mean {meant!r}" in msg
    (bad_key,) = wrong
    key, msg = _problem(cls, wrong)
    assert key == bad_key and "got" in msg


@pytest.mark.parametrize("cls", list(CASES), ids=lambda c: c.__name__)
def test_defaults_spelt_out_validate_like_no_options(cls):
    spelt, _, _ = CASES[cls]
    empty = cls.validate_options({})
    assert empty == cls.validate_options(spelt)
    assert cls.validate_options(empty) == empty                  # idempotent: what a cell stores validates to itself
    assert set(empty) == set(DIFFUSERS_DEFAULTS if issubclass(cls, DiffusersPipeline) else spelt)


@pytest.mark.parametrize("cls", NO_OPTIONS, ids=lambda c: c.__name__)
def test_adapters_without_options_refuse_any(cls):
    assert cls.Options is NoOptions
    assert cls.validate_options({}) == {} and cls.validate_options(None) == {}
    key, msg = _problem(cls, {"resolution": 16})
    assert key == "resolution" and "takes no options" in msg
    with pytest.raises(OptionsError, match="^resolution: unknown option"):   # load refuses it too (was ignored)
        cls().load(ModelSpec("m", "a", options={"resolution": 16}), torch.device("cpu"))


def test_diffusers_option_semantics_survive_the_model():
    """The checks the adapter made by hand: sizes, templates, reserved call arguments, safetensors only, finite
    true-CFG scale, the nested guidance mapping (its own did-you-mean), and resolution given as one int."""
    v = DiffusersPipeline.validate_options
    assert v({"resolution": 64})["resolution"] == [64, 64]
    assert v({"true_cfg_scale": 2})["true_cfg_scale"] == 2.0
    assert v({"guidance": {"kind": "none", "kwarg": "x"}})["guidance"] == {
        "kwarg": None, "kind": "none", "true_cfg_kwarg": None, "true_cfg_negative": False}
    assert v({"guidance": {"kind": "embedded"}})["guidance"]["kwarg"] == "guidance_scale"
    bad = {
        "resolution": [0, 64], "prompt": "no class", "negative_prompt": "", "eval_size": 0, "dtype": "fp16",
        "call_kwargs": {"height": 3}, "load_kwargs": {"use_safetensors": False}, "true_cfg_scale": float("inf"),
        "cpu_offload": "yes", "resize": "cubic", "check_nfe": "true", "scheduler_config": [1],
    }
    for key, value in bad.items():
        assert _problem(DiffusersPipeline, {key: value})[0] == key, key
    assert _problem(DiffusersPipeline, {"guidance": {"knd": "none"}}) == ("guidance.knd",
                                                                           "unknown option (did you mean 'kind'?)")
    assert _problem(DiffusersPipeline, {"guidance": {"kind": "cfg"}})[0] == "guidance.kind"


def test_toy_applies_its_options_and_refuses_bad_ones():
    g = ToyFlow()
    g.load(ModelSpec("t", "toy", options={"resolution": 8, "init_seed": 3}), torch.device("cpu"))
    img = g.generate(torch.tensor([0, 1]), torch.tensor([0, 1]), SamplerSettings(steps=1, cfg=1.0))
    assert tuple(img.shape) == (2, 8, 8, 3)
    assert g.weights_id(ModelSpec("t", "toy", options={"init_seed": 3})) == "toy-init:3"
    assert ToyFlow().weights_id(ModelSpec("t", "toy")) == "toy-init:0"
    with pytest.raises(OptionsError, match="^init_seed: "):
        ToyFlow().load(ModelSpec("t", "toy", options={"init_seed": "3"}), torch.device("cpu"))


def test_samples_resolution_option_resizes_a_folder(tmp_path):
    for i in range(3):
        Image.fromarray(np.full((12, 12, 3), 40 * i, np.uint8)).save(tmp_path / f"{i}.png")
    g = Samples()
    g.load(ModelSpec("s", "samples", str(tmp_path), {"resolution": 6}), torch.device("cpu"))
    assert tuple(g.images.shape) == (3, 6, 6, 3)
    g.load(ModelSpec("s", "samples", str(tmp_path)), torch.device("cpu"))
    assert tuple(g.images.shape) == (3, 12, 12, 3)


class _Set(Dataset):
    """A two-image dataset; ``holdout`` returns a constant image per row."""
    name, class_names, prompt_template = "tiny", ["a", "b"], "{class_name}"

    def __len__(self):
        return 2

    def fingerprint(self):
        return "tiny"

    def labels(self):
        return torch.tensor([0, 1])

    def reference_batches(self, batch_size):
        yield torch.zeros(2, 4, 4, 3, dtype=torch.uint8), self.labels()


class _WithHoldout(_Set):
    has_holdout = True

    def holdout(self, labels, sample_ids):
        return torch.full((len(labels), 4, 4, 3), 7, dtype=torch.uint8)


def test_real_draws_from_a_dataset_that_declares_a_holdout():
    r = RealImages()
    r.load(ModelSpec("r", "real"), torch.device("cpu"))
    with pytest.raises(ValueError, match="dataset 'tiny' has no holdout set"):
        r.bind_dataset(_Set())
    with pytest.raises(RuntimeError, match="no dataset bound"):
        r.generate(torch.tensor([0]), torch.tensor([0]), SamplerSettings(steps=0, cfg=1.0))
    r.bind_dataset(_WithHoldout())
    out = r.generate(torch.tensor([0, 1]), torch.tensor([0, 1]), SamplerSettings(steps=0, cfg=1.0))
    assert tuple(out.shape) == (2, 4, 4, 3) and int(out[0, 0, 0, 0]) == 7
