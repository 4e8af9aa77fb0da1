"""CMMD (Jayasumana et al. 2024, "Rethinking FID: Towards a Better Evaluation Metric for Image Generation"): the
maximum mean discrepancy between CLIP image embeddings of generated and reference images. Metric ``cmmd``.

References (read, not copied): github.com/google-research/google-research ``cmmd/io_util.py`` (``_read_image`` /
``_center_crop_and_resize``: PIL image, centre crop to the largest square, box ``((w - l) // 2, (h - l) // 2)``,
``resize((336, 336), Image.BICUBIC)``, ``np.asarray(...).astype(float32)``, then ``/ 255.0``; a last partial
batch is dropped), ``cmmd/embedding.py`` (``jax.image.resize`` bicubic to the model's 336, the identity on images
already 336 x 336, then scenic's ``clip.normalize_image``: ``(x - mean) / std`` with the CLIP mean/std;
``vit_l14_336px`` = OpenAI CLIP ViT-L/14@336px; the image embedding is L2-normalised: scenic ``layers.CLIP.
encode_image(normalize=True)``), ``cmmd/distance.py`` (``mmd(x, y)``: sigma = 10, gamma = 1 / (2 sigma^2), the
Gaussian RBF kernel on ``-2 x y^T + |x|^2 + |y|^2`` with the squared norms the diagonal of ``x x^T``, the biased
estimator ``1000 * (mean k(x, x) + mean k(y, y) - 2 mean k(x, y))``, means over full matrices, diagonal included)
and ``cmmd/main.py`` (x = reference, y = evaluated set).

Here: the same pixels (PIL crop and bicubic resize to the network's input size, 336 for the default weights;
float32 ``/ 255``, ``(x - mean) / std`` in float32), the same network through transformers
``CLIPVisionModelWithProjection`` (default ``openai/clip-vit-large-patch14-336``; ``image_embeds`` =
``visual_projection(post_layernorm(CLS))``, as scenic's ``ln_post`` + ``proj``), L2-normalised in float32. Not
transformers' ``CLIPImageProcessor`` (resize of the shortest edge, then crop: other pixels on non-square images).
No image is dropped. The kernel sums are float64 over blocks of `BLOCK` rows. The reference computes in float32
(JAX's default; on a TPU its matmuls may run at lower precision still), and ``k_xx + k_yy - 2 k_xy`` cancels about
three of float32's seven digits: its values differ from these by about 1e-3 relative (measured 6e-4 on a tiny
network), which no float32 re-implementation could reproduce bit for bit either.
Invariants: the value is a deterministic function of the sample-ordered embeddings (batch size and shard split do
not change it); identical sets give 0 exactly (the three sums are the same sums); the reference's own term
``sum k(x, x)`` depends on the reference set alone and is cached with its embeddings (`bench.metrics.refcache`),
keyed by the dataset, preprocessing, input size, weights, batch size and library versions. A full CLIP checkpoint
(as the hub repo is) loads as its vision tower with the checkpoint's ``projection_dim`` (`Cmmd.load_kwargs`); a
checkpoint that leaves any weight missing is refused (`bench.metrics.hf_network`), never initialised at random.
"""

from __future__ import annotations

from typing import Annotated, Any

import numpy as np
import torch
from PIL import Image
from pydantic import Field

from bench.metrics.base import MetricError, PerSampleAccumulator, StrictOptions, fixed_shape_forward
from bench.metrics.clip_preprocess import OPENAI_MEAN, OPENAI_STD
from bench.metrics.hf_network import TransformersNetworkMetric
from bench.metrics.refcache import RefCache, library_versions
from bench.outputs import Output

SIGMA = 10.0
SCALE = 1000.0
BLOCK = 4096         # rows per kernel block (a 4096 x 4096 float64 block is 128 MiB)
PREPROCESS = ("PIL centre crop to the largest square, PIL bicubic resize to the network's input size, float32 /255, "
              "CLIP mean/std (google-research cmmd io_util + embedding)")
