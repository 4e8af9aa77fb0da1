"""FD-DINOv2: the Frechet distance of DINOv2 CLS features (Stein et al., 2023), from locally available weights.

The network is a transformers ``Dinov2Model`` (default ``facebook/dinov2-large``, ViT-L/14) resolved through
`bench.hub.resolve_weights`: a local folder, ``$VAR`` or a Hugging Face id already in the local cache (or
downloadable); missing weights give one error saying where to put them. Input preprocessing is torch-fidelity's
``dinov2-vit-*-14`` extractor's: uint8 -> float, TF1-compatible bilinear resize to 224x224, ImageNet mean/std
on the 0..255 scale; the feature is the final-layer-normed CLS token (the hub model's output). Statistics are
float64 and the distance is torch-fidelity's. Reference features are cached by content (`bench.metrics.refcache`).
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import torch
import torch_fidelity
from pydantic import Field
from torch_fidelity.interpolate_compat_tensorflow import interpolate_bilinear_2d_like_tensorflow1x
from torch_fidelity.metric_fid import fid_features_to_statistics, fid_statistics_to_metric

from bench.hub import WeightsNotFound, resolve_weights
from bench.metrics.base import Metric, MetricError, PerSampleAccumulator, StrictOptions, fixed_shape_forward
from bench.metrics.clip_score import _folder_id
from bench.metrics.refcache import RefCache, library_versions
from bench.outputs import Output

INPUT_SIZE = 224
MEAN = (0.485, 0.456, 0.406)
STD = (0.229, 0.224, 0.225)
PREPROCESS = "uint8 -> float, TF1-compatible bilinear resize to 224x224, ImageNet mean/std (torch-fidelity dinov2)"


class FdDinov2Options(StrictOptions):
    """Options of `FdDinov2`: the DINOv2 weights (hub id, local folder or ``$VAR``) and the batch size."""
    model: str = "facebook/dinov2-large"
    batch_size: Annotated[int, Field(ge=1)] = 64


class FdDinov2(Metric):
    name = "fd_dinov2"
    version = "fd_dinov2-1"
    Options = FdDinov2Options
    outputs = (Output("fd_dinov2", False, "FD-DINOv2"),)

    def __init__(self, options: dict[str, Any] | None, device: torch.device, cache_dir: Path):
        super().__init__(options, device, cache_dir)
        self.cache = RefCache(cache_dir)
        self._model = None
        self._path: Path | None = None
        self._ref: tuple[dict, torch.Tensor] | None = None

    @classmethod
    def requirements(cls, options: dict[str, Any]) -> list:
        """The DINOv2 weights (a hub id in the local cache, a folder or ``$VAR``) and transformers."""
        from bench.preflight import package, weights
        o = cls.Options.model_validate(options or {})
        return [weights(o.model, "DINOv2 weights"), package("transformers", "transformers", "hf")]

    @property
    def path(self) -> Path:
        if self._path is None:
            try:
                self._path = resolve_weights(str(self.opt["model"]), what=f"{self.name}: DINOv2 weights")
            except WeightsNotFound as e:
                raise MetricError(str(e)) from None
        return self._path

    @property
    def model(self):
        if self._model is None:
            from transformers import Dinov2Model
            try:
                self._model = Dinov2Model.from_pretrained(str(self.path)).to(self.device).eval()
            except (OSError, ValueError) as e:
                raise MetricError(f"{self.name}: cannot load a Dinov2Model from {str(self.path)!r}: {e}") from e
        return self._model

    def weights_id(self) -> str:
        return _folder_id(str(self.opt["model"]), self.path)

    def version_key(self) -> str:
        return f"{self.version}|{self.weights_id()}"

    def describe(self) -> dict[str, Any]:
        import transformers
        return {"implementation": f"transformers {transformers.__version__} Dinov2Model + torch-fidelity "
                                  f"{torch_fidelity.__version__} FD", **self.opt, "weights": self.weights_id(),
                "feature": "CLS token after the final layer norm", "resize": PREPROCESS, "statistics": "float64"}

    @torch.inference_mode()
    def features(self, images: torch.Tensor) -> torch.Tensor:
        """uint8 NHWC -> (B, hidden) float32 CPU features."""
        def forward(chunk: torch.Tensor) -> torch.Tensor:
            x = chunk.permute(0, 3, 1, 2).float()
            x = interpolate_bilinear_2d_like_tensorflow1x(x, size=(INPUT_SIZE, INPUT_SIZE), align_corners=False)
            m = torch.tensor([255 * v for v in MEAN], device=x.device).view(1, 3, 1, 1)
            s = torch.tensor([255 * v for v in STD], device=x.device).view(1, 3, 1, 1)
            return self.model(pixel_values=(x - m) / s).pooler_output.float()

        return fixed_shape_forward(forward, images.to(self.device), self.opt["batch_size"])[0].cpu()

    def reference_features(self, dataset) -> torch.Tensor:
        material = {"dataset": dataset.fingerprint(), "extractor": "transformers-dinov2-cls",
                    "preprocess": PREPROCESS, "weights": self.weights_id(), "code": self.version,
                    "libraries": library_versions("torch-fidelity", "transformers")}
        if self._ref is None or self._ref[0] != material:
            feats = self.cache.get_or_compute(material, lambda: {"features": torch.cat(
                [self.features(x) for x, _ in dataset.reference_batches(self.opt["batch_size"])])})["features"]
            self._ref = (material, feats)
        return self._ref[1]

    @staticmethod
    def distance(gen: torch.Tensor, ref: torch.Tensor) -> float:
        if len(gen) < 2:
            raise MetricError(f"fd_dinov2: need at least 2 samples, got {len(gen)}")
        s_gen, s_ref = fid_features_to_statistics(gen.double()), fid_features_to_statistics(ref.double())
        return float(fid_statistics_to_metric(s_ref, s_gen, verbose=False)["frechet_inception_distance"])

    def accumulator(self, dataset) -> PerSampleAccumulator:
        ref = self.reference_features(dataset)
        return PerSampleAccumulator(lambda images, labels, prompts: {"f": self.features(images)},
                                    lambda rows, labels: {"fd_dinov2": self.distance(rows["f"], ref)},
                                    chunk=self.opt["batch_size"])
