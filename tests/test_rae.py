"""RAE adapter: official parameter layout at full size (meta device), tiny networks for sampling, NFE, loading."""

import json
import math
from pathlib import Path

import pytest
import torch

from bench.models.base import ModelSpec, SamplerSettings
from bench.models.rae import FILES, RAE, RAEEncoder, time_grid
from bench.nets.rae import DECODER_XL, DITDH_S, DITDH_XL, DecoderConfig, DiTDH, DiTDHConfig, RAEDecoder
from bench.options import OptionsError
from bench.timing import NFECounter

KEYS = Path(__file__).parent / "fixtures" / "keys"
C, G = 64, 8          # tiny latent 64 x 8 x 8: time shift sqrt(64 * 64 / 4096) = 1
SCALE = 0.1          # random weight scale (label table: 1): outputs of order 1
S2 = {"input_size": G, "in_channels": C, "hidden_size": [32, 48], "depth": [1, 1], "num_heads": [2, 2],
      "num_classes": 10}
GUIDE = {**S2, "hidden_size": [16, 48], "num_heads": [1, 2]}
DEC = {"latent_dim": C, "hidden_size": 32, "num_layers": 1, "num_heads": 2, "intermediate_size": 64,
       "patch_size": 2, "grid": G}


def _layout(module: torch.nn.Module) -> dict[str, list[int]]:
    return {k: list(v.shape) for k, v in module.state_dict().items()}


@pytest.mark.parametrize("fixture, build", [
    ("rae-ditdh-xl-dinov2b-256.json", lambda: DiTDH(DITDH_XL)),
    ("rae-ditdh-s-guide-256.json", lambda: DiTDH(DITDH_S)),
    ("rae-decoder-vitxl-dinov2b.json", lambda: RAEDecoder(DECODER_XL)),
])
def test_full_size_layout_matches_official_checkpoint(fixture, build):
    expected = json.loads((KEYS / fixture).read_text())["tensors"]
    with torch.device("meta"):
        net = build()
    got = _layout(net)
    assert sorted(set(expected) - set(got)) == [] and sorted(set(got) - set(expected)) == []
    assert {k: v for k, v in got.items() if expected[k] != v} == {}


def _random(net: torch.nn.Module, seed: int) -> torch.nn.Module:
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, p in net.named_parameters():   # the released init zeroes adaLN/final layers: randomise all
            if not name.endswith("t_embedder.W"):
                std = 1.0 if "embedding_table" in name else SCALE
                p.copy_(torch.randn(p.shape, generator=g) * std + (1.0 if "norm" in name else 0.0))
    return net


def _nets(seed: int = 0):
    stage2 = _random(DiTDH(DiTDHConfig.from_dict(S2)), seed)
    guide = _random(DiTDH(DiTDHConfig.from_dict(GUIDE)), seed + 1)
    dec = _random(RAEDecoder(DecoderConfig.from_dict(DEC)), seed + 2)
    g = torch.Generator().manual_seed(seed + 3)
    return stage2, guide, dec, torch.randn(C, G, G, generator=g) * 0.1, torch.rand(C, G, G, generator=g) + 0.5


@pytest.fixture(scope="module")
def nets():
    return _nets()


def _gen(nets, **kw) -> RAE:
    stage2, guide, dec, mean, var = nets
    return RAE().build(stage2, dec, mean, var, guide=guide, **kw)


def test_tiny_shapes_and_velocity_depends_on_inputs(nets):
    stage2, _, dec, _, _ = nets
    x = torch.randn(3, C, G, G)
    v = stage2(x, torch.tensor([0.1, 0.5, 0.9]), torch.tensor([0, 1, 10]))
    assert v.shape == x.shape
    v2 = stage2(x, torch.tensor([0.1, 0.5, 0.9]), torch.tensor([2, 1, 10]))
    assert not torch.allclose(v[0], v2[0]) and torch.allclose(v[1:], v2[1:], atol=1e-6)
    assert dec(torch.randn(2, G * G, C)).shape == (2, 3, 2 * G, 2 * G)


def test_time_grid_is_the_reference_shifted_grid():
    a = math.sqrt(768 * 16 * 16 / 4096)
    ts = time_grid(4, a)
    tau = [1 - k * (1 - 1 / 1000) / 4 for k in range(5)]
    assert ts.tolist() == pytest.approx([a * u / (1 + (a - 1) * u) for u in tau], abs=1e-6)
    assert ts[0] == 1 and 0 < ts[-1] < 0.01


@pytest.mark.parametrize("guidance, cfg, interval", [("cfg", 1.0, (0, 1)), ("cfg", 2.5, (0, 1)),
                                                     ("cfg", 2.5, (0.3, 0.8)), ("autoguidance", 1.42, (0, 1))])
