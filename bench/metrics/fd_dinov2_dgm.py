"""FD-DINOv2 as dgm-eval and EDM2 compute it (Stein et al. 2023; Karras et al. 2024): metric ``fd_dinov2_dgm``.

References (read, not copied):
- github.com/layer6ai-labs/dgm-eval ``dgm_eval/models/dinov2.py`` (``DINOv2Encoder``: ``torch.hub.load(
  'facebookresearch/dinov2', 'dinov2_vitl14')``; ``transform``, ``clean_resize`` off as by default: torchvision
  ``Resize((224, 224), BICUBIC)`` then ``ToTensor()`` then ``Normalize`` with the ImageNet mean/std), applied to
  ``Image.open(path).convert('RGB')`` / ``Image.fromarray(npz image)`` (``dgm_eval/dataloaders.py``); features
  stored as float64 (``representations.py``, ``np.empty``); ``dgm_eval/metrics/fd.py`` (``compute_statistics``:
  ``np.mean``, ``np.cov(rowvar=False)``; ``compute_FD_with_stats``: ``linalg.sqrtm(sigma1 @ sigma2)``, when not
  finite again with 1e-6 added to both diagonals, the real part kept unless the diagonal's imaginary part exceeds
  1e-3, then ``|mu1 - mu2|^2 + tr sigma1 + tr sigma2 - 2 tr covmean``; ``reps1`` = the real set).
- github.com/NVlabs/edm2 ``calculate_metrics.py`` (``DINOv2Detector``, ``resize_mode='pil'``: PIL bicubic to
  224x224 on the uint8 image, ``/ 255``, the same mean/std: the same pixels as dgm-eval's path).
- github.com/facebookresearch/dinov2 ``dinov2/models/vision_transformer.py`` (``interpolate_pos_encoding``) and
  ``dinov2/hub/backbones.py`` (``interpolate_offset=0.1``, ``interpolate_antialias=False``).

Here, per image: the uint8 RGB image as a PIL image, ``resize((224, 224), Image.BICUBIC)`` (what torchvision's
``Resize`` calls on a PIL image; no crop, the aspect ratio is not kept), back to uint8, ``float / 255``, then
``(x - mean) / std`` in float32 (what ``ToTensor`` and ``Normalize`` compute). The network is a transformers
``Dinov2Model`` (default ``facebook/dinov2-large`` = ``dinov2_vitl14``) and the feature its ``pooler_output``: the
CLS token after the final layer norm, what the hub model's forward returns (``head`` is the identity). One
difference is removed: transformers resizes the 37x37 position-embedding grid (trained at 518 px) to 16x16 with
``size=(16, 16)``, the hub model with ``scale_factor = (16 + 0.1) / 37`` (its "historical kludge"), which samples
the grid at other points. `prepare` therefore replaces the model's position embeddings, once at load, by the grid
interpolated the hub model's way (`hub_position_embeddings`); transformers then uses them as they are (16x16 patches
at 224 px). The Frechet distance is dgm-eval's (`frechet_distance`). In the non-singular case it is the value
torch-fidelity computes (``fid_statistics_to_metric``: eigenvalues of sigma1 @ sigma2 instead of ``sqrtm``), equal to
rounding, not bit for bit (measured: 1e-14 relative with full-rank covariances, 3e-10 with 1,000 samples of 1,024-d
features; tested to 1e-6).

Opt-in extras on the same features (`bench.metrics.fd_extras`, options out of the validated dict while off):
density and coverage (``density_dinov2_dgm``, ``coverage_dinov2_dgm``; the real radii cached in the reference's
entry) and FD-infinity (``fd_dinov2_dgm_inf`` + ``_slope``, ``_residual``), its subsets measured with this same
distance against the reference statistics computed once, as dgm-eval's ``compute_FD_infinity`` does.

The torch-fidelity variant (TF1 bilinear resize) stays `bench.metrics.fd_dinov2` (``fd_dinov2``): the two names never
share numbers. Reference features are cached by content (`bench.metrics.refcache`) with this preprocessing, the
position-embedding rule, the weights, the batch size and the library versions (torch, transformers, pillow) in
the cache material. Real images are those the dataset delivers (already resized by it, e.g. to 256x256).
"""

from __future__ import annotations

import math
import warnings
from typing import Annotated, Any

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image
from pydantic import Field

from bench.metrics.base import MetricError, PerSampleAccumulator, fixed_shape_forward
from bench.metrics.fd_dinov2 import MEAN, STD
from bench.metrics.fd_extras import FdExtrasOptions, described, extra_names, extras, fd_outputs, reference_radii
from bench.metrics.fid_is_kid import Reference
from bench.metrics.hf_network import TransformersNetworkMetric
from bench.metrics.refcache import RefCache, library_versions

