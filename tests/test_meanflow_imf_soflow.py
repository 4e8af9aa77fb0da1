"""MeanFlow, iMF and SoFlow adapters (bench/models/{meanflow,imf,soflow}.py) and `bench convert meanflow`.

Tiny random networks on CPU: output shapes, per-sample determinism across batch sizes, counted NFE equal to the
declared one, guidance semantics (MeanFlow inference CFG at scale 1 = unguided; iMF's w and interval inputs;
SoFlow's ignored cfg axis), checkpoint loading, the Flax converter, and the official parameter layouts (JSON
fixtures taken from the reference implementations) against our modules built at full size on the meta device.
"""

from __future__ import annotations

import json
from pathlib import Path

import msgpack
import numpy as np
import pytest
import torch

from bench import convert
from bench.cli import main
from bench.models.base import ModelSpec, SamplerSettings
from bench.models.imf import IMF
from bench.models.latent import LatentDecoder
from bench.models.meanflow import MeanFlow
from bench.models.soflow import SoFlow
from bench.nets import dit
from bench.nets.dit import config_from_option
from bench.nets.imf import IMFConfig, IMFNet
from bench.nets.meanflow import MF_SHAPES, MeanFlowDiT
from bench.nets.soflow import SOFLOW_SHAPES, SoFlowNet
from bench.options import OptionsError
from bench.timing import NFECounter

torch.set_num_threads(1)
FIXTURES = Path(__file__).parent / "fixtures" / "keys"
TINY_DIT = {"input_size": 8, "patch_size": 2, "hidden_size": 32, "depth": 2, "num_heads": 2, "num_classes": 10}
TINY_IMF = {"input_size": 8, "hidden_size": 32, "depth": 3, "aux_head_depth": 1, "num_heads": 2, "num_classes": 10}