def test_nfe_counted_equals_declared(nets, guidance, cfg, interval):
    gen = _gen(nets, guidance=guidance, guidance_interval=interval)
    s = SamplerSettings(steps=5, cfg=cfg, seed=1)
    counter = NFECounter()
    with counter.watch(gen.networks()):
        img = gen.generate(torch.tensor([1, 2, 3]), torch.tensor([0, 1, 2]), s)
    assert img.shape == (3, 2 * G, 2 * G, 3) and img.dtype == torch.uint8
    assert counter.per_image(3) == gen.nfe_per_image(s)
    expected = 5 if cfg == 1 else (10 if interval == (0, 1) else None)
    if expected is not None:
        assert gen.nfe_per_image(s) == expected
    else:
        assert 5 < gen.nfe_per_image(s) < 10


def test_samples_depend_only_on_seed_and_id(nets):
    gen = _gen(nets)
    s = SamplerSettings(steps=3, cfg=2.0, seed=7)
    labels, ids = torch.tensor([4, 5, 6, 7]), torch.tensor([10, 11, 12, 13])
    z_all = gen.sample_latents(labels, ids, s)
    z_parts = torch.cat([gen.sample_latents(labels[:1], ids[:1], s), gen.sample_latents(labels[1:], ids[1:], s)])
    assert torch.allclose(z_all, z_parts, rtol=1e-4, atol=1e-3)
    img_all = gen.generate(labels, ids, s).int()
    img_parts = torch.cat([gen.generate(labels[2:], ids[2:], s), gen.generate(labels[:2], ids[:2], s)]).int()
    img_parts = torch.cat([img_parts[2:], img_parts[:2]])
    assert (img_all - img_parts).abs().max() <= 1
    assert not torch.equal(z_all[0], z_all[1])
    other = gen.sample_latents(labels, ids, SamplerSettings(steps=3, cfg=2.0, seed=8))
    assert not torch.allclose(other, z_all)


def test_guidance_changes_samples_and_bad_settings_fail(nets):
    gen = _gen(nets)
    labels, ids = torch.tensor([1, 2]), torch.tensor([0, 1])
    plain = gen.sample_latents(labels, ids, SamplerSettings(steps=2, cfg=1.0))
    guided = gen.sample_latents(labels, ids, SamplerSettings(steps=2, cfg=4.0))
    assert not torch.allclose(plain, guided)
    with pytest.raises(ValueError, match="solver"):
        gen.nfe_per_image(SamplerSettings(steps=2, cfg=1.0, solver="heun"))
    with pytest.raises(ValueError, match="steps"):
        gen.generate(labels, ids, SamplerSettings(steps=0, cfg=1.0))
    with pytest.raises(ValueError, match="labels"):
        gen.generate(torch.tensor([10, 1]), ids, SamplerSettings(steps=1, cfg=1.0))
    with pytest.raises(ValueError, match="guidance_interval"):
        _gen(nets, guidance_interval=(0.8, 0.2))


def _save_layout(root: Path, nets, fmt: str = "pt") -> None:
    stage2, guide, dec, mean, var = nets
    files = {"DiTs/Dinov2/wReg_base/ImageNet256/DiTDH-XL/stage2_model.pt": {"ema": stage2.state_dict()},
             "DiTs/Dinov2/wReg_base/ImageNet256/DiTDH-S_ep14/stage2_model.pt": guide.state_dict(),
             "decoders/dinov2/wReg_base/ViTXL_n08/model.pt": {**dec.state_dict(), "extra.unused": torch.zeros(1)},
             "stats/dinov2/wReg_base/imagenet1k/stat.pt": {"mean": mean[None], "var": var[None]}}
    for rel, obj in files.items():
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        torch.save(obj, root / rel)


def test_load_official_layout_from_folder(tmp_path, nets):
    _save_layout(tmp_path, nets)
    opts = {"stage2_arch": S2, "decoder_arch": DEC, "guide_arch": GUIDE, "guidance": "autoguidance"}
    gen = RAE()
    gen.load(ModelSpec(id="rae", adapter="rae", weights=str(tmp_path), options=opts), torch.device("cpu"))
    s = SamplerSettings(steps=2, cfg=1.5, seed=3)
    labels, ids = torch.tensor([0, 9]), torch.tensor([5, 6])
    ref = _gen(nets, guidance="autoguidance")
    assert torch.equal(gen.generate(labels, ids, s), ref.generate(labels, ids, s))
    wid = gen.weights_id(ModelSpec(id="rae", adapter="rae", weights=str(tmp_path), options=opts))
    assert wid.startswith("sha256:")
    assert wid != gen.weights_id(ModelSpec(id="rae", adapter="rae", weights=str(tmp_path),
                                           options={**opts, "guidance": "cfg"}))