INPUT_SIZE = 224
OFFSET = 0.1          # the hub model's interpolate_offset
EPS = 1e-6            # dgm-eval's diagonal offset when sqrtm is not finite
PREPROCESS = ("PIL bicubic resize of the uint8 RGB image to 224x224 (no crop), /255 (ToTensor), ImageNet mean/std "
              "(dgm-eval DINOv2Encoder.transform, clean_resize off; EDM2 resize_mode='pil')")
POSITIONS = "hub DinoVisionTransformer: bicubic, scale_factor (224 // 14 + 0.1) / grid, no antialias"


class FdDinov2DgmOptions(FdExtrasOptions):
    """Options of `FdDinov2Dgm`: the DINOv2 weights (hub id, local folder or ``$VAR``), the network batch size and
    the opt-in extras (`bench.metrics.fd_extras.FdExtrasOptions`: off, and then not in the validated dict)."""
    model: str = "facebook/dinov2-large"
    batch_size: Annotated[int, Field(ge=1)] = 64


def dgm_preprocess(images: torch.Tensor) -> torch.Tensor:
    """uint8 NHWC RGB (any size) -> float32 NCHW 224x224 network input, per image through PIL (module docstring)."""
    if images.dtype != torch.uint8 or images.dim() != 4 or images.shape[-1] != 3:
        raise MetricError(f"fd_dinov2_dgm: expected uint8 NHWC RGB images, got {images.dtype} {tuple(images.shape)}")
    size = (INPUT_SIZE, INPUT_SIZE)
    out = np.stack([np.asarray(Image.fromarray(np.ascontiguousarray(a)).resize(size, Image.Resampling.BICUBIC))
                    for a in images.cpu().numpy()])
    x = torch.from_numpy(out).permute(0, 3, 1, 2).float().div(255)
    m = torch.tensor(MEAN, dtype=torch.float32).view(1, 3, 1, 1)
    s = torch.tensor(STD, dtype=torch.float32).view(1, 3, 1, 1)
    return (x - m) / s


def hub_position_embeddings(pos: torch.Tensor, size: int, patch: int) -> torch.Tensor:
    """A (1, 1 + M*M, D) position table (class token first) for ``size`` px input with ``patch`` px patches, as the
    hub model interpolates it: the M x M grid resized bicubically (float32, no antialias) with scale factor
    (size // patch + 0.1) / M to (size // patch)^2 entries; unchanged when the grid already has that size."""
    m, n = int(math.sqrt(pos.shape[1] - 1)), size // patch
    if m * m != pos.shape[1] - 1:
        raise MetricError(f"fd_dinov2_dgm: position embeddings of {pos.shape[1] - 1} patches are not a square grid")
    if m == n:
        return pos
    p = pos.float()
    grid = p[:, 1:].reshape(1, m, m, -1).permute(0, 3, 1, 2)
    s = float(n + OFFSET) / m
    grid = F.interpolate(grid, scale_factor=(s, s), mode="bicubic", antialias=False)
    if grid.shape[-2:] != (n, n):
        raise MetricError(f"fd_dinov2_dgm: position grid {m}x{m} resized to {tuple(grid.shape[-2:])}, not {n}x{n}")
    grid = grid.permute(0, 2, 3, 1).reshape(1, n * n, -1)
    return torch.cat([p[:, :1], grid], dim=1).to(pos.dtype)


def statistics(x: torch.Tensor) -> tuple[np.ndarray, np.ndarray]:
    """dgm-eval's ``compute_statistics`` on a float64 copy of the rows: (mean, covariance with rowvar=False)."""
    r = x.double().numpy()
    return np.atleast_1d(r.mean(axis=0)), np.atleast_2d(np.cov(r, rowvar=False))


def fd_from_statistics(mu1: np.ndarray, s1: np.ndarray, mu2: np.ndarray, s2: np.ndarray) -> float:
    """dgm-eval's ``compute_FD_with_stats`` (1 = the real set; module docstring)."""
    import scipy.linalg
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", scipy.linalg.LinAlgWarning)     # singular products: handled below
        covmean = scipy.linalg.sqrtm(s1.dot(s2))
        if not np.isfinite(covmean).all():
            offset = np.eye(s1.shape[0]) * EPS
            covmean = scipy.linalg.sqrtm((s1 + offset).dot(s2 + offset))
    if np.iscomplexobj(covmean):
        if not np.allclose(np.diagonal(covmean).imag, 0, atol=1e-3):
            raise MetricError(f"fd_dinov2_dgm: sqrtm has an imaginary component {np.max(np.abs(covmean.imag))}")
        covmean = covmean.real
    diff = mu1 - mu2
    return float(diff.dot(diff) + np.trace(s1) + np.trace(s2) - 2 * np.trace(covmean))


def frechet_distance(real: torch.Tensor, gen: torch.Tensor) -> float:
    """dgm-eval's ``compute_FD_with_reps(real, gen)`` on float64 copies of the features."""
    return fd_from_statistics(*statistics(real), *statistics(gen))