def _randomize(net: torch.nn.Module, seed: int = 0) -> torch.nn.Module:
    """Random values everywhere (the references zero-initialise gates and output layers, which would hide bugs)."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, p in net.named_parameters():
            p.copy_(torch.randn(p.shape, generator=g) * (0.3 if "scale" in name else 0.2))
    return net


def _tiny_net(kind: str, seed: int = 0) -> torch.nn.Module:
    if kind == "meanflow":
        return _randomize(MeanFlowDiT(dit.DiTConfig(learn_sigma=False, **TINY_DIT)), seed)
    if kind == "soflow":
        return _randomize(SoFlowNet(dit.DiTConfig(learn_sigma=False, **TINY_DIT)), seed)
    return _randomize(IMFNet(IMFConfig(**TINY_IMF)), seed)


ADAPTERS = {"meanflow": MeanFlow, "imf": IMF, "soflow": SoFlow}


@pytest.fixture(scope="module")
def vae_dir(tmp_path_factory) -> Path:
    """A tiny random SD-VAE-shaped AutoencoderKL saved as a diffusers folder (no downsampling: 8x8 latents -> 8x8)."""
    from diffusers import AutoencoderKL
    torch.manual_seed(0)
    vae = AutoencoderKL(in_channels=3, out_channels=3, down_block_types=("DownEncoderBlock2D",),
                        up_block_types=("UpDecoderBlock2D",), block_out_channels=(8,), layers_per_block=1,
                        latent_channels=4, norm_num_groups=8, sample_size=8)
    out = tmp_path_factory.mktemp("vae")
    vae.save_pretrained(out)
    return out


@pytest.fixture(scope="module")
def gens(vae_dir):
    out = {}
    for kind, cls in ADAPTERS.items():
        g = cls()
        g.set_network(_tiny_net(kind))
        g.decoder = LatentDecoder.load(str(vae_dir), torch.device("cpu"), scale=g.vae_scale)
        out[kind] = g
    return out


# ------------------------------------------------------------------------------------------ shapes, determinism
@pytest.mark.parametrize("kind", list(ADAPTERS))
def test_network_and_image_shapes(gens, kind):
    g = gens[kind]
    x = torch.randn(3, 4, 8, 8)
    t, r, y = torch.tensor([1.0, 0.5, 0.2]), torch.tensor([0.0, 0.25, 0.1]), torch.tensor([0, 5, 9])
    with torch.no_grad():
        out = g.net(x, t - r, torch.full((3,), 2.0), torch.full((3,), 0.4), torch.full((3,), 0.65), y) \
            if kind == "imf" else g.net(x, t, t - r if kind == "meanflow" else r, y)
    assert out.shape == (3, 4, 8, 8) and torch.isfinite(out).all()
    img = g.generate(torch.tensor([1, 2]), torch.tensor([10, 11]), SamplerSettings(steps=2, cfg=2.0, seed=3))
    assert img.dtype == torch.uint8 and img.shape == (2, 8, 8, 3)


DET = [("meanflow", SamplerSettings(steps=3, cfg=1.0, seed=7)), ("meanflow", SamplerSettings(steps=2, cfg=3.0, seed=7)),
       ("imf", SamplerSettings(steps=1, cfg=6.0, seed=7)), ("imf", SamplerSettings(steps=3, cfg=1.0, seed=7)),
       ("soflow", SamplerSettings(steps=1, cfg=1.0, seed=7)), ("soflow", SamplerSettings(steps=3, cfg=2.0, seed=7))]


@pytest.mark.parametrize("kind,s", DET, ids=[f"{k}-{s.steps}-{s.cfg}" for k, s in DET])
def test_latents_depend_only_on_seed_and_sample_id(gens, kind, s):
    g = gens[kind]
    ids, labels = torch.tensor([3, 11, 42, 1000]), torch.tensor([0, 4, 9, 2])
    together = g.sample_latents(labels, ids, s)
    alone = torch.cat([g.sample_latents(labels[i:i + 1], ids[i:i + 1], s) for i in range(4)])
    shuffled = g.sample_latents(labels.flip(0), ids.flip(0), s).flip(0)
    # CPU matmuls may round differently with the batch size (and CFG amplifies it): equal to float32 noise, not
    # bit for bit
    torch.testing.assert_close(alone, together, rtol=1e-4, atol=1e-4)
    torch.testing.assert_close(shuffled, together, rtol=1e-4, atol=1e-4)
    other = g.sample_latents(labels, ids, SamplerSettings(steps=s.steps, cfg=s.cfg, seed=8))
    assert (other - together).abs().max() > 0.1


NFE = [("meanflow", SamplerSettings(steps=3, cfg=1.0), 3), ("meanflow", SamplerSettings(steps=3, cfg=2.5), 6),
       ("meanflow", SamplerSettings(steps=1, cfg=7.0), 2), ("imf", SamplerSettings(steps=3, cfg=6.0), 3),
       ("imf", SamplerSettings(steps=2, cfg=1.0), 2), ("soflow", SamplerSettings(steps=3, cfg=7.0), 3),
       ("soflow", SamplerSettings(steps=1, cfg=1.0), 1)]


@pytest.mark.parametrize("kind,s,expected", NFE, ids=[f"{k}-{s.steps}-{s.cfg}" for k, s, _ in NFE])
def test_counted_nfe_equals_declared(gens, kind, s, expected):
    g = gens[kind]
    assert g.nfe_per_image(s) == expected
    with NFECounter().watch(g.networks()) as c:
        g.sample_latents(torch.tensor([1, 2, 3]), torch.tensor([0, 1, 2]), s)
    assert c.per_image(3) == expected


# ------------------------------------------------------------------------------------------ guidance semantics
def test_meanflow_inference_cfg_scale_1_equals_unguided(gens):
    g = gens["meanflow"]
    z, labels = torch.randn(3, 4, 8, 8), torch.tensor([1, 5, 9])
    with torch.no_grad():
        plain = g._u(z, 1.0, 0.5, labels, 1.0)                   # one forward of B rows
        guided_1 = g._u_guided(z, 1.0, 0.5, labels, 1.0)         # the 2B-row CFG path at w = 1
        guided_3 = g._u_guided(z, 1.0, 0.5, labels, 3.0)
    torch.testing.assert_close(guided_1, plain, rtol=0, atol=1e-5)
    assert (guided_3 - plain).abs().max() > 1e-2                  # the null class (row 10 here) really is used
    a = g.sample_latents(labels, torch.tensor([0, 1, 2]), SamplerSettings(steps=2, cfg=1.0))
    b = g.sample_latents(labels, torch.tensor([0, 1, 2]), SamplerSettings(steps=2, cfg=3.0))
    assert (a - b).abs().max() > 1e-2


def test_imf_guidance_scale_and_interval_are_network_inputs(gens):
    g = gens["imf"]
    labels, ids = torch.tensor([1, 5]), torch.tensor([0, 1])
    w1 = g.sample_latents(labels, ids, SamplerSettings(steps=1, cfg=1.0))
    w6 = g.sample_latents(labels, ids, SamplerSettings(steps=1, cfg=6.0))
    assert (w1 - w6).abs().max() > 1e-3
    g.opts = IMF.parse_options({"interval": [0.1, 0.9]})
    try:
        other_interval = g.sample_latents(labels, ids, SamplerSettings(steps=1, cfg=6.0))
    finally:
        g.opts = IMF.parse_options({})
    assert (other_interval - w6).abs().max() > 1e-5            # a real input (an unused one would give exactly 0)
    with pytest.raises(ValueError, match="must be > 0"):
        g.nfe_per_image(SamplerSettings(steps=1, cfg=0.0))
    with pytest.raises(OptionsError, match="interval: must be .* 0 <= t_min <= t_max <= 1"):
        IMF.validate_options({"interval": [0.7, 0.2]})
    with pytest.raises(OptionsError, match="interval"):
        IMF.validate_options({"interval": [0.1, 0.5, 0.9]})
    assert IMF.parse_options({"interval": [0.5, 0.5]}).interval == [0.5, 0.5]     # a point is allowed


def test_soflow_declares_and_honours_its_ignored_cfg_axis(gens):
    g = gens["soflow"]
    assert SoFlow.cfg_ignored and not MeanFlow.cfg_ignored and not IMF.cfg_ignored
    labels, ids = torch.tensor([1, 5]), torch.tensor([0, 1])
    a = g.sample_latents(labels, ids, SamplerSettings(steps=2, cfg=1.0))
    b = g.sample_latents(labels, ids, SamplerSettings(steps=2, cfg=7.0))
    assert torch.equal(a, b)
    one = g.sample_latents(labels, ids, SamplerSettings(steps=1, cfg=1.0))
    assert (one - a).abs().max() > 1e-3                           # steps do matter (re-noising)


def test_validate_says_the_soflow_cfg_axis_is_ignored(tmp_path, capsys):
    suite = tmp_path / "s.yaml"
    suite.write_text("suite: t\ndatasets: [mini-val]\nmetrics: {}\nsamples: {plan: uniform, n: 10}\n"
                     "models:\n  - {id: so, adapter: soflow, weights: $NO_SUCH_VAR/x.pt, steps: [1, 2], cfg: [1, 7]}\n"
                     "  - {id: mf, adapter: meanflow, weights: w.safetensors, steps: [1], cfg: [1, 3]}\n")
    assert main(["validate", str(suite), "--plan-only"]) == 0          # the weights named here do not exist
    out = capsys.readouterr().out
    assert "note: so (soflow): the cfg axis is ignored" in out
    assert "note: mf" not in out and "guidance: mf (meanflow): guidance baked into training" in out


def test_bad_settings_and_options_are_clear_errors(gens):
    g = gens["meanflow"]
    with pytest.raises(ValueError, match="steps must be an integer >= 1"):
        g.nfe_per_image(SamplerSettings(steps=0, cfg=1.0))
    with pytest.raises(ValueError, match="unknown solver 'heun'"):
        g.nfe_per_image(SamplerSettings(steps=1, cfg=1.0, solver="heun"))
    with pytest.raises(ValueError, match="labels must be in 0..9"):
        g.sample_latents(torch.tensor([10]), torch.tensor([0]), SamplerSettings(steps=1, cfg=1.0))
    with pytest.raises(OptionsError, match="vea: unknown option.*'vae'"):
        MeanFlow.validate_options({"vea": "ft-mse"})
    with pytest.raises(ValueError, match="unknown size 'Q/2'"):
        config_from_option("Q/2", MF_SHAPES, "MeanFlow arch")


# ------------------------------------------------------------------------------------------ typed options
DEFAULTS = {"vae": "ft-mse", "vae_batch_size": 64, "arch": None}


@pytest.mark.parametrize("cls,defaults", [(MeanFlow, DEFAULTS), (IMF, {**DEFAULTS, "interval": [0.40, 0.65]}),
                                          (SoFlow, DEFAULTS)], ids=["meanflow", "imf", "soflow"])
def test_options_are_typed_with_defaults_and_did_you_mean(cls, defaults):
    assert cls.validate_options({}) == cls.validate_options(defaults) == defaults
    with pytest.raises(OptionsError) as e:
        cls.validate_options({"vae_batchsize": 8})
    assert e.value.problems == [("vae_batchsize", "unknown option (did you mean 'vae_batch_size'?)")]
    with pytest.raises(OptionsError) as e:
        cls.validate_options({"vae_batch_size": "8"})                  # strict: a string is not an int
    assert [k for k, _ in e.value.problems] == ["vae_batch_size"]
    with pytest.raises(OptionsError) as e:
        cls.validate_options({"vae_batch_size": 0})
    assert [k for k, _ in e.value.problems] == ["vae_batch_size"]


@pytest.mark.parametrize("cls,tiny", [(MeanFlow, TINY_DIT), (IMF, TINY_IMF), (SoFlow, TINY_DIT)],
                         ids=["meanflow", "imf", "soflow"])
def test_arch_option_is_checked_at_validation_and_filled_in(cls, tiny):
    full = cls.validate_options({"arch": tiny})["arch"]
    assert full.items() >= tiny.items() and len(full) > len(tiny)           # the config's defaults filled in
    assert cls.validate_options({"arch": full})["arch"] == full             # idempotent
    net = cls().build(full)
    assert net.config == cls().build(tiny).config
    with pytest.raises(OptionsError) as e:
        cls.validate_options({"arch": {**tiny, "hiden_size": 32}})
    [(key, msg)] = e.value.problems
    assert key == "arch" and "hiden_size: unknown option (did you mean 'hidden_size'?)" in msg
    with pytest.raises(OptionsError) as e:
        cls.validate_options({"arch": "Q/2"})                               # unknown size: refused before loading
    assert [k for k, _ in e.value.problems] == ["arch"] and "unknown size 'Q/2'" in str(e.value)
    with pytest.raises(OptionsError) as e:
        cls.validate_options({"arch": {**tiny, "depth": "2"}})
    assert [k for k, _ in e.value.problems] == ["arch"] and "depth" in str(e.value)
    assert cls.validate_options({"arch": "XL/2"})["arch"] == "XL/2"


# ------------------------------------------------------------------------------------------ checkpoints
def test_soflow_loads_its_training_checkpoint_ema_entry(tmp_path, vae_dir):
    ema, raw = _tiny_net("soflow", seed=1), _tiny_net("soflow", seed=2)
    ckpt = tmp_path / "1200000.pt"
    torch.save({"ema_model": ema.state_dict(), "model": raw.state_dict(), "steps": 3}, ckpt)
    g = SoFlow()
    g.load(ModelSpec(id="so", adapter="soflow", weights=str(ckpt), options={"arch": TINY_DIT, "vae": str(vae_dir)}),
           torch.device("cpu"))
    for k, v in ema.state_dict().items():
        assert torch.equal(g.net.state_dict()[k], v), k
    img = g.generate(torch.tensor([3]), torch.tensor([0]), SamplerSettings(steps=1, cfg=1.0))
    assert img.shape == (1, 8, 8, 3)


def test_checkpoint_errors_name_the_file_and_the_problem(tmp_path):
    bad = tmp_path / "pickled.pt"
    torch.save({"ema_model": {"w": torch.zeros(1)}, "obj": Path("x")}, bad)      # an arbitrary object: refused
    g = SoFlow()
    with pytest.raises(ValueError, match="pickled.pt.*weights-only"):
        g.load(ModelSpec(id="so", adapter="soflow", weights=str(bad), options={"arch": TINY_DIT}), torch.device("cpu"))
    wrong = tmp_path / "imf-as-soflow.pt"
    torch.save(_tiny_net("imf").state_dict(), wrong)
    with pytest.raises(ValueError, match="does not fit the network.*missing"):
        g.load(ModelSpec(id="so", adapter="soflow", weights=str(wrong), options={"arch": TINY_DIT}),
               torch.device("cpu"))
    with pytest.raises(ValueError, match="needs weights"):
        g.load(ModelSpec(id="so", adapter="soflow"), torch.device("cpu"))


# ------------------------------------------------------------------------------------------ bench convert
def _flax_path(name: str) -> str:
    """Our name -> the reference's Flax path, written out by hand from models_dit.py (the converter's inverse)."""
    parts = name.split(".")
    leaf = parts.pop()
    out = []
    for p in parts:
        if p.isdigit():
            out.append(f"layers_{p}")
        else:
            out.append(p)
    linear_parent = out[-1] in ("qkv", "proj", "fc1", "fc2", "linear") or out[-1].startswith("layers_")
    if out[:2] == ["x_embedder", "proj"]:
        return "/".join(out + ["kernel" if leaf == "weight" else "bias"])
    if out[-1] == "embedding_table":
        return "/".join(out + ["_flax_embedding", "embedding"])
    assert linear_parent, name
    return "/".join(out + ["_flax_linear", "kernel" if leaf == "weight" else "bias"])


def _flax_value(name: str, v: torch.Tensor) -> np.ndarray:
    if name == "x_embedder.proj.weight":
        return v.permute(2, 3, 1, 0).numpy()          # OIHW -> HWIO
    if v.ndim == 2 and not name.endswith("embedding_table.weight"):
        return v.t().contiguous().numpy()
    return v.numpy()


def _pack(tree) -> bytes:
    """Flax's msgpack encoding (flax.serialization): arrays as ext type 1 holding (shape, dtype name, bytes)."""
    def default(x):
        if isinstance(x, np.ndarray):
            return msgpack.ExtType(1, msgpack.packb((x.shape, x.dtype.name, x.tobytes("C")), use_bin_type=True))
        raise TypeError(type(x))
    return msgpack.packb(tree, default=default, use_bin_type=True)


