"""Cost of the metrics `cmmd`, `fd_dinov2_dgm`, `image_reward` and of fid_is_kid's density/coverage and FID-infinity
extras per 1,000 generated images on the device `make perf` runs on.

Each metric runs through its own code (preprocessing, fixed-shape network batches, statistic) on a network with
random weights and the real architecture's shape (the weights cannot be downloaded here; speed does not depend on
their values):
- ``cmmd``: CLIP ViT-L/14@336px image tower with projection (openai/clip-vit-large-patch14-336: 24 layers, width
  1024, 16 heads, MLP 4096, patch 14, 336 px, 768-d embedding), after the PIL centre crop and bicubic resize of
  256 px images; statistic: the MMD of 1,000 generated against 1,000 reference embeddings, the reference's own
  kernel sum already known (as in a cell: it is cached with the reference).
- ``fd_dinov2_dgm``: DINOv2 ViT-L/14 (facebook/dinov2-large: 24 layers, width 1024, 16 heads, MLP ratio 4, the
  518 px position grid interpolated to 224 px once), after the PIL bicubic resize of 256 px images to 224;
  statistic: dgm-eval's Frechet distance of 1,000 against 1,000 1,024-d features (two covariances and one sqrtm).

Network figure: seconds per image at a batch of ``STEPBENCH_PERF_METRIC_IMAGES`` images (default 2 on a CPU, where
ViT-L takes seconds per image, and 64 on a GPU), median of 2 timed calls after one warm-up call, times 1,000. The
statistic is timed once per call (median of 2) at n = 1,000. Reference features are excluded: computed once per
dataset and cached. float32 networks under ``torch.inference_mode``.
"""

from __future__ import annotations

import os
import statistics

import torch
from perfkit import SUMMARY, device, timed

from bench.metrics.cmmd import Cmmd, kernel_sum
from bench.metrics.fd_dinov2_dgm import FdDinov2Dgm

SEC = "metric costs"
N_STAT = 1000


def _images_per_call(dev: torch.device) -> int:
    return int(os.environ.get("STEPBENCH_PERF_METRIC_IMAGES", "64" if dev.type == "cuda" else "2"))


def _with_network(metric, model):
    """The metric object with a random network in place of its weights (nothing is resolved or loaded)."""
    metric._model = metric.prepare(model.eval()).to(metric.device)
    metric._weights_id = "random (speed only)"
    return metric


def _median_s(fn, dev: torch.device, calls: int = 2) -> float:
    fn()                                             # warm-up
    return statistics.median(timed(fn, dev) for _ in range(calls))


def _measure(benchmark, metric, network, embed, stat, dev: torch.device, note: str) -> None:
    """Time ``embed(images)`` (per image) and ``stat()`` for ``metric`` running ``network``; one summary row."""
    n = _images_per_call(dev)
    metric = _with_network(metric, network)
    images = torch.randint(0, 256, (n, 256, 256, 3), dtype=torch.uint8)
    with torch.inference_mode():
        per_image = _median_s(lambda: embed(metric, images), dev) / n
    stat_s = _median_s(lambda: stat(metric), dev)
    net = 1000 * per_image
    SUMMARY.add(SEC, f"{metric.name}: s per 1,000 images (network + preprocessing + statistic at n = {N_STAT})",
                f"{net + stat_s:.4g} ({net:.4g} + {stat_s:.3g})", note=f"{note}; network timed on {n} images",
                dev=dev)
    benchmark.extra_info.update(device=str(dev), network_s_per_1000=net, statistic_s=stat_s)
    assert net > 0 and stat_s > 0
    benchmark.pedantic(lambda: None, rounds=1, iterations=1)


def test_cmmd_cost_per_1000_images(benchmark, tmp_path):
    from transformers import CLIPVisionConfig, CLIPVisionModelWithProjection
    dev = device()
    torch.manual_seed(0)
    net = CLIPVisionModelWithProjection(CLIPVisionConfig(
        hidden_size=1024, intermediate_size=4096, num_hidden_layers=24, num_attention_heads=16, image_size=336,
        patch_size=14, projection_dim=768, hidden_act="quick_gelu"))
    g = torch.Generator().manual_seed(0)
    gen, ref = (torch.nn.functional.normalize(torch.randn(N_STAT, 768, generator=g), dim=-1) for _ in range(2))
    ref_sum = kernel_sum(ref, ref)
    _measure(benchmark, Cmmd({"model": "random", "batch_size": _images_per_call(dev)}, dev, tmp_path), net,
             lambda m, x: m.embeddings(x), lambda m: m.distance(gen, ref, ref_sum), dev,
             "random CLIP ViT-L/14@336 image tower, 256 px uint8 in")


