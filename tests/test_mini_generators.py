"""The miniature world's generators (bench/models/mini.py): determinism, honest NFE, step trend, errors."""

from __future__ import annotations

import pytest
import torch

from bench.mini import data
from bench.mini import weights as mini_weights
from bench.models.base import ModelSpec, SamplerSettings
from bench.models.mini import MiniDistill, MiniMeanFlow, MiniSiT

torch.set_num_threads(1)

ADAPTERS = {"sit": MiniSiT, "meanflow": MiniMeanFlow, "distill": MiniDistill}


def _have(name: str) -> bool:
    return name in mini_weights.read_manifest()


@pytest.fixture(scope="module")
def models():
    missing = [n for n in ADAPTERS if not _have(n)]
    if missing:
        pytest.skip(f"shipped mini weights missing: {missing} (run `make mini-weights`)")
    out = {}
    for name, cls in ADAPTERS.items():
        g = cls()
        g.load(ModelSpec(id=f"mini-{name}", adapter=f"mini-{name}"), torch.device("cpu"))
        out[name] = g
    return out


DET_SETTINGS = [
    ("sit", SamplerSettings(steps=3, cfg=2.0, solver="euler", seed=7)),
    ("sit", SamplerSettings(steps=2, cfg=1.0, solver="heun", seed=7)),
    ("meanflow", SamplerSettings(steps=2, cfg=2.0, seed=7)),
    ("meanflow", SamplerSettings(steps=1, cfg=1.0, seed=7)),
    ("distill", SamplerSettings(steps=3, cfg=3.0, seed=7)),
    ("distill", SamplerSettings(steps=1, cfg=1.0, seed=7)),
]


@pytest.mark.parametrize("name,s", DET_SETTINGS, ids=[f"{n}-{s.steps}-{s.cfg}-{s.solver}" for n, s in DET_SETTINGS])
def test_images_depend_only_on_seed_and_sample_id(models, name, s):
    g = models[name]
    ids = torch.tensor([3, 11, 42, 1000, 7])
    labels = torch.tensor([0, 4, 9, 2, 5])
    together = g.generate(labels, ids, s)
    assert together.dtype == torch.uint8 and together.shape == (5, 16, 16, 3)
    alone = torch.cat([g.generate(labels[i:i + 1], ids[i:i + 1], s) for i in range(5)])
    assert torch.equal(together, alone)                       # bit-exact across batch sizes 5 and 1
    shuffled = g.generate(labels.flip(0), ids.flip(0), s).flip(0)
    assert torch.equal(together, shuffled)                    # and across positions in the batch
    other_seed = g.generate(labels, ids, SamplerSettings(steps=s.steps, cfg=s.cfg, solver=s.solver, seed=8))
    assert not torch.equal(together, other_seed)


NFE_SETTINGS = [
    ("sit", SamplerSettings(steps=3, cfg=1.0), 3),
    ("sit", SamplerSettings(steps=3, cfg=2.5), 6),
    ("sit", SamplerSettings(steps=3, cfg=1.0, solver="heun"), 5),
    ("sit", SamplerSettings(steps=3, cfg=4.0, solver="heun"), 10),
    ("sit", SamplerSettings(steps=1, cfg=4.0, solver="heun"), 2),
    ("meanflow", SamplerSettings(steps=2, cfg=1.0), 2),
    ("meanflow", SamplerSettings(steps=2, cfg=3.0), 4),
    ("distill", SamplerSettings(steps=3, cfg=1.0), 3),
    ("distill", SamplerSettings(steps=3, cfg=4.0), 3),
]


@pytest.mark.parametrize("name,s,expected", NFE_SETTINGS,
                         ids=[f"{n}-{s.steps}-{s.cfg}-{s.solver}" for n, s, _ in NFE_SETTINGS])
def test_declared_nfe_equals_counted(models, name, s, expected):
    g = models[name]
    counted = []
    hooks = [m.register_forward_pre_hook(lambda mod, args, kwargs: counted.append(args[0].shape[0]),
                                         with_kwargs=True) for m in g.networks()]
    try:
        b = 3
        g.generate(torch.tensor([1, 2, 3]), torch.arange(b), s)
    finally:
        for h in hooks:
            h.remove()
    assert g.nfe_per_image(s) == expected
    assert sum(counted) == expected * b


def _pixel_w1(a: torch.Tensor, b: torch.Tensor) -> float:
    """1-Wasserstein distance between the pixel-value distributions of two equally sized uint8 batches."""
    return float((a.float().flatten().sort().values - b.float().flatten().sort().values).abs().mean())


