"""SiT adapter and the shared DiT backbone: shapes, checkpoint key layout, determinism, NFE, CFG semantics, loading."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
import torch

from bench import noise, registry
from bench.models.base import ModelSpec, SamplerSettings
from bench.models.sit import INIT_STREAM, SiT
from bench.nets.dit import DiT, DiTConfig, sincos_pos_embed_2d
from bench.options import OptionsError
from bench.timing import NFECounter

FIXTURE = Path(__file__).parent / "fixtures" / "keys" / "sit-xl-2-256.json"
TINY = DiTConfig(input_size=8, patch_size=2, in_channels=4, hidden_size=32, depth=2, num_heads=4, num_classes=10)


def tiny_net(seed: int = 0, **overrides) -> DiT:
    torch.manual_seed(seed)
    # PyTorch's default init (not the references' adaLN-zero init, which would make the output ignore t and y)
    return DiT(DiTConfig(**{**TINY.__dict__, **overrides})).eval()


def tiny_sit(**options) -> SiT:
    return SiT.from_network(tiny_net(), decoder=None, options=options)


def settings(steps=3, cfg=1.0, solver="euler", seed=7) -> SamplerSettings:
    return SamplerSettings(steps=steps, cfg=cfg, solver=solver, seed=seed)


LABELS = torch.tensor([3, 0, 9, 5, 1, 3])
IDS = torch.tensor([10, 11, 12, 13, 14, 15])


def test_backbone_output_shapes_and_sigma_split():
    net = tiny_net()
    x, t, y = torch.randn(5, 4, 8, 8), torch.rand(5), torch.tensor([0, 1, 2, 9, 10])   # 10 = null class
    out = net(x, t, y)
    assert out.shape == (5, 8, 8, 8)                       # learned sigma: 2 * in_channels
    assert net.split_sigma(out).shape == (5, 4, 8, 8)
    assert net.null_label == 10 and net.y_embedder.embedding_table.weight.shape == (11, 32)
    assert tiny_net(learn_sigma=False)(x, t, y).shape == (5, 4, 8, 8)
    # the output depends on t and y (conditioning reaches the trunk)
    assert not torch.allclose(out, net(x, t * 0.5, y))
    assert not torch.allclose(out, net(x, t, torch.tensor([1, 1, 2, 9, 10])))


def test_sincos_pos_embed_layout():
    pe = sincos_pos_embed_2d(8, 4)                           # 16 tokens of a 4x4 grid, 8 channels
    assert pe.shape == (16, 8) and pe.dtype == torch.float32
    zero = torch.cat([torch.zeros(2), torch.ones(2)])
    assert torch.equal(pe[0], torch.cat([zero, zero]))       # position (0, 0): sin 0, cos 0 in both halves
    omega = torch.tensor([1.0, 1e-2])                        # 10000 ** (-i / 2), i = 0, 1
    # token 1 is column 1, row 0: the first half encodes the column
    assert torch.allclose(pe[1, :4], torch.cat([torch.sin(omega), torch.cos(omega)]))
    assert torch.equal(pe[1, 4:], zero)
    assert torch.allclose(pe[4, 4:], torch.cat([torch.sin(omega), torch.cos(omega)]))   # token 4: row 1


def test_xl2_on_meta_matches_the_official_checkpoint_keys():
    ref = json.loads(FIXTURE.read_text())["tensors"]
    with torch.device("meta"):
        net = DiT(DiTConfig.of("SiT-XL/2"))
    ours = {k: list(v.shape) for k, v in net.state_dict().items()}
    assert list(ours) == list(ref)                           # same names, same order
    assert ours == ref                                       # same shapes
    assert sum(math.prod(s) for s in ours.values()) == 675_129_632


@pytest.mark.parametrize("size,depth,hidden,heads,patch", [("B/2", 12, 768, 12, 2), ("L/2", 24, 1024, 16, 2),
                                                           ("S/4", 12, 384, 6, 4)])
def test_named_sizes(size, depth, hidden, heads, patch):
    cfg = DiTConfig.of(size)
    assert (cfg.depth, cfg.hidden_size, cfg.num_heads, cfg.patch_size) == (depth, hidden, heads, patch)
    with torch.device("meta"):
        net = DiT(cfg)
    assert net.pos_embed.shape == (1, (32 // patch) ** 2, hidden)
    assert net.final_layer.linear.weight.shape == (patch * patch * 8, hidden)
    with pytest.raises(ValueError, match="unknown DiT/SiT size 'XXL/2'"):
        DiTConfig.of("XXL/2")


@pytest.mark.parametrize("solver,cfg", [("euler", 1.0), ("euler", 4.0), ("heun", 2.5), ("sde", 1.5)])
def test_samples_do_not_depend_on_batch_composition(solver, cfg):
    sit = tiny_sit()
    s = settings(steps=3, cfg=cfg, solver=solver)
    whole = sit.sample_latents(LABELS, IDS, s)
    assert whole.shape == (6, 4, 8, 8) and torch.isfinite(whole).all()
    parts = torch.cat([sit.sample_latents(LABELS[:2], IDS[:2], s), sit.sample_latents(LABELS[2:], IDS[2:], s)])
    perm = torch.tensor([5, 2, 0, 4, 1, 3])
    shuffled = sit.sample_latents(LABELS[perm], IDS[perm], s)
    torch.testing.assert_close(parts, whole, rtol=0, atol=1e-5)
    torch.testing.assert_close(shuffled, whole[perm], rtol=0, atol=1e-5)
    # and the seed matters
    assert not torch.allclose(sit.sample_latents(LABELS, IDS, settings(3, cfg, solver, seed=8)), whole)


@pytest.mark.parametrize("solver,steps,cfg,declared", [("euler", 4, 1.0, 4), ("euler", 4, 3.0, 8),
                                                       ("heun", 3, 1.0, 6), ("heun", 3, 1.5, 12),
                                                       ("sde", 4, 1.0, 4), ("sde", 4, 2.0, 8)])
def test_nfe_counted_equals_declared(solver, steps, cfg, declared):
    sit = tiny_sit()
    s = settings(steps=steps, cfg=cfg, solver=solver)
    assert sit.nfe_per_image(s) == declared
    with NFECounter().watch(sit.networks()) as counter:
        sit.sample_latents(LABELS[:3], IDS[:3], s)
    assert counter.per_image(3) == declared


def test_cfg_one_is_the_unguided_path_and_equals_the_guidance_formula_at_one():
    sit = tiny_sit(cfg_channels="all")
    net = sit.networks()[0]
    s1 = settings(steps=4, cfg=1.0)
    got = sit.sample_latents(LABELS, IDS, s1)
    # independent reimplementation: Euler from t = 0 (noise) to t = 1 (data) with the first 4 output channels
    x = noise.gaussian(s1.seed, IDS, (4, 8, 8), stream=INIT_STREAM)
    ts = torch.linspace(0, 1, 5)
    with torch.no_grad():
        for k in range(4):
            x = x + (ts[k + 1] - ts[k]) * net(x, torch.full((6,), float(ts[k])), LABELS)[:, :4]
    torch.testing.assert_close(got, x, rtol=0, atol=1e-5)
    # the guided path (2 NFE) at a scale that rounds to 1 gives the same samples
    guided = sit.sample_latents(LABELS, IDS, settings(steps=4, cfg=1.0 + 1e-9))
    torch.testing.assert_close(guided, got, rtol=0, atol=1e-4)
    assert sit.nfe_per_image(s1) == 4 and sit.nfe_per_image(settings(steps=4, cfg=1.0 + 1e-9)) == 8
    # and guidance does change the samples
    assert (sit.sample_latents(LABELS, IDS, settings(steps=4, cfg=4.0)) - got).abs().max() > 1e-2


@pytest.mark.parametrize("channels,guided", [(3, 3), ("all", 4)])
def test_cfg_channels(channels, guided):
    sit = tiny_sit(cfg_channels=channels)
    net = sit.networks()[0]
    x, t, y, w = torch.randn(3, 4, 8, 8), torch.full((3,), 0.3), torch.tensor([1, 2, 3]), 4.0
    with torch.no_grad():
        v = sit.velocity_fn(y, w)(x, t)
        cond = net(x, t, y)[:, :4]
        uncond = net(x, t, torch.full_like(y, 10))[:, :4]
    cfg_v = uncond + w * (cond - uncond)
    torch.testing.assert_close(v[:, :guided], cfg_v[:, :guided], rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(v[:, guided:], cond[:, guided:], rtol=1e-5, atol=1e-5)   # the rest: conditional
    assert (cfg_v - cond).abs().max() > 1e-2


def test_dopri5_per_sample_is_batch_independent_and_counted():
    sit = tiny_sit(rtol=1e-2, atol=1e-3)
    s = settings(steps=1, cfg=2.0, solver="dopri5")
    assert math.isnan(sit.nfe_per_image(s))
    with NFECounter().watch(sit.networks()) as counter:
        both = sit.sample_latents(LABELS[:2], IDS[:2], s)
    alone = sit.sample_latents(LABELS[1:2], IDS[1:2], s)
    torch.testing.assert_close(both[1:], alone, rtol=0, atol=1e-5)
    nfe = counter.per_image(2)
    assert nfe >= 2 * 6 and nfe % 2 == 0            # at least one dopri5 step (6 stages), 2 rows per guided call
    # dopri5 at tight tolerance and many-step Heun agree: the same ODE
    tight = tiny_sit(rtol=1e-4, atol=1e-5).sample_latents(LABELS[:2], IDS[:2], s)
    heun = sit.sample_latents(LABELS[:2], IDS[:2], settings(steps=16, cfg=2.0, solver="heun"))
    torch.testing.assert_close(tight, heun, rtol=0, atol=1e-3)


def test_bad_settings_and_options_fail_clearly():
    sit = tiny_sit()
    with pytest.raises(ValueError, match="unknown solver 'rk4'"):
        sit.sample_latents(LABELS, IDS, settings(solver="rk4"))
    with pytest.raises(ValueError, match="steps must be an integer >= 1"):
        sit.nfe_per_image(settings(steps=0))
    with pytest.raises(ValueError, match="sde solver needs steps >= 2"):
        sit.nfe_per_image(settings(steps=1, solver="sde"))
    with pytest.raises(ValueError, match="labels must be in 0..9"):
        sit.sample_latents(torch.tensor([10]), torch.tensor([0]), settings())
    with pytest.raises(OptionsError, match="cfg_chanels: unknown option .did you mean 'cfg_channels'"):
        tiny_sit(cfg_chanels=3)
    with pytest.raises(OptionsError, match="cfg_channels: Input should be 3 or 'all'"):
        tiny_sit(cfg_channels=4)


SIT_DEFAULTS = {"vae": "ft-mse", "vae_batch_size": 64, "cfg_channels": 3, "atol": 1e-6, "rtol": 1e-3,
                "dopri5_per_sample": True, "sde_diffusion_norm": 1.0, "sde_last_step_size": 0.04, "num_heads": None,
                "weights_file": "SiT-XL-2-256.pt"}


def test_options_are_typed_with_defaults_and_did_you_mean():
    assert SiT.validate_options({}) == SiT.validate_options(SIT_DEFAULTS) == SIT_DEFAULTS
    with pytest.raises(OptionsError) as e:
        SiT.validate_options({"sde_last_stepsize": 0.1})
    assert e.value.problems == [("sde_last_stepsize", "unknown option (did you mean 'sde_last_step_size'?)")]
    for key, bad in [("atol", "1e-6"), ("dopri5_per_sample", 1), ("num_heads", 4.0), ("cfg_channels", "3")]:
        with pytest.raises(OptionsError) as e:
            SiT.validate_options({key: bad})                       # strict types: no coercion
        assert [k for k, _ in e.value.problems] == [key], (key, e.value.problems)
    for key, bad in [("atol", 0.0), ("rtol", -1.0), ("sde_diffusion_norm", float("nan")), ("sde_last_step_size", 1.0),
                     ("num_heads", 0), ("vae_batch_size", 0)]:
        with pytest.raises(OptionsError) as e:
            SiT.validate_options({key: bad})                       # values out of range
        assert [k for k, _ in e.value.problems] == [key], (key, e.value.problems)
    assert SiT.validate_options({"atol": 1, "cfg_channels": "all"})["atol"] == 1.0    # an int is a number


def _tiny_vae(folder: Path) -> None:
    from diffusers import AutoencoderKL
    torch.manual_seed(0)
    AutoencoderKL(in_channels=3, out_channels=3, down_block_types=("DownEncoderBlock2D",),
                  up_block_types=("UpDecoderBlock2D",), block_out_channels=(8,), layers_per_block=1,
                  latent_channels=4, norm_num_groups=4, sample_size=8).save_pretrained(folder)


def test_load_official_layout_checkpoint_and_generate(tmp_path, monkeypatch):
    pytest.importorskip("diffusers")
    net = tiny_net(seed=3)
    ckpt = tmp_path / "ckpt" / "SiT-XL-2-256.pt"
    ckpt.parent.mkdir()
    torch.save({"ema": net.state_dict(), "model": {}, "args": None}, ckpt)   # a train.py checkpoint: "ema" wins
    _tiny_vae(tmp_path / "vae")
    monkeypatch.setenv("SIT_WEIGHTS", str(ckpt.parent))                     # the default $SIT_WEIGHTS, a folder
    spec = ModelSpec(id="sit", adapter="sit", weights=None, options={"vae": str(tmp_path / "vae"), "num_heads": 4})
    sit = registry.resolve("model adapter", "sit")()
    assert sit.weights_id(spec).startswith("sha256:")
    sit.load(spec, torch.device("cpu"))
    assert sit.networks()[0].config == net.config                          # size read from the checkpoint
    s = settings(steps=2, cfg=1.5)
    img = sit.generate(LABELS[:3], IDS[:3], s)
    assert img.shape == (3, 8, 8, 3) and img.dtype == torch.uint8
    ref = SiT.from_network(net, decoder=None).sample_latents(LABELS[:3], IDS[:3], s)
    torch.testing.assert_close(sit.sample_latents(LABELS[:3], IDS[:3], s), ref, rtol=0, atol=0)
    # safetensors works too; a file that is not a SiT state dict is refused by name
    from safetensors.torch import save_file
    st = tmp_path / "sit.safetensors"
    save_file({k: v.contiguous() for k, v in net.state_dict().items()}, str(st))
    sit.load(ModelSpec(id="sit", adapter="sit", weights=str(st), options=spec.options), "cpu")
    torch.testing.assert_close(sit.sample_latents(LABELS[:3], IDS[:3], s), ref, rtol=0, atol=0)
    bad = tmp_path / "bad.pt"
    torch.save({"foo": torch.zeros(1)}, bad)
    with pytest.raises(ValueError, match="bad.pt: not a SiT/DiT checkpoint"):
        sit.load(ModelSpec(id="sit", adapter="sit", weights=str(bad)), "cpu")


def test_missing_weights_name_the_variable(monkeypatch):
    from bench.hub import WeightsNotFound
    monkeypatch.delenv("SIT_WEIGHTS", raising=False)
    with pytest.raises(WeightsNotFound, match="SIT_WEIGHTS is not set"):
        SiT().load(ModelSpec(id="sit", adapter="sit"), torch.device("cpu"))