def test_fd_dinov2_dgm_cost_per_1000_images(benchmark, tmp_path):
    from transformers import Dinov2Config, Dinov2Model
    dev = device()
    torch.manual_seed(0)
    net = Dinov2Model(Dinov2Config(hidden_size=1024, num_hidden_layers=24, num_attention_heads=16, mlp_ratio=4,
                                   patch_size=14, image_size=518))
    g = torch.Generator().manual_seed(0)
    gen, ref = torch.randn(N_STAT, 1024, generator=g), torch.randn(N_STAT, 1024, generator=g)
    _measure(benchmark, FdDinov2Dgm({"model": "random", "batch_size": _images_per_call(dev)}, dev, tmp_path), net,
             lambda m, x: m.features(x), lambda m: m.distance(gen, ref), dev,
             "random DINOv2 ViT-L/14, 256 px uint8 in")


def test_image_reward_cost_per_1000_images(benchmark, tmp_path):
    """ImageReward-v1.0's shape (BLIP ViT-L/16 at 224, BERT-base with cross-attention, the 5-layer head), random;
    every image scored against a 35-token prompt (tokenized once per distinct prompt, so not timed)."""
    from bench.metrics.image_reward import MAX_TOKENS, ImageReward
    from bench.metrics.image_reward_net import ImageRewardNet
    dev = device()
    torch.manual_seed(0)
    net = ImageRewardNet({"vision_width": 1024, "vision_layers": 24, "patch": 16, "image_size": 224,
                          "vision_mlp": 4096, "text_width": 768, "text_layers": 12, "vocab": 30524,
                          "text_positions": 512, "text_ffn": 3072, "encoder_width": 1024,
                          "head": [1024, 128, 64, 16, 1]}).eval().to(dev)
    n = _images_per_call(dev)
    metric = ImageReward({"model": "random", "batch_size": n}, dev, tmp_path)
    metric._net = net
    metric._tokens["p"] = (torch.randint(1000, 30000, (MAX_TOKENS,)), torch.ones(MAX_TOKENS, dtype=torch.long))
    images = torch.randint(0, 256, (n, 256, 256, 3), dtype=torch.uint8)
    per_image = _median_s(lambda: metric.scores(images, ["p"] * n), dev) / n
    net_s = 1000 * per_image
    SUMMARY.add(SEC, "image_reward: s per 1,000 images (network + preprocessing; the mean and bootstrap are "
                "microseconds)", f"{net_s:.4g}", note=f"random ImageReward-v1.0-shaped BLIP, 256 px uint8 in; "
                f"network timed on {n} images", dev=dev)
    benchmark.extra_info.update(device=str(dev), network_s_per_1000=net_s)
    assert net_s > 0
    benchmark.pedantic(lambda: None, rounds=1, iterations=1)


def test_density_coverage_and_fid_inf_cost_per_1000_images(benchmark):
    """The opt-in extras of fid_is_kid on 2,048-d (Inception pool) features, n = 1,000 generated against 1,000 real:
    they reuse the features fid_is_kid computes, so their cost is the statistic alone (the real radii are computed
    once per reference set: timed apart)."""
    from torch_fidelity.metric_fid import fid_features_to_statistics, fid_statistics_to_metric

    from bench.metrics import fd_infinity, prdc
    dev = device()
    g = torch.Generator().manual_seed(0)
    gen, ref = torch.randn(N_STAT, 2048, generator=g), torch.randn(N_STAT, 2048, generator=g)
    radii_s = _median_s(lambda: prdc.radii(ref, 5), dev)
    radii = prdc.radii(ref, 5)
    dc_s = _median_s(lambda: prdc.density_coverage(gen, ref, radii, 5), dev)
    ref_stats = fid_features_to_statistics(ref.double())

    def fd_of(x):
        return float(fid_statistics_to_metric(ref_stats, fid_features_to_statistics(x.double()),
                                              verbose=False)["frechet_inception_distance"])
    inf_s = _median_s(lambda: fd_infinity.fd_infinity(gen, fd_of, 15, 2020), dev, calls=1)
    SUMMARY.add(SEC, f"density + coverage (fid_is_kid extra): s per cell at n = {N_STAT}", f"{dc_s:.3g}",
                note=f"2,048-d features vs {N_STAT} real; the real radii once per reference set: {radii_s:.3g} s",
                dev=dev)
    SUMMARY.add(SEC, f"fid_inf (fid_is_kid extra): s per cell at n = {N_STAT}", f"{inf_s:.3g}",
                note="15 subset sizes, one covariance + sqrtm each (torch-fidelity's FID)", dev=dev)
    benchmark.extra_info.update(device=str(dev), density_coverage_s=dc_s, radii_s=radii_s, fid_inf_s=inf_s)
    assert dc_s > 0 and inf_s > 0
    benchmark.pedantic(lambda: None, rounds=1, iterations=1)
