"""FD-DINOv2: the Frechet distance of DINOv2 CLS features (Stein et al., 2023), from locally available weights.

The network is a transformers ``Dinov2Model`` (default ``facebook/dinov2-large``, ViT-L/14) resolved through
`bench.hub.resolve_weights`: a local folder, ``$VAR`` or a Hugging Face id already in the local cache (or
downloadable); missing weights give one error saying where to put them. Input preprocessing is torch-fidelity's
``dinov2-vit-*-14`` extractor's: uint8 -> float, TF1-compatible bilinear resize to 224x224, ImageNet mean/std
on the 0..255 scale; the feature is the final-layer-normed CLS token (the hub model's output). Statistics are
float64 and the distance is torch-fidelity's. Reference features are cached by content (`bench.metrics.refcache`).

Opt-in extras on the same features (`bench.metrics.fd_extras`: options left out of the validated dict, and so of
every cell key, while at their defaults): density and coverage (``density_coverage``, k = ``dc_neighborhood``;
the reference's k-NN radii cached in its refstats entry) and FD-infinity (``fd_inf``, ``fd_inf_points``,
``fd_inf_seed``), as ``density_dinov2``, ``coverage_dinov2`` and ``fd_dinov2_inf`` (+ ``_slope``, ``_residual``).
A subclass with other preprocessing sets ``name``, ``version``, ``fd_output`` (its value's name; the extras are
named from it), ``outputs = fd_outputs(fd_output, label)``, ``extractor_id`` and ``preprocess`` (in
`reference_material` and `describe`) and overrides `features`; a subclass whose outputs do not declare its
extras is a TypeError at import. Another FD metric can use `bench.metrics.fd_extras` directly.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any, ClassVar

import torch
import torch_fidelity
from pydantic import Field
from torch_fidelity.interpolate_compat_tensorflow import interpolate_bilinear_2d_like_tensorflow1x
from torch_fidelity.metric_fid import fid_features_to_statistics, fid_statistics_to_metric

from bench.hub import WeightsNotFound, resolve_weights
from bench.metrics.base import Metric, MetricError, PerSampleAccumulator, fixed_shape_forward
from bench.metrics.clip_score import _folder_id
from bench.metrics.fd_extras import FdExtrasOptions, described, extra_names, extras, fd_outputs, reference_radii
from bench.metrics.fid_is_kid import Reference
from bench.metrics.refcache import RefCache, library_versions

INPUT_SIZE = 224
MEAN = (0.485, 0.456, 0.406)
STD = (0.229, 0.224, 0.225)
PREPROCESS = "uint8 -> float, TF1-compatible bilinear resize to 224x224, ImageNet mean/std (torch-fidelity dinov2)"


class FdDinov2Options(FdExtrasOptions):
    """Options of `FdDinov2`: the DINOv2 weights (hub id, local folder or ``$VAR``), the batch size, and the
    extras (`FdExtrasOptions`: off, and then not in the validated dict)."""
    model: str = "facebook/dinov2-large"
    batch_size: Annotated[int, Field(ge=1)] = 64


class FdDinov2(Metric):
    """FD of DINOv2 CLS features (+ the opt-in extras). Class attributes a variant sets: see the module doc."""
    name = "fd_dinov2"
    version = "fd_dinov2-1"
    Options = FdDinov2Options
    fd_output: ClassVar[str] = "fd_dinov2"               # the FD value's name; the extras are named from it
    extractor_id: ClassVar[str] = "transformers-dinov2-cls"   # in the reference material (cache key)
    preprocess: ClassVar[str] = PREPROCESS                # in the reference material and in every row
    outputs = fd_outputs("fd_dinov2", "FD-DINOv2")

    def __init_subclass__(cls, **kwargs):
        super().__init_subclass__(**kwargs)
        declared = {o.name for o in cls.outputs}
        missing = [v for v in (cls.fd_output, *extra_names(cls.fd_output).values()) if v not in declared]
        if missing:
            raise TypeError(f"{cls.__name__}: outputs do not declare {missing}; set fd_output and "
                            f"outputs = fd_outputs(fd_output, label)")

    def __init__(self, options: dict[str, Any] | None, device: torch.device, cache_dir: Path):
        super().__init__(options, device, cache_dir)
        self.cache = RefCache(cache_dir)
        self._model = None
        self._path: Path | None = None
        self._ref: tuple[dict, Reference] | None = None

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
                "feature": "CLS token after the final layer norm", "resize": self.preprocess,
                "statistics": "float64", **described(self.options)}

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

    def reference_material(self, dataset) -> dict[str, Any]:
        """Everything that determines the reference features (the cache key; see `bench.metrics.refcache`)."""
        return {"dataset": dataset.fingerprint(), "extractor": self.extractor_id,
                "preprocess": self.preprocess, "weights": self.weights_id(), "code": self.version,
                "libraries": library_versions("torch-fidelity", "transformers")}

    def reference(self, dataset) -> Reference:
        """The dataset's features computed once and cached on disk (density/coverage's k-NN radii, when asked
        for, in the same entry), kept in memory for the last set used; FD statistics go in its ``derived``."""
        material = self.reference_material(dataset)
        if self._ref is None or self._ref[0] != material:
            entry = self.cache.get_or_compute(material, lambda: {"features": torch.cat(
                [self.features(x) for x, _ in dataset.reference_batches(self.opt["batch_size"])])})
            entry, dc_radii = reference_radii(self.cache, material, entry, self.options, self.name)
            self._ref = (material, Reference(entry["features"], dc_radii=dc_radii))
        return self._ref[1]

    def reference_features(self, dataset) -> torch.Tensor:
        return self.reference(dataset).features

    @staticmethod
    def distance(gen: torch.Tensor, ref: torch.Tensor) -> float:
        if len(gen) < 2:
            raise MetricError(f"fd_dinov2: need at least 2 samples, got {len(gen)}")
        s_gen, s_ref = fid_features_to_statistics(gen.double()), fid_features_to_statistics(ref.double())
        return float(fid_statistics_to_metric(s_ref, s_gen, verbose=False)["frechet_inception_distance"])

    def compute(self, gen: torch.Tensor, ref: Reference) -> dict[str, float]:
        """The values of generated features (rows in sample order) against the reference ``ref``."""
        out = {self.fd_output: self.distance(gen, ref.features)}
        if self.options.fd_inf and "fd_stats" not in ref.derived:     # once per reference set, not per subset
            ref.derived["fd_stats"] = fid_features_to_statistics(ref.features.double())

        def fd_of(sub: torch.Tensor) -> float:
            s_sub = fid_features_to_statistics(sub.double())
            return float(fid_statistics_to_metric(ref.derived["fd_stats"], s_sub,
                                                  verbose=False)["frechet_inception_distance"])

        return {**out, **extras(self.options, extra_names(self.fd_output), gen, ref.features, ref.dc_radii, fd_of,
                                self.name)}

    def accumulator(self, dataset) -> PerSampleAccumulator:
        ref = self.reference(dataset)             # the cell's own, whatever cell starts next
        return PerSampleAccumulator(lambda images, labels, prompts: {"f": self.features(images)},
                                    lambda rows, labels: self.compute(rows["f"], ref),
                                    chunk=self.opt["batch_size"])