KERNEL = f"Gaussian RBF sigma={SIGMA:g}, biased MMD (diagonal included) x {SCALE:g}, float64 sums"


class CmmdOptions(StrictOptions):
    """Options of `Cmmd`: the CLIP weights (hub id, local folder or ``$VAR``) and the network batch size."""
    model: str = "openai/clip-vit-large-patch14-336"
    batch_size: Annotated[int, Field(ge=1)] = 64


def cmmd_preprocess(images: torch.Tensor, size: int) -> torch.Tensor:
    """uint8 NHWC RGB (any size) -> float32 NCHW ``size`` x ``size`` network input, per image (module docstring)."""
    if images.dtype != torch.uint8 or images.dim() != 4 or images.shape[-1] != 3:
        raise MetricError(f"cmmd: expected uint8 NHWC RGB images, got {images.dtype} {tuple(images.shape)}")
    out = []
    for a in images.cpu().numpy():
        im = Image.fromarray(np.ascontiguousarray(a))
        w, h = im.size
        side = min(w, h)
        left, top = (w - side) // 2, (h - side) // 2
        im = im.crop((left, top, left + side, top + side)).resize((size, size), Image.Resampling.BICUBIC)
        out.append(np.asarray(im).astype(np.float32))
    x = torch.from_numpy(np.stack(out) / np.float32(255.0)).permute(0, 3, 1, 2)
    m = torch.tensor(OPENAI_MEAN, dtype=torch.float32).view(1, 3, 1, 1)
    s = torch.tensor(OPENAI_STD, dtype=torch.float32).view(1, 3, 1, 1)
    return (x - m) / s


def kernel_sum(x: torch.Tensor, y: torch.Tensor, sigma: float = SIGMA, block: int = BLOCK) -> float:
    """sum over i, j of exp(-gamma * (-2 x_i.y_j + |x_i|^2 + |y_j|^2)), gamma = 1 / (2 sigma^2), in float64 over
    ``block`` x ``block`` tiles added in a fixed order (the same inputs give the same bits)."""
    x, y = x.double(), y.double()
    gamma = 1.0 / (2.0 * sigma ** 2)
    total = torch.zeros((), dtype=torch.float64, device=x.device)
    for xb in x.split(block):
        xn = (xb * xb).sum(1)
        for yb in y.split(block):
            d2 = -2.0 * (xb @ yb.T) + xn[:, None] + (yb * yb).sum(1)[None, :]
            total = total + torch.exp(-gamma * d2).sum()
    return float(total)


def mmd(x: torch.Tensor, y: torch.Tensor, xx_sum: float | None = None) -> float:
    """The reference's ``mmd(x, y)`` (x: the reference set, y: the evaluated one; module docstring); ``xx_sum``:
    ``kernel_sum(x, x)`` when already known."""
    n, m = len(x), len(y)
    xx = kernel_sum(x, x) if xx_sum is None else xx_sum
    return SCALE * (xx / (n * n) + kernel_sum(y, y) / (m * m) - 2.0 * kernel_sum(x, y) / (n * m))