def _nest(flat: dict[str, np.ndarray]) -> dict:
    root: dict = {}
    for k, v in flat.items():
        node = root
        *parents, leaf = k.split("/")
        for p in parents:
            node = node.setdefault(p, {})
        node[leaf] = np.ascontiguousarray(v)
    return root


def _train_state_file(tmp_path: Path, ema: torch.nn.Module, raw: torch.nn.Module) -> Path:
    def tree(net):
        return {"net": _nest({_flax_path(k): _flax_value(k, v) for k, v in net.state_dict().items()
                              if k != "pos_embed"})}
    src = tmp_path / "checkpoint_7"
    src.write_bytes(_pack({"step": 7, "params": tree(raw), "ema_params": tree(ema), "opt_state": {}}))
    return src


def test_convert_synthetic_flax_train_state_loads_and_matches(tmp_path, vae_dir):
    ema, raw = _tiny_net("meanflow", seed=4), _tiny_net("meanflow", seed=5)
    src = _train_state_file(tmp_path, ema, raw)
    dst = tmp_path / "mf.safetensors"
    arch = {k: v for k, v in TINY_DIT.items() if k != "input_size"}
    assert main(["convert", "meanflow", str(src), str(dst), "--arch", json.dumps(arch), "--input-size", "8"]) == 0
    g = MeanFlow()        # the architecture comes from the file's metadata: no arch option needed
    g.load(ModelSpec(id="mf", adapter="meanflow", weights=str(dst), options={"vae": str(vae_dir)}), torch.device("cpu"))
    for k, v in ema.state_dict().items():
        torch.testing.assert_close(g.net.state_dict()[k], v, rtol=0, atol=0, msg=k)
    x, t, h, y = torch.randn(2, 4, 8, 8), torch.tensor([1.0, 0.4]), torch.tensor([1.0, 0.1]), torch.tensor([2, 10])
    with torch.no_grad():
        torch.testing.assert_close(g.net(x, t, h, y), ema(x, t, h, y))
    raw_dst = convert.convert_meanflow(src, tmp_path / "raw.safetensors", arch={**arch, "input_size": 8},
                                       input_size=8, tree="params")
    from safetensors.torch import load_file
    assert torch.equal(load_file(str(raw_dst))["blocks.1.mlp.fc2.weight"], raw.state_dict()["blocks.1.mlp.fc2.weight"])


