"""FID, IS and KID from one feature pass, with torch-fidelity's extractors and its metric math.

Any torch-fidelity-registered extractor can be named (``inception-v3-compat`` by default, with an optional
local ``feature_extractor_weights_path``); the miniature world's ``mini-classifier`` registers itself on use.
Statistics are float64; IS uses a seeded permutation (the generation order is class-ordered) in 10 splits.
Reference features of a real set are computed once and cached on disk under a content key.
"""

from __future__ import annotations

import hashlib
import importlib
import importlib.metadata
import os
from pathlib import Path
from typing import Any

import torch
import torch_fidelity
from safetensors.torch import load_file, save_file
from torch_fidelity.metric_fid import fid_features_to_statistics, fid_statistics_to_metric
from torch_fidelity.metric_isc import isc_features_to_metric
from torch_fidelity.metric_kid import kid_features_to_metric
from torch_fidelity.registry import FEATURE_EXTRACTORS_REGISTRY
from torch_fidelity.utils import create_feature_extractor

from bench.cell import canonical_json
from bench.metrics.base import MetricError, PerSampleAccumulator
from bench.provenance import sha256_path

# Extractors that stepbench ships and registers on first use (torch-fidelity's own are always there).
EXTRA_EXTRACTORS = {"mini-classifier": "bench.mini.metric_nets:register"}
DEFAULTS = {
    "feature_extractor": "inception-v3-compat", "feature_extractor_weights_path": None,
    "feature_layer_fid": None, "feature_layer_isc": None, "isc_splits": 10, "isc_seed": 2020,
    "kid_subsets": 100, "kid_subset_size": 1000, "kid_seed": 2020, "kid_kernel_poly_degree": 3,
    "kid_kernel_poly_gamma": None, "kid_kernel_poly_coef0": 1, "batch_size": 64,
}


def _ensure_registered(name: str) -> None:
    if name not in FEATURE_EXTRACTORS_REGISTRY and name in EXTRA_EXTRACTORS:
        module, attr = EXTRA_EXTRACTORS[name].split(":")
        getattr(importlib.import_module(module), attr)()
    if name not in FEATURE_EXTRACTORS_REGISTRY:
        known = sorted(set(FEATURE_EXTRACTORS_REGISTRY) | set(EXTRA_EXTRACTORS))
        raise MetricError(f"fid_is_kid: unknown feature_extractor {name!r}; known: {', '.join(known)}")


