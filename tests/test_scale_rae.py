"""Scale-RAE diffusion head: official parameter layout at full size (meta device) and a tiny network's forward."""

import json
from pathlib import Path

import torch

from bench.models.scale_rae_nets import HEAD_2_4B, W_SEED, HeadConfig, ScaleRAEHead

KEYS = Path(__file__).parent / "fixtures" / "keys"


def test_full_size_head_layout_matches_official_checkpoint():
    expected = json.loads((KEYS / "scale-rae-dit-head-2.4b.json").read_text())["tensors"]
    with torch.device("meta"):
        head = ScaleRAEHead(HEAD_2_4B)
    got = {k: list(v.shape) for k, v in head.state_dict().items()}
    assert sorted(set(expected) ^ set(got)) == []
    assert {k: v for k, v in got.items() if expected[k] != v} == {}
    assert 2.4e9 < sum(v.numel() for v in head.state_dict().values()) < 2.5e9     # "DiT 2.4B"


def test_tiny_head_forward_and_null_condition():
    cfg = HeadConfig(input_size=4, in_channels=24, hidden_size=32, depth=2, num_heads=2, z_channels=16)
    torch.manual_seed(0)
    head = ScaleRAEHead(cfg).eval()
    g = torch.Generator().manual_seed(1)
    with torch.no_grad():
        for name, p in head.named_parameters():      # zero-initialised adaLN/final layers: randomise everything
            p.copy_(torch.randn(p.shape, generator=g) * 0.1 + (1.0 if "norm" in name else 0.0))
    # the time-embedding frequencies are the reference's fixed draw, not checkpoint tensors
    assert torch.equal(head.t_embedder.W, torch.normal(0.0, 1.0, size=(256,),
                                                       generator=torch.Generator().manual_seed(W_SEED)))
    assert "t_embedder.W" not in head.state_dict()
    x, t, z = torch.randn(3, 24, 4, 4), torch.rand(3), torch.randn(3, 16, 16)
    with torch.no_grad():
        v = head(x, t, z)
        v_null = head(x, t, head.y_embedder.null_like(z))
        v0 = head(x[:1], t[:1], z[:1])
    assert v.shape == x.shape
    assert not torch.allclose(v, v_null)
    assert torch.allclose(v[:1], v0, atol=1e-5)          # rows are independent of the batch