def test_convert_reads_chunked_arrays_and_reports_bad_input(tmp_path, capsys):
    big = np.arange(12, dtype=np.float32).reshape(3, 4)
    chunked = {"__msgpack_chunked_array__": True, "shape": {"0": 3, "1": 4},
               "chunks": {"0": big.reshape(-1)[:5].copy(), "1": big.reshape(-1)[5:].copy()}}
    f = tmp_path / "c.msgpack"
    f.write_bytes(_pack({"a": {"b": chunked}}))
    np.testing.assert_array_equal(convert.read_flax_tree(f)["a/b"], big)
    (tmp_path / "junk").write_bytes(b"\xc1\xc1not msgpack")
    assert main(["convert", "meanflow", str(tmp_path / "junk"), str(tmp_path / "o.safetensors")]) == 2
    assert "not a Flax msgpack checkpoint" in capsys.readouterr().err
    tiny = tmp_path / "tiny"
    tiny.write_bytes(_pack({"ema_params": _train_tree_only(_tiny_net("meanflow"))}))
    assert main(["convert", "meanflow", str(tiny), str(tmp_path / "o.safetensors")]) == 2
    assert "match no MeanFlow size" in capsys.readouterr().err


def test_convert_finds_the_checkpoint_in_a_folder(tmp_path):
    ckpts = tmp_path / "ckpts"
    ckpts.mkdir()
    for step in (3, 12):
        (ckpts / f"checkpoint_{step}").write_bytes(_pack({"step": step, "w": np.full(2, step, np.float32)}))
    np.testing.assert_array_equal(convert.read_flax_tree(ckpts)["w"], [12, 12])       # the newest step
    orbax = tmp_path / "orbax" / "checkpoint_5"
    orbax.mkdir(parents=True)
    (orbax / "_METADATA").write_text("{}")
    try:
        import flax  # noqa: F401
        pytest.skip("flax is installed here: the orbax folder would be handed to it")
    except ImportError:
        pass
    with pytest.raises(ValueError, match="orbax checkpoint folder.*pip install jax flax"):
        convert.read_flax_tree(orbax.parent)