class FidIsKid:
    name = "fid_is_kid"
    version = "fid_is_kid-1"
    defaults = DEFAULTS
    outputs = {"fid": False, "is": True, "kid": False}   # primary values and their direction; *_std ride along

    def __init__(self, options: dict[str, Any], device: torch.device, cache_dir: Path):
        unknown = sorted(set(options) - set(self.defaults))
        if unknown:
            raise MetricError(f"fid_is_kid: unknown option {unknown[0]!r}; known: {', '.join(DEFAULTS)}")
        self.opt = {**DEFAULTS, **options}
        self.device, self.cache_dir = device, Path(cache_dir)
        name = self.opt["feature_extractor"]
        _ensure_registered(name)
        cls = FEATURE_EXTRACTORS_REGISTRY[name]
        self.layer_fid = self.opt["feature_layer_fid"] or cls.get_default_feature_layer_for_metric("fid")
        self.layer_isc = self.opt["feature_layer_isc"] or cls.get_default_feature_layer_for_metric("isc")
        self._cls = cls
        self._extractor = None
        self._ref: torch.Tensor | None = None
        self._ref_key: str | None = None

    # -- identity -------------------------------------------------------------------------------------------
    def weights_id(self) -> str:
        path = self.opt["feature_extractor_weights_path"]
        if path:
            if not Path(path).exists():
                raise MetricError(f"fid_is_kid: feature_extractor_weights_path {path!r} does not exist")
            return "sha256:" + sha256_path(path)
        module = importlib.import_module(self._cls.__module__)
        ident = getattr(module, "weights_id", None)
        if callable(ident):
            return ident()
        return f"torch-fidelity-default:{torch_fidelity.__version__}"

    def version_key(self) -> str:
        return f"{self.version}|{self.opt['feature_extractor']}|{self.weights_id()}|tf{torch_fidelity.__version__}"

    def describe(self) -> dict[str, Any]:
        return {"implementation": f"torch-fidelity {torch_fidelity.__version__}", **self.opt,
                "feature_layer_fid": self.layer_fid, "feature_layer_isc": self.layer_isc,
                "weights": self.weights_id(), "statistics": "float64"}

    # -- features -------------------------------------------------------------------------------------------
    def _safe_weights_path(self) -> str:
        """A weights file torch-fidelity can read, proven free of pickled code first (it loads with
        weights_only=False itself): safetensors are converted, .pth files must load with weights_only=True."""
        path = Path(self.opt["feature_extractor_weights_path"])
        if not path.is_file():
            raise MetricError(f"fid_is_kid: feature_extractor_weights_path {str(path)!r} is not a file")
        if path.suffix == ".safetensors":
            out = self.cache_dir / "weights" / f"{sha256_path(path)}.pth"
            if not out.exists():
                out.parent.mkdir(parents=True, exist_ok=True)
                tmp = out.with_suffix(f".{os.getpid()}.tmp")
                torch.save(load_file(str(path)), tmp)
                os.replace(tmp, out)
            return str(out)
        try:
            torch.load(path, map_location="cpu", weights_only=True)
        except Exception as e:
            raise MetricError(f"fid_is_kid: {path}: refusing to load: not a plain tensor state dict ({e})") from None
        return str(path)

    @property
    def extractor(self):
        if self._extractor is None:
            kwargs = {}
            if self.opt["feature_extractor_weights_path"]:
                kwargs["feature_extractor_weights_path"] = self._safe_weights_path()
            try:
                ext = create_feature_extractor(self.opt["feature_extractor"], [self.layer_fid, self.layer_isc],
                                               cuda=False, verbose=False, **kwargs)
            except Exception as e:  # torch-fidelity raises plain exceptions (e.g. a failed download offline)
                raise MetricError(f"fid_is_kid: cannot create feature extractor {self.opt['feature_extractor']!r}: "
                                  f"{e}. Offline, give feature_extractor_weights_path (a local weights file).") from e
            self._extractor = ext.to(self.device)
        return self._extractor

    @torch.inference_mode()
    def features(self, images: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """uint8 NHWC -> (fid features, isc logits) as float32 CPU tensors."""
        x = images.to(self.device).permute(0, 3, 1, 2).contiguous()
        feats = []
        for chunk in x.split(self.opt["batch_size"]):
            feats.append(self.extractor(chunk))
        fid = torch.cat([f[0] for f in feats]).float().cpu()
        isc = torch.cat([f[1] for f in feats]).float().cpu()
        return fid, isc

    def reference_features(self, dataset) -> torch.Tensor:
        """FID-layer features of the dataset's whole reference set, computed once and cached on disk."""
        key = hashlib.sha256(canonical_json({
            "dataset": dataset.fingerprint(), "metric": self.version_key(), "layer": self.layer_fid,
        }).encode()).hexdigest()
        if self._ref_key == key:
            return self._ref
        path = self.cache_dir / "refstats" / f"{key}.safetensors"
        if path.exists():
            ref = load_file(str(path))["features"]
        else:
            chunks = [self.features(imgs)[0] for imgs, _ in dataset.reference_batches(self.opt["batch_size"])]
            ref = torch.cat(chunks)
            path.parent.mkdir(parents=True, exist_ok=True)
            tmp = path.with_suffix(f".{os.getpid()}.tmp")
            save_file({"features": ref.contiguous()}, str(tmp), metadata={"dataset": dataset.name,
                                                                           "metric": self.version_key()})
            os.replace(tmp, path)
        self._ref, self._ref_key = ref, key
        return ref

    # -- accumulate -----------------------------------------------------------------------------------------
    def accumulator(self, dataset) -> PerSampleAccumulator:
        ref = self.reference_features(dataset)

        def embed(images, labels, prompts):
            fid, isc = self.features(images)
            return {"fid": fid, "isc": isc}

        def finalize(rows, labels):
            return self.compute(rows["fid"], rows["isc"], ref)

        return PerSampleAccumulator(embed, finalize)

    def compute(self, gen_fid: torch.Tensor, gen_isc: torch.Tensor, ref_fid: torch.Tensor) -> dict[str, float]:
        o = self.opt
        n = len(gen_fid)
        if n < 2:
            raise MetricError(f"fid_is_kid: need at least 2 samples, got {n}")
        s_gen = fid_features_to_statistics(gen_fid.double())
        s_ref = fid_features_to_statistics(ref_fid.double())
        fid = fid_statistics_to_metric(s_ref, s_gen, verbose=False)["frechet_inception_distance"]
        isc = isc_features_to_metric(gen_isc, splits=o["isc_splits"], shuffle=True, rng_seed=o["isc_seed"])
        subset = min(o["kid_subset_size"], n, len(ref_fid))
        kid = kid_features_to_metric(gen_fid, ref_fid, kid_subsets=o["kid_subsets"], kid_subset_size=subset,
                                     kid_kernel="poly", kid_kernel_poly_degree=o["kid_kernel_poly_degree"],
                                     kid_kernel_poly_gamma=o["kid_kernel_poly_gamma"],
                                     kid_kernel_poly_coef0=o["kid_kernel_poly_coef0"], rng_seed=o["kid_seed"],
                                     verbose=False)
        return {"fid": fid, "is": isc["inception_score_mean"], "is_std": isc["inception_score_std"],
                "kid": kid["kernel_inception_distance_mean"], "kid_std": kid["kernel_inception_distance_std"]}