def test_load_errors_name_the_problem(tmp_path, nets):
    _save_layout(tmp_path, nets)
    with pytest.raises(ValueError, match="unknown option"):
        RAE().load(ModelSpec(id="r", adapter="rae", weights=str(tmp_path), options={"stage_2": 1}), "cpu")
    bad = {**S2, "hidden_size": [32, 64]}
    with pytest.raises(ValueError, match="stage2_model.pt does not fit"):
        RAE().load(ModelSpec(id="r", adapter="rae", weights=str(tmp_path),
                             options={"stage2_arch": bad, "decoder_arch": DEC}), "cpu")
    with pytest.raises(FileNotFoundError, match="missing.pt"):
        RAE().load(ModelSpec(id="r", adapter="rae", weights=str(tmp_path),
                             options={"stage2_arch": S2, "decoder_arch": DEC, "stats": "missing.pt"}), "cpu")


RAE_DEFAULTS = {**FILES, "guidance": "cfg", "guidance_interval": [0.0, 1.0], "stage2_arch": None,
                "decoder_arch": None, "guide_arch": None, "decode_batch": 64}


def test_options_are_typed_with_defaults_and_did_you_mean():
    assert RAE.validate_options({}) == RAE.validate_options(RAE_DEFAULTS) == RAE_DEFAULTS
    assert FILES["stage2"].endswith("DiTDH-XL/stage2_model.pt")       # the released file names, spelt out
    with pytest.raises(OptionsError) as e:
        RAE.validate_options({"guidence": "cfg"})
    assert e.value.problems == [("guidence", "unknown option (did you mean 'guidance'?)")]
    for key, bad in [("decode_batch", "64"), ("guidance", "autoguide"), ("guidance_interval", [0.8, 0.2]),
                     ("guidance_interval", [-0.1, 0.5]), ("stage2", ""), ("stats", 3), ("decode_batch", 0)]:
        with pytest.raises(OptionsError) as e:
            RAE.validate_options({key: bad})
        assert [k for k, _ in e.value.problems] == [key], (key, e.value.problems)
    full = RAE.validate_options({"stage2_arch": S2})["stage2_arch"]
    assert full.items() >= S2.items() and full["mlp_ratio"] == 4.0          # filled in, and idempotent:
    assert RAE.validate_options({"stage2_arch": full})["stage2_arch"] == full
    for key, bad in [("stage2_arch", {**S2, "hiden_size": 32}), ("guide_arch", {**GUIDE, "depth": [1, 1, 1]}),
                     ("decoder_arch", {**DEC, "grid": "8"}), ("decoder_arch", "XL")]:
        with pytest.raises(OptionsError) as e:
            RAE.validate_options({key: bad})
        assert [k for k, _ in e.value.problems][:1] == [key], (key, e.value.problems)
    with pytest.raises(OptionsError, match="did you mean 'hidden_size'"):
        RAE.validate_options({"stage2_arch": {**S2, "hiden_size": 32}})


def test_encoder_gives_normalised_latents():
    from transformers import Dinov2WithRegistersConfig, Dinov2WithRegistersModel
    cfg = Dinov2WithRegistersConfig(hidden_size=16, num_hidden_layers=1, num_attention_heads=2, intermediate_size=32,
                                    patch_size=4, image_size=16, num_register_tokens=4)
    torch.manual_seed(0)
    enc = RAEEncoder(Dinov2WithRegistersModel(cfg), torch.full((16, 4, 4), 0.5), torch.full((16, 4, 4), 4.0),
                     input_size=16)
    z = enc.encode(torch.rand(2, 3, 20, 20))
    assert z.shape == (2, 16, 4, 4)
    # the final LayerNorm has no affine: each token's raw features have mean 0 and variance 1 before normalising
    raw = z * math.sqrt(4.0 + 1e-5) + 0.5
    assert torch.allclose(raw.mean(1), torch.zeros(2, 4, 4), atol=1e-4)


@pytest.mark.slow
def test_suite_runs_rae_end_to_end(tmp_path, nets, toy_suite_text):
    import bench
    from bench.runner import Runner
    from bench.suite import Suite
    _save_layout(tmp_path / "w", nets)
    text = toy_suite_text(n=2, steps="[1, 3]", cfg="[1.0, 1.5]").replace(
        "    adapter: toy\n",
        f"    adapter: rae\n    weights: {tmp_path / 'w'}\n"
        f"    options: {{stage2_arch: {json.dumps(S2)}, decoder_arch: {json.dumps(DEC)}}}\n")
    summary = Runner(Suite.parse(text, "rae.yaml"), db=tmp_path / "b.duckdb", progress=False).run()
    assert (summary.ran, summary.failed) == (4, 0)
    df = bench.load(tmp_path / "b.duckdb").sort_values(["steps", "cfg"])
    assert list(df["nfe"]) == [1.0, 2.0, 3.0, 6.0]
    assert list(df["nfe"]) == list(df["nfe_declared"])