def _train_tree_only(net) -> dict:
    return {"net": _nest({_flax_path(k): _flax_value(k, v) for k, v in net.state_dict().items() if k != "pos_embed"})}


# ------------------------------------------------------------------------------------------ official layouts
def _fixture(name: str) -> dict[str, list[int]]:
    return json.loads((FIXTURES / f"{name}.json").read_text())["tensors"]


def _meta_shapes(net: torch.nn.Module) -> dict[str, list[int]]:
    return {k: list(v.shape) for k, v in net.state_dict().items()}


def test_imf_xl2_matches_the_official_checkpoint_layout():
    with torch.device("meta"):
        ours = _meta_shapes(IMFNet(IMFConfig.of("XL/2")))
    assert ours == _fixture("imf")


def test_soflow_xl2_matches_the_official_checkpoint_layout():
    with torch.device("meta"):
        ours = _meta_shapes(SoFlowNet(config_from_option("XL-2-cond", SOFLOW_SHAPES, "SoFlow arch")))
    assert ours == _fixture("soflow")


def test_meanflow_b4_matches_the_official_flax_layout_after_convert():
    official = _fixture("meanflow")
    assert all(k.startswith("net/") for k in official)
    mapped = {convert.torch_name(k[4:]): list(convert.torch_shape(k, v)) for k, v in official.items()}
    with torch.device("meta"):
        ours = _meta_shapes(MeanFlowDiT(config_from_option("MF-B/4", MF_SHAPES, "MeanFlow arch")))
    assert ours.pop("pos_embed") == [1, 64, 768]          # computed at run time by the reference; added by convert
    assert mapped == ours
    assert len(official) == len(mapped)                    # no two Flax paths collapse onto one name