class Cmmd(TransformersNetworkMetric):
    name = "cmmd"
    version = "cmmd-1"
    Options = CmmdOptions
    outputs = (Output("cmmd", False, "CMMD"),)
    network_class = "CLIPVisionModelWithProjection"
    network_what = "CLIP weights"

    def __init__(self, options, device, cache_dir):
        super().__init__(options, device, cache_dir)
        self.cache = RefCache(self.cache_dir)
        self._ref: tuple[dict, torch.Tensor, float] | None = None

    def load_kwargs(self) -> dict[str, Any]:
        """A full CLIP checkpoint (model_type "clip", as the hub repo is): its vision config with the top-level
        ``projection_dim`` (the vision config's own default, 512, would re-initialise the projection)."""
        from transformers import AutoConfig
        try:
            cfg = AutoConfig.from_pretrained(str(self.path))
        except (OSError, ValueError) as e:
            raise MetricError(f"cmmd: option model: no readable config in {str(self.path)!r}: {e}") from e
        if getattr(cfg, "model_type", "") != "clip":
            return {}
        vision = cfg.vision_config
        vision.projection_dim = cfg.projection_dim
        return {"config": vision}

    @property
    def image_size(self) -> int:
        return int(self.model.config.image_size)

    def describe(self) -> dict[str, Any]:
        return {"implementation": f"{self.implementation()} image_embeds + float64 MMD", **self.opt,
                "weights": self.weights_id(), "input_size": self.image_size, "preprocess": PREPROCESS,
                "embedding": "image_embeds, L2-normalised", "kernel": KERNEL}

    @torch.inference_mode()
    def embeddings(self, images: torch.Tensor) -> torch.Tensor:
        """uint8 NHWC -> (B, projection_dim) L2-normalised float32 CPU embeddings, fixed-shape batches."""
        size = self.image_size

        def forward(chunk: torch.Tensor) -> torch.Tensor:
            e = self.model(pixel_values=cmmd_preprocess(chunk, size).to(self.device)).image_embeds.float()
            return e / e.norm(dim=-1, keepdim=True)

        return fixed_shape_forward(forward, images.cpu(), self.opt["batch_size"])[0].cpu()

    def reference_material(self, dataset) -> dict[str, Any]:
        return {"dataset": dataset.fingerprint(), "extractor": "transformers-clip-image-embeds-l2",
                "preprocess": PREPROCESS, "input_size": self.image_size, "weights": self.weights_id(),
                "code": self.version, "batch_size": self.opt["batch_size"],
                "libraries": library_versions("transformers", "pillow")}

    def reference(self, dataset) -> tuple[torch.Tensor, float]:
        """(reference embeddings, their kernel sum): computed once and cached on disk, the last set kept here."""
        material = self.reference_material(dataset)
        held = self._ref
        if held is None or held[0] != material:
            entry = self.cache.get_or_compute(material, lambda: {"embeddings": torch.cat(
                [self.embeddings(x) for x, _ in dataset.reference_batches(self.opt["batch_size"])])})
            name = f"kernel_sum_sigma{SIGMA:g}"
            if name not in entry:        # depends on the reference alone: kept in the same entry
                e = entry["embeddings"].to(self.stats_device())
                entry = {**entry, name: torch.tensor(kernel_sum(e, e), dtype=torch.float64)}
                self.cache.save(material, entry)
            held = self._ref = (material, entry["embeddings"], float(entry[name]))
        return held[1], held[2]

    def stats_device(self) -> torch.device:
        """Where the kernel sums run: the metric's GPU, else the CPU (float64 either way)."""
        return self.device if self.device.type == "cuda" else torch.device("cpu")

    def distance(self, gen: torch.Tensor, ref: torch.Tensor, ref_sum: float | None = None) -> float:
        """CMMD of generated embeddings against reference ones (``ref_sum``: the reference's `kernel_sum`)."""
        if len(gen) < 1 or len(ref) < 1:
            raise MetricError(f"cmmd: need at least 1 sample on each side, got {len(gen)} generated and "
                              f"{len(ref)} reference")
        dev = self.stats_device()
        return mmd(ref.to(dev), gen.to(dev), ref_sum)

    def accumulator(self, dataset) -> PerSampleAccumulator:
        ref, ref_sum = self.reference(dataset)        # this cell's own, whatever dataset the next cell uses
        return PerSampleAccumulator(lambda images, labels, prompts: {"e": self.embeddings(images)},
                                    lambda rows, labels: {"cmmd": self.distance(rows["e"], ref, ref_sum)},
                                    chunk=self.opt["batch_size"])
