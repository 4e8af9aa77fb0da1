"""Images/s and batch-1 latency of each network on the device `make perf` runs on (the GPU when present).

- The mini generators (one sampling step, no CFG: one network evaluation per image) and the mini metric networks
  (the FID/IS/KID classifier, the CLIP and PickScore image towers) with their shipped weights.
- The full-size metric networks of the protocol: Inception-v3-compat (torch-fidelity's FID network, 299 px), CLIP
  ViT-B/16 and PickScore's ViT-H/14 image towers (224 px). Their weights cannot be downloaded here, so they are built
  with random weights from their architectures (speed does not depend on the values). They run when a GPU is present
  or with ``STEPBENCH_PERF_FULL=1``; on a CPU they take minutes (ViT-H/14: several seconds per image).

Each figure: median over 3 timed calls after one warm-up, with device synchronisation (`bench.timing.measure`),
under ``torch.inference_mode``, float32.
"""

from __future__ import annotations

import os

import pytest
import torch
from perfkit import SUMMARY, device

from bench.mini import metric_nets
from bench.mini.data import RES
from bench.models.base import ModelSpec, SamplerSettings
from bench.registry import resolve
from bench.timing import measure
from tests.random_inception import random_inception

FULL = os.environ.get("STEPBENCH_PERF_FULL") == "1"
SEC = "5 networks"


def _record(name: str, fn, batch: int, dev: torch.device, note: str = "") -> dict[str, float]:
    with torch.inference_mode():
        bulk = measure(fn, batch, 1, 3, dev)
        one = measure(fn, 1, 1, 3, dev)
    ips, lat_ms = 1.0 / bulk["median_s"], 1000.0 * one["median_s"]
    SUMMARY.add(SEC, f"{name}: images/s @ batch {batch} / batch-1 latency (ms)", f"{ips:.4g} / {lat_ms:.4g}",
                note=note, dev=dev)
    assert ips > 0 and lat_ms > 0
    return {"images_per_s": ips, "latency_ms": lat_ms}


@pytest.mark.parametrize("adapter", ["mini-sit", "mini-meanflow", "mini-distill"])
def test_mini_generators(benchmark, adapter):
    dev = device()
    gen = resolve("model adapter", adapter)()
    gen.load(ModelSpec(id=adapter, adapter=adapter), dev)
    s = SamplerSettings(steps=1, cfg=1.0, solver="euler" if adapter == "mini-sit" else None, seed=0)

    def fn(b: int) -> None:
        gen.generate(torch.arange(b) % 10, torch.arange(b), s)

    out = _record(adapter, fn, 250, dev, "1 step, CFG 1.0: one network evaluation per image, uint8 out")
    benchmark.extra_info.update(device=str(dev), **out)
    benchmark.pedantic(fn, args=(250,), rounds=1, iterations=1)


def _mini_metric_nets(dev: torch.device):
    ext = metric_nets.MiniClassifierExtractor("mini-classifier", ["feat", "logits_unbiased"]).to(dev).eval()
    yield "mini-classifier (FID/IS/KID)", lambda x: ext(x.permute(0, 3, 1, 2).contiguous()), RES
    for name in ("clip", "pick"):
        model, _ = metric_nets.load_clip(name)
        model = model.to(dev).eval()
        size = metric_nets.clip_image_size(model)
        yield f"mini {name} image tower", lambda x, m=model: m.encode_image(x.permute(0, 3, 1, 2).float()), size


def test_mini_metric_networks(benchmark):
    dev = device()
    results = {}
    for name, net, size in _mini_metric_nets(dev):
        x = torch.randint(0, 256, (500, size, size, 3), dtype=torch.uint8, device=dev)
        if "clip" in name or "pick" in name:
            x = x.float() / 255.0
        results[name] = _record(name, lambda b, net=net, x=x: net(x[:b]), 500, dev, f"{size} px input")
    benchmark.extra_info.update(device=str(dev), **results)
    benchmark.pedantic(lambda: None, rounds=1, iterations=1)


def _inception(dev: torch.device):
    return random_inception(("2048", "logits_unbiased")).to(dev).eval()      # random weights: no download


def _vision_tower(dev: torch.device, hidden: int, layers: int, heads: int, mlp: int, patch: int, proj: int):
    from transformers import CLIPVisionConfig, CLIPVisionModelWithProjection
    cfg = CLIPVisionConfig(hidden_size=hidden, num_hidden_layers=layers, num_attention_heads=heads,
                           intermediate_size=mlp, patch_size=patch, image_size=224, projection_dim=proj)
    return CLIPVisionModelWithProjection(cfg).to(dev).eval()


@pytest.mark.skipif(not (FULL or torch.cuda.is_available()),
                    reason="full-size networks: on a GPU, or STEPBENCH_PERF_FULL=1 on a CPU (minutes)")
def test_full_size_metric_networks(benchmark):
    dev = device()
    gpu = dev.type == "cuda"
    inception = _inception(dev)
    clip_b16 = _vision_tower(dev, 768, 12, 12, 3072, 16, 512)       # openai/clip-vit-base-patch16
    pick_h14 = _vision_tower(dev, 1280, 32, 16, 5120, 14, 1024)     # PickScore_v1 = CLIP ViT-H/14
    nets = [("Inception-v3-compat (FID/IS/KID)", lambda x: inception(x), 299, torch.uint8, 64 if gpu else 8,
             "uint8 256 px in, torch-fidelity's resize to 299"),
            ("CLIP ViT-B/16 image tower", lambda x: clip_b16(pixel_values=x).image_embeds, 224, torch.float32,
             64 if gpu else 8, "224 px"),
            ("PickScore ViT-H/14 image tower", lambda x: pick_h14(pixel_values=x).image_embeds, 224, torch.float32,
             32 if gpu else 2, "224 px")]
    results = {}
    for name, net, size, dtype, batch, note in nets:
        shape = (batch, 3, 256, 256) if dtype == torch.uint8 else (batch, 3, size, size)
        x = (torch.randint(0, 256, shape, dtype=torch.uint8, device=dev) if dtype == torch.uint8
             else torch.randn(shape, device=dev))
        results[name] = _record(name, lambda b, net=net, x=x: net(x[:b]), batch, dev,
                                f"{note}; random weights (speed only)")
    benchmark.extra_info.update(device=str(dev), **results)
    benchmark.pedantic(lambda: None, rounds=1, iterations=1)
