"""Every built-in metric declares each value its result() returns (`Metric.output` never raises for them), its
declared exact outputs are all produced with every option on, and its Options model keeps the names, defaults
and choices of the ``defaults`` dict it replaced (copied below as data)."""

from __future__ import annotations

import pytest
import torch

from bench import registry
from bench.data.base import prompts_for
from bench.data.mini_captions import MiniCaptions
from bench.metrics.base import Metric, MetricError
from bench.mini import data
from bench.options import OptionsError
from bench.outputs import find
from tests.tiny_models import save_tiny_clip, save_tiny_dinov2

CPU = torch.device("cpu")

# The ``defaults`` dicts of the metrics before Options models (git 8fd1e7e), verbatim.
OLD_DEFAULTS = {
    "fid_is_kid": {
        "feature_extractor": "inception-v3-compat", "feature_extractor_weights_path": None,
        "feature_layer_fid": None, "feature_layer_isc": None, "isc_splits": 10, "isc_seed": 2020,
        "kid_subsets": 100, "kid_subset_size": 1000, "kid_seed": 2020, "kid_kernel_poly_degree": 3,
        "kid_kernel_poly_gamma": None, "kid_kernel_poly_coef0": 1, "batch_size": 64,
        "prc": True, "prc_neighborhood": 3, "prc_batch_size": 10000,
        "bootstrap": 0, "bootstrap_seed": 2020, "bootstrap_level": 0.95},
    "clip_score": {"backend": "transformers", "model": "openai/clip-vit-base-patch16", "processor": None,
                   "pretrained": None, "clamp": False, "batch_size": 64, "per_class": True,
                   "bootstrap": 1000, "bootstrap_seed": 2020, "bootstrap_level": 0.95},
    "fd_dinov2": {"model": "facebook/dinov2-large", "batch_size": 64},
}
OLD_DEFAULTS["pickscore"] = {**OLD_DEFAULTS["clip_score"], "model": "yuvalkirstain/PickScore_v1",
                             "processor": "laion/CLIP-ViT-H-14-laion2B-s32B-b79K"}


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    """The toy networks the metrics run on: DINOv2, CLIP and ImageReward, random and tiny, saved once."""
    from tests.test_metrics_image_reward import save_tiny_image_reward
    weights, tokenizer, _ = save_tiny_image_reward(tmp_path_factory.mktemp("tiny-image-reward"))
    return {"dinov2": str(save_tiny_dinov2(tmp_path_factory.mktemp("tiny-dinov2"))),
            "clip": str(save_tiny_clip(tmp_path_factory.mktemp("tiny-clip"))),
            "image_reward": (str(weights), str(tokenizer))}


def tiny_options(name: str, tiny) -> dict:
    """Options that make the built-in metric ``name`` run on toy networks, every optional output on."""
    extras = {"density_coverage": True, "fd_inf": True}
    return {
        "fid_is_kid": {"feature_extractor": "toy-extractor", "kid_subset_size": 10, "kid_subsets": 5,
                       "batch_size": 16, "bootstrap": 3, "density_coverage": True, "fid_inf": True},
        "clip_score": {"backend": "mini", "model": "clip", "batch_size": 10, "bootstrap": 20},
        "pickscore": {"backend": "mini", "model": "pick", "batch_size": 10, "bootstrap": 20},
        "fd_dinov2": {"model": tiny["dinov2"], "batch_size": 8, **extras},
        "fd_dinov2_dgm": {"model": tiny["dinov2"], "batch_size": 8, **extras},
        "cmmd": {"model": tiny["clip"], "batch_size": 8},
        "image_reward": {"model": tiny["image_reward"][0], "tokenizer": tiny["image_reward"][1], "batch_size": 8,
                         "bootstrap": 20},
    }.get(name) or pytest.fail(f"metric {name!r}: add options that run it on toy networks to tiny_options")


# every metric stepbench ships (a plugin's are its own package's to test); a new one needs tiny_options above
BUILTIN = [n for n in registry.METRICS.names() if str(registry.METRICS.target(n)).startswith("bench.")]