def _coarse_edges(imgs: torch.Tensor) -> float:
    """Mean absolute neighbour difference after 2x2 average pooling: shape structure, not pixel noise."""
    x = torch.nn.functional.avg_pool2d(imgs.permute(0, 3, 1, 2).float(), 2)
    return float((x[:, :, 1:] - x[:, :, :-1]).abs().mean() + (x[..., 1:] - x[..., :-1]).abs().mean())


def test_sit_more_steps_is_closer_to_data(models):
    """More Euler steps bring the pixel-value distribution closer to the data (2 < 4 < 16 steps), and one step
    gives blurry per-class means with far less shape structure than 16 steps. (One step's pixel histogram is
    not the worst: its leftover noise spreads it, so the histogram test starts at 2 steps.)"""
    n = 48
    real = torch.from_numpy(data.batch("val", 0, n)[0])
    ids = torch.arange(n)
    labels = ids % data.NUM_CLASSES
    imgs = {steps: models["sit"].generate(labels, ids, SamplerSettings(steps=steps, cfg=1.0, seed=0))
            for steps in (1, 2, 4, 16)}
    w1 = {k: _pixel_w1(v, real) for k, v in imgs.items()}
    assert w1[16] < w1[4] < w1[2], w1
    edge_gap = {k: abs(_coarse_edges(v) - _coarse_edges(real)) for k, v in imgs.items()}
    assert edge_gap[16] < 0.5 * edge_gap[1], edge_gap


@pytest.mark.parametrize("name", list(ADAPTERS))
def test_bad_settings_raise_value_error(models, name):
    g = models[name]
    with pytest.raises(ValueError, match="steps"):
        g.generate(torch.tensor([0]), torch.tensor([0]), SamplerSettings(steps=0, cfg=1.0))
    with pytest.raises(ValueError, match="steps"):
        g.nfe_per_image(SamplerSettings(steps=0, cfg=1.0))
    with pytest.raises(ValueError, match="solver"):
        g.generate(torch.tensor([0]), torch.tensor([0]), SamplerSettings(steps=1, cfg=1.0, solver="dopri5"))
    with pytest.raises(ValueError, match="cfg"):
        g.nfe_per_image(SamplerSettings(steps=1, cfg=float("nan")))


def test_adapters_follow_protocol_and_reject_wrong_weights(models):
    from bench.models.base import Generator
    for g in models.values():
        assert isinstance(g, Generator)
        assert g.version and g.family
        assert g.weights_id(ModelSpec(id="x", adapter="y")).startswith("sha256:")
    assert [models[n].family for n in ADAPTERS] == ["flow", "meanflow", "solution-operator"]
    with pytest.raises(ValueError, match="second input"):
        MiniSiT().load(ModelSpec(id="x", adapter="mini-sit", weights="meanflow"), torch.device("cpu"))


def test_load_gives_the_files_tensors_and_refuses_incomplete_files(tmp_path):
    """The network is built on the meta device and given the file's tensors: the same outputs, bit for bit, as a
    randomly initialised network loaded the usual way; a file missing a tensor or with one too many is refused
    (strict), never run with a meta or random parameter."""
    import json

    from safetensors.torch import save_file

    from bench.mini.nets import MiniUNet, make_config
    for cls in (MiniSiT, MiniMeanFlow, MiniDistill):
        g = cls()
        g.load(ModelSpec(id="x", adapter="x"), torch.device("cpu"))
        assert not any(t.is_meta for t in [*g.net.parameters(), *g.net.buffers()]), cls.__name__
    g = MiniSiT()
    g.load(ModelSpec(id="x", adapter="mini-sit"), torch.device("cpu"))
    sd, cfg = mini_weights.load("sit")
    usual = MiniUNet({k: v for k, v in cfg.items() if k in make_config()})
    usual.load_state_dict(sd)
    usual = usual.to(memory_format=torch.channels_last).eval()
    x, t, y = torch.randn(20, 3, 16, 16), torch.rand(20), torch.randint(0, 10, (20,))
    with torch.inference_mode():
        assert torch.equal(g.net(x, t, y), usual(x, t, y))
    dropped = sorted(sd)[3]
    for name, tensors in (("missing", {k: v for k, v in sd.items() if k != dropped}),
                          ("extra", {**sd, "surplus.weight": torch.zeros(2)})):
        path = tmp_path / f"{name}.safetensors"
        save_file(tensors, str(path))
        path.with_suffix(".json").write_text(json.dumps(cfg))
        with pytest.raises(RuntimeError, match="Missing key" if name == "missing" else "Unexpected key"):
            MiniSiT().load(ModelSpec(id="x", adapter="mini-sit", weights=str(path)), torch.device("cpu"))