class FdDinov2Dgm(TransformersNetworkMetric):
    name = "fd_dinov2_dgm"
    version = "fd_dinov2_dgm-1"
    Options = FdDinov2DgmOptions
    outputs = fd_outputs("fd_dinov2_dgm", "FD-DINOv2-dgm")
    network_class = "Dinov2Model"
    network_what = "DINOv2 weights"
    unused_weights = ("embeddings.mask_token",)      # read only with bool_masked_pos (pre-training)

    def __init__(self, options, device, cache_dir):
        super().__init__(options, device, cache_dir)
        self.cache = RefCache(self.cache_dir)
        self._ref: tuple[dict, Reference] | None = None

    def prepare(self, model):
        """The hub model's position embeddings for 224 px input (module docstring), on this object's own model."""
        emb = model.embeddings
        patch = emb.patch_embeddings.patch_size
        patch = patch[0] if isinstance(patch, (tuple, list)) else int(patch)
        with torch.no_grad():
            table = hub_position_embeddings(emb.position_embeddings.detach(), INPUT_SIZE, patch)
        emb.position_embeddings = torch.nn.Parameter(table.contiguous(), requires_grad=False)
        return model

    def describe(self) -> dict[str, Any]:
        return {"implementation": f"{self.implementation()} + dgm-eval Frechet distance (scipy sqrtm)", **self.opt,
                "weights": self.weights_id(), "feature": "CLS token after the final layer norm (pooler_output)",
                "resize": PREPROCESS, "position_embeddings": POSITIONS, "statistics": "float64",
                "singular_offset": EPS, **described(self.options)}

    @torch.inference_mode()
    def features(self, images: torch.Tensor) -> torch.Tensor:
        """uint8 NHWC -> (B, hidden) float32 CPU features, in fixed-shape batches of ``batch_size``."""
        def forward(chunk: torch.Tensor) -> torch.Tensor:
            x = dgm_preprocess(chunk).to(self.device)
            return self.model(pixel_values=x).pooler_output.float()

        return fixed_shape_forward(forward, images.cpu(), self.opt["batch_size"])[0].cpu()

    def reference_material(self, dataset) -> dict[str, Any]:
        return {"dataset": dataset.fingerprint(), "extractor": "transformers-dinov2-cls", "preprocess": PREPROCESS,
                "position_embeddings": POSITIONS, "weights": self.weights_id(), "code": self.version,
                "batch_size": self.opt["batch_size"], "libraries": library_versions("transformers", "pillow")}

    def reference(self, dataset) -> Reference:
        """The dataset's reference features, computed once and cached on disk by content (density/coverage's k-NN
        radii, when asked for, in the same entry), the last set kept here; its statistics go in ``derived``."""
        material = self.reference_material(dataset)
        held = self._ref
        if held is None or held[0] != material:
            entry = self.cache.get_or_compute(material, lambda: {"features": torch.cat(
                [self.features(x) for x, _ in dataset.reference_batches(self.opt["batch_size"])])})
            entry, dc_radii = reference_radii(self.cache, material, entry, self.options, self.name)
            held = self._ref = (material, Reference(entry["features"], dc_radii=dc_radii))
        return held[1]

    def reference_features(self, dataset) -> torch.Tensor:
        return self.reference(dataset).features

    @staticmethod
    def distance(gen: torch.Tensor, ref: torch.Tensor) -> float:
        """dgm-eval's FD of generated features against reference ones (the reference first, as dgm-eval)."""
        _check(gen, ref)
        return frechet_distance(ref, gen)

    def compute(self, gen: torch.Tensor, ref: Reference) -> dict[str, float]:
        """The values of generated features (rows in sample order) against ``ref``: the FD and the extras asked
        for (FD-infinity's subsets measured with this same distance, the reference statistics computed once)."""
        _check(gen, ref.features)
        if "dgm_stats" not in ref.derived:
            ref.derived["dgm_stats"] = statistics(ref.features)
        real = ref.derived["dgm_stats"]

        def fd_of(sub: torch.Tensor) -> float:
            return fd_from_statistics(*real, *statistics(sub))

        more = extras(self.options, extra_names(self.name), gen, ref.features, ref.dc_radii, fd_of, self.name)
        return {"fd_dinov2_dgm": fd_of(gen), **more}

    def accumulator(self, dataset) -> PerSampleAccumulator:
        ref = self.reference(dataset)        # this cell's own, whatever dataset the next cell uses
        return PerSampleAccumulator(lambda images, labels, prompts: {"f": self.features(images)},
                                    lambda rows, labels: self.compute(rows["f"], ref), chunk=self.opt["batch_size"])


def _check(gen: torch.Tensor, ref: torch.Tensor) -> None:
    if len(gen) < 2 or len(ref) < 2:
        raise MetricError(f"fd_dinov2_dgm: need at least 2 samples on each side, got {len(gen)} generated and "
                          f"{len(ref)} reference")