@pytest.mark.parametrize("name", BUILTIN)
def test_every_returned_value_is_declared(name, tmp_path, tiny):
    cls = registry.resolve("metric", name)
    assert issubclass(cls, Metric) and cls.name == name
    m = cls(tiny_options(name, tiny), CPU, tmp_path)
    images, labels = data.batch("ood", 0, 20)
    images, labels = torch.from_numpy(images), torch.from_numpy(labels)
    ds = MiniCaptions("mini-captions", size=30)     # a caption set: the rows only caption sets get are made too
    acc = m.accumulator(ds)
    acc.update(images, labels, prompts_for(ds, labels, torch.arange(20)), torch.arange(20))
    got = acc.result()
    for value in got:
        assert cls.output(value).matches(value)                     # raises MetricError for an undeclared value
    exact = {o.name for o in cls.outputs if not o.name.endswith("/*")}
    assert exact == {v for v in got if "/" not in v}, "a declared output is never produced (stale declaration)"
    for family in (o for o in cls.outputs if o.name.endswith("/*")):
        assert any(family.matches(v) for v in got), family.name
    assert any(o.ranked for o in cls.outputs), "a metric declares at least one ranked output"
    assert len({o.name for o in cls.outputs}) == len(cls.outputs)


def test_an_undeclared_value_is_a_bug_of_its_metric():
    cls = registry.resolve("metric", "fid_is_kid")
    with pytest.raises(MetricError, match="returned 'fid_typo', which its outputs do not declare"):
        cls.output("fid_typo")


def test_the_loop_covers_every_shipped_metric():
    assert {"fid_is_kid", "clip_score", "pickscore", "fd_dinov2", "fd_dinov2_dgm", "cmmd", "image_reward"} <= \
        set(BUILTIN)


def test_declared_directions_and_labels():
    want = {"fid": (False, "FID"), "is": (True, "IS"), "kid": (False, "KID"), "precision": (True, "Precision"),
            "recall": (True, "Recall"), "clip_score": (True, "CLIP Score"), "pickscore": (True, "PickScore"),
            "fd_dinov2": (False, "FD-DINOv2"), "is_std": (None, "IS std"), "density": (True, "Density"),
            "coverage": (True, "Coverage"), "fid_inf": (False, "FID-inf"), "fid_ci_low": (None, "FID CI low"),
            "clip_score_ci_high": (None, "CLIP Score CI high"), "pickscore/class/7": (None, "PickScore per class")}
    classes = [registry.resolve("metric", n) for n in BUILTIN]
    for value, (higher, label) in want.items():
        (o,) = [find(cls.outputs, value) for cls in classes if find(cls.outputs, value)]   # declared once
        assert (o.higher_is_better, o.label) == (higher, label), value


@pytest.mark.parametrize("name", sorted(OLD_DEFAULTS))
def test_options_keep_the_old_names_defaults_and_types(name):
    cls = registry.resolve("metric", name)
    got = cls.validate_options({})
    assert got == OLD_DEFAULTS[name] and list(got) == list(OLD_DEFAULTS[name])
    assert cls.validate_options(got) == got                            # idempotent: keys do not drift
    with pytest.raises(OptionsError) as e:
        cls.validate_options({"batch_sise": 8})
    assert e.value.problems == [("batch_sise", "unknown option (did you mean 'batch_size'?)")]
    with pytest.raises(OptionsError, match="batch_size"):
        cls.validate_options({"batch_size": "8"})                       # strict: '8' is not 8


def test_choices_and_ranges_are_refused_at_validate():
    clip = registry.resolve("metric", "clip_score")
    with pytest.raises(OptionsError, match=r"backend: Input should be 'transformers', 'open_clip' or 'mini'"):
        clip.validate_options({"backend": "openclip"})
    for bad in ({"bootstrap": -1}, {"bootstrap_level": 1.0}, {"bootstrap": True}):
        for n in ("fid_is_kid", "clip_score", "pickscore"):
            with pytest.raises(OptionsError, match=next(iter(bad))):
                registry.resolve("metric", n).validate_options(bad)
    fid = registry.resolve("metric", "fid_is_kid")
    assert fid.validate_options({"kid_kernel_poly_gamma": 1})["kid_kernel_poly_gamma"] == 1.0   # int for a float
    with pytest.raises(MetricError, match="fid_is_kid: prc: Input should be a valid boolean"):
        fid({"prc": 1}, CPU, "/nonexistent")                           # the constructor validates too
