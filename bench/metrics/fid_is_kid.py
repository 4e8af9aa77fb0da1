"""FID, IS, KID and precision/recall from one feature pass, with torch-fidelity's extractors and metric math.

Any torch-fidelity-registered extractor can be named (``inception-v3-compat`` by default); the miniature
world's ``mini-classifier`` registers itself on use. Weights: ``feature_extractor_weights_path`` (a local file,
``$VAR/file`` or ``hf://org/repo/file``, through `bench.hub.resolve_weights`), else ``$STEPBENCH_INCEPTION_WEIGHTS``
for inception-v3-compat, else torch-fidelity's own file in the torch hub cache (downloaded there when online).
Statistics are float64; IS uses a seeded permutation (the generation order is class-ordered) in 10 splits;
precision/recall use k = 3 nearest neighbours; an optional seeded bootstrap gives a FID interval. Opt-in extras on
the same FID-layer features: density and coverage (``density_coverage``, k = ``dc_neighborhood``: `bench.metrics.prdc`,
the real radii cached with the reference) and FID-infinity (``fid_inf``: `bench.metrics.fd_infinity`). Their options
stay out of the validated dict (and so of every cell key) while at their defaults, so existing cells keep their keys.
Reference features of a real set are computed once and cached on disk by content (`bench.metrics.refcache`); in
memory, each set's `Reference` also keeps what depends on it alone (k-NN radii, FID statistics, KID's kernel matrix
and subset sums) for the next cell. KID is torch-fidelity's, evaluated on kernel blocks (`bench.metrics.kid`, bit
for bit), and the matrix products run on one OpenBLAS thread (`bench.metrics.blas`, the same bits).
"""

from __future__ import annotations

import importlib
import os
import threading
from collections import OrderedDict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated, Any

import torch
import torch_fidelity
from pydantic import Field, model_serializer
from safetensors.torch import load_file
from torch_fidelity.metric_fid import fid_features_to_statistics, fid_statistics_to_metric
from torch_fidelity.metric_isc import isc_features_to_metric
from torch_fidelity.registry import FEATURE_EXTRACTORS_REGISTRY
from torch_fidelity.utils import create_feature_extractor

from bench.cell import canonical_json
from bench.hub import WeightsNotFound, resolve_weights
from bench.metrics import blas, bootstrap, fd_extras, fd_infinity, kid, prc, prdc
from bench.metrics.base import Metric, MetricError, PerSampleAccumulator, StrictOptions, companion, fixed_shape_forward
from bench.metrics.bootstrap import Level, Resamples
from bench.metrics.refcache import RefCache, library_versions, with_numerics
from bench.options import keyed_when_set
from bench.outputs import Output
from bench.provenance import sha256_path
from bench.tempfiles import temp_name

# Extractors that stepbench ships and registers on first use (torch-fidelity's own are always there).
EXTRA_EXTRACTORS = {"mini-classifier": "bench.mini.metric_nets:register"}
# Batch and count options are positive integers.
Positive = Annotated[int, Field(ge=1)]


class FidIsKidOptions(StrictOptions):
    """Options of `FidIsKid` (the defaults are torch-fidelity's, except the seeded IS permutation)."""
    feature_extractor: str = "inception-v3-compat"       # any torch-fidelity extractor (checked when built)
    feature_extractor_weights_path: str | None = None
    feature_layer_fid: str | None = None                  # None: the extractor's default layer
    feature_layer_isc: str | None = None
    isc_splits: Positive = 10
    isc_seed: int = 2020
    kid_subsets: Positive = 100
    kid_subset_size: Positive = 1000
    kid_seed: int = 2020
    kid_kernel_poly_degree: int = 3
    kid_kernel_poly_gamma: float | None = None
    kid_kernel_poly_coef0: float = 1.0
    batch_size: Positive = 64
    prc: bool = True
    prc_neighborhood: Positive = 3
    prc_batch_size: Positive = 10000
    bootstrap: Resamples = 0
    bootstrap_seed: int = 2020
    bootstrap_level: Level = 0.95
    density_coverage: bool = False                        # density and coverage (Naeem et al. 2020)
    dc_neighborhood: prdc.Neighbours = 5
    fid_inf: bool = False                                 # FID-infinity (Chong & Forsyth 2020)
    fid_inf_points: fd_infinity.Points = 15
    fid_inf_seed: int = 2020

    @model_serializer(mode="wrap")
    def _keyed(self, handler) -> dict[str, Any]:
        """The validated dict without the extras' options at their defaults: earlier cells keep their keys."""
        return keyed_when_set(handler(self), EXTRAS)


# The options added after cells were stored, keyed only when set (name -> default)
EXTRAS = {k: FidIsKidOptions.model_fields[k].default
          for k in ("density_coverage", "dc_neighborhood", "fid_inf", "fid_inf_points", "fid_inf_seed")}
# The extras' value names (`bench.metrics.fd_extras.extras`)
EXTRA_NAMES = {"density": "density", "coverage": "coverage", "inf": "fid_inf", "slope": "fid_inf_slope",
               "residual": "fid_inf_residual"}

INCEPTION_ENV = "STEPBENCH_INCEPTION_WEIGHTS"
# How each extractor turns uint8 images into its input (part of the reference-cache key and of every row).
PREPROCESS = {"inception-v3-compat": "uint8 -> float, TF1-compatible bilinear resize to 299x299, no antialias"}


def _ensure_registered(name: str) -> None:
    if name not in FEATURE_EXTRACTORS_REGISTRY and name in EXTRA_EXTRACTORS:
        module, attr = EXTRA_EXTRACTORS[name].split(":")
        getattr(importlib.import_module(module), attr)()
    if name not in FEATURE_EXTRACTORS_REGISTRY:
        known = sorted(set(FEATURE_EXTRACTORS_REGISTRY) | set(EXTRA_EXTRACTORS))
        raise MetricError(f"fid_is_kid: unknown feature_extractor {name!r}; known: {', '.join(known)}")


def _default_weights(extractor: str) -> tuple[Path, str] | None:
    """(file in the torch hub cache, its download URL) of torch-fidelity's own inception-v3-compat weights."""
    cls = FEATURE_EXTRACTORS_REGISTRY.get(extractor)
    url = getattr(importlib.import_module(cls.__module__), "URL_INCEPTION_V3", None) if cls is not None else None
    if extractor != "inception-v3-compat" or not url:
        return None
    return Path(torch.hub.get_dir()) / "checkpoints" / url.rsplit("/", 1)[-1], url


# Reference sets held in memory per metric: the datasets of a suite, at least two (a cell finishing while the next,
# of another dataset, starts)
MAX_REFERENCES = 3


def _same_float(a: float, b: float) -> bool:
    """The same value, NaN included (a FID of degenerate statistics)."""
    return a == b or (a != a and b != b)


@dataclass
class Reference:
    """What depends on one reference set alone: its FID-layer features, the k-NN radii of its manifold (precision /
    recall; None without them) and what `FidIsKid.compute` derives from them on first use (``derived``: FID
    statistics, KID's `kid.ReferenceKernel`); ``dc_radii``: density/coverage's k-NN radii (None unless asked for),
    kept in the same cache entry. A cell's accumulator holds its own, so a cell finishing on a worker thread
    while the next cell, of another dataset, starts never reads the other's."""
    features: torch.Tensor
    radii: torch.Tensor | None = None
    dc_radii: torch.Tensor | None = None
    derived: dict[str, Any] = field(default_factory=dict)


class FidIsKid(Metric):
    name = "fid_is_kid"
    version = "fid_is_kid-2"
    Options = FidIsKidOptions
    outputs = (Output("fid", False, "FID"), Output("is", True, "IS"), companion("is_std", "IS", "std"),
               Output("kid", False, "KID"), companion("kid_std", "KID", "std"),
               Output("precision", True, "Precision"), Output("recall", True, "Recall"),
               companion("fid_ci_low", "FID", "CI low"), companion("fid_ci_high", "FID", "CI high"),
               Output("density", True, "Density"), Output("coverage", True, "Coverage"),
               Output("fid_inf", False, "FID-inf"), companion("fid_inf_slope", "FID-inf", "slope"),
               companion("fid_inf_residual", "FID-inf", "fit residual"))

    def __init__(self, options: dict[str, Any] | None, device: torch.device, cache_dir: Path):
        super().__init__(options, device, cache_dir)
        self.cache = RefCache(self.cache_dir)
        name = self.opt["feature_extractor"]
        _ensure_registered(name)
        cls = FEATURE_EXTRACTORS_REGISTRY[name]
        self.layer_fid = self.opt["feature_layer_fid"] or cls.get_default_feature_layer_for_metric("fid")
        self.layer_isc = self.opt["feature_layer_isc"] or cls.get_default_feature_layer_for_metric("isc")
        self._cls = cls
        self._extractor = None
        self._refs: OrderedDict[str, Reference] = OrderedDict()   # by material, the last `MAX_REFERENCES` used
        self._refs_lock = threading.Lock()
        self._weights: tuple[Path | None, str] | None = None

    @classmethod
    def requirements(cls, options: dict[str, Any]) -> list:
        """The extractor's weights: the given file (or ``$STEPBENCH_INCEPTION_WEIGHTS``), else torch-fidelity's own
        file in the torch hub cache (downloaded there on first use when its host answers)."""
        from bench.preflight import local_file, weights
        o = cls.Options.model_validate(options or {})
        inception = o.feature_extractor == "inception-v3-compat"
        ref = o.feature_extractor_weights_path or (os.environ.get(INCEPTION_ENV) or None if inception else None)
        if ref:
            return [weights(str(ref), "Inception weights" if inception else f"{o.feature_extractor} weights")]
        default = _default_weights(o.feature_extractor)
        if default is None:
            return []
        path, url = default
        return [local_file(path, "torch-fidelity's Inception weights", url=url,
                           get=f"{url} into {path.parent}, or set feature_extractor_weights_path or ${INCEPTION_ENV}")]

    # -- identity -------------------------------------------------------------------------------------------
    def default_weights_file(self) -> Path | None:
        """Where torch-fidelity keeps its own weights for this extractor (torch hub cache), if it has a URL."""
        default = _default_weights(self.opt["feature_extractor"])
        return None if default is None else default[0]

    def weights(self) -> tuple[Path | None, str]:
        """(local weights file or None for the extractor's own default, identity string for keys and rows)."""
        if self._weights is None:
            ref = self.opt["feature_extractor_weights_path"]
            if not ref and self.opt["feature_extractor"] == "inception-v3-compat":
                ref = os.environ.get(INCEPTION_ENV) or None
            if ref:
                try:
                    path = resolve_weights(str(ref), what=f"{self.name}: feature_extractor_weights_path")
                except WeightsNotFound as e:
                    raise MetricError(str(e)) from None
                if not path.is_file():
                    raise MetricError(f"{self.name}: feature_extractor_weights_path {str(path)!r} is not a file")
                self._weights = (path, "sha256:" + sha256_path(path))
            else:
                module = importlib.import_module(self._cls.__module__)
                ident = getattr(module, "weights_id", None)
                default = self.default_weights_file()
                if callable(ident):
                    self._weights = (None, ident())
                elif default is not None:   # the file name carries torch-fidelity's hash of its content
                    self._weights = (default if default.is_file() else None, f"torch-fidelity:{default.name}")
                else:
                    self._weights = (None, f"torch-fidelity-default:{torch_fidelity.__version__}")
        return self._weights

    def weights_id(self) -> str:
        return self.weights()[1]

    def version_key(self) -> str:
        return f"{self.version}|{self.opt['feature_extractor']}|{self.weights_id()}|tf{torch_fidelity.__version__}"

    def forward_identity(self) -> tuple:
        """What determines `features`' computation (extractor, weights, layers, device): `bench.metrics.remainder`'s
        key for the short-chunk verdicts, shared by every instance that computes the same function."""
        return (self.name, self.version_key(), self.layer_fid, self.layer_isc, str(self.device))

    def preprocess(self) -> str:
        return PREPROCESS.get(self.opt["feature_extractor"], f"{self.opt['feature_extractor']}'s own")

    def describe(self) -> dict[str, Any]:
        return {"implementation": f"torch-fidelity {torch_fidelity.__version__}", **self.opt,
                "feature_layer_fid": self.layer_fid, "feature_layer_isc": self.layer_isc,
                "weights": self.weights_id(), "resize": self.preprocess(), "statistics": "float64",
                "isc_shuffle": "seeded permutation", "bootstrap_over": "generated samples (reference fixed)",
                **fd_extras.described(self.options, "fid_inf")}

    # -- features -------------------------------------------------------------------------------------------
    def _safe_weights_path(self) -> str:
        """A weights file torch-fidelity can read, proven free of pickled code first (it loads with
        weights_only=False itself): safetensors are converted, .pth files must load with weights_only=True."""
        path = self.weights()[0]
        if path.suffix == ".safetensors":
            out = self.cache_dir / "weights" / f"{sha256_path(path)}.pth"
            if not out.exists():
                out.parent.mkdir(parents=True, exist_ok=True)
                tmp = temp_name(out)
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
            if self.weights()[0] is not None:
                kwargs["feature_extractor_weights_path"] = self._safe_weights_path()
            try:
                ext = create_feature_extractor(self.opt["feature_extractor"], [self.layer_fid, self.layer_isc],
                                               cuda=False, verbose=False, **kwargs)
            except Exception as e:  # torch-fidelity raises plain exceptions (e.g. a failed download offline)
                default = self.default_weights_file()
                where = f"put torch-fidelity's file at {str(default)!r}, or " if default else ""
                raise MetricError(f"fid_is_kid: cannot create feature extractor {self.opt['feature_extractor']!r} "
                                  f"({type(e).__name__}: {e}); offline, {where}give feature_extractor_weights_path "
                                  f"(a local file) or set ${INCEPTION_ENV}") from e
            self._extractor = ext.to(self.device)
        return self._extractor

    @torch.inference_mode()
    def features(self, images: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """uint8 NHWC -> (fid features, isc logits) as float32 CPU tensors (fixed-shape batches: see base)."""
        x = images.to(self.device).permute(0, 3, 1, 2).contiguous()
        fid, isc = fixed_shape_forward(self.extractor, x, self.opt["batch_size"],
                                       same_bits_key=self.forward_identity())
        return fid.float().cpu(), isc.float().cpu()

    def reference_material(self, dataset) -> dict[str, Any]:
        """Everything that determines the reference features (the cache key; see `bench.metrics.refcache`)."""
        return {"dataset": dataset.fingerprint(), "extractor": self.opt["feature_extractor"],
                "layer": self.layer_fid, "preprocess": self.preprocess(), "weights": self.weights_id(),
                "code": self.version, "libraries": library_versions("torch-fidelity")}

    def reference(self, dataset) -> Reference:
        """The dataset's `Reference`: its FID-layer features computed once and cached on disk (the k-NN radii in
        the same cache entry), kept in memory for the last `MAX_REFERENCES` sets used. Safe to call from two
        threads (a cell finishing while the next one starts)."""
        material = self.reference_material(dataset)
        key = canonical_json(with_numerics(material))      # a TF32 suite's features are not the strict ones
        with self._refs_lock:
            if key in self._refs:
                self._refs.move_to_end(key)
                return self._refs[key]

        def compute():
            chunks = [self.features(imgs)[0] for imgs, _ in dataset.reference_batches(self.opt["batch_size"])]
            return {"features": torch.cat(chunks)}

        entry = self.cache.get_or_compute(material, compute)
        radii = None
        if self.opt["prc"]:     # the real manifold's k-NN radii depend on the reference features alone:
            k, bs = self.opt["prc_neighborhood"], self.opt["prc_batch_size"]   # kept in the same cache entry
            name = f"prc_radii_k{k}_batch{bs}"
            if name not in entry:
                entry = {**entry, name: prc.radii(entry["features"], k, bs)}
                self.cache.save(material, entry)
            radii = entry[name]
        # density/coverage's radii (k = dc_neighborhood; None when off): in the same entry
        entry, dc_radii = fd_extras.reference_radii(self.cache, material, entry, self.options, self.name)
        with self._refs_lock:
            ref = self._refs.setdefault(key, Reference(entry["features"], radii, dc_radii))   # another's, if first
            self._refs.move_to_end(key)
            while len(self._refs) > MAX_REFERENCES:
                self._refs.popitem(last=False)
        return ref

    def reference_features(self, dataset) -> torch.Tensor:
        """FID-layer features of the dataset's whole reference set (`reference`)."""
        return self.reference(dataset).features

    # -- accumulate -----------------------------------------------------------------------------------------
    def accumulator(self, dataset) -> PerSampleAccumulator:
        ref = self.reference(dataset)             # the cell's own: never another dataset's, whatever runs next

        def embed(images, labels, prompts):
            fid, isc = self.features(images)
            return {"fid": fid, "isc": isc}

        def finalize(rows, labels):
            return self.compute(rows["fid"], rows["isc"], ref.features, ref)

        return PerSampleAccumulator(embed, finalize, chunk=self.opt["batch_size"])

    def compute(self, gen_fid: torch.Tensor, gen_isc: torch.Tensor, ref_fid: torch.Tensor,
                reference: Reference | None = None) -> dict[str, float]:
        """The values of generated features against ``ref_fid``; ``reference``: the `Reference` they are the
        features of (found among the held ones when not given), whose radii and derived statistics are reused."""
        o = self.opt
        n = len(gen_fid)
        if n < 2:
            raise MetricError(f"fid_is_kid: need at least 2 samples, got {n}")
        if reference is None or reference.features is not ref_fid:
            with self._refs_lock:
                held = [r for r in self._refs.values() if r.features is ref_fid]
            reference = held[0] if held else Reference(ref_fid)      # other features: nothing kept for them
        derived = reference.derived               # what depends on the reference alone is computed once per set
        subset = min(o["kid_subset_size"], n, len(ref_fid))
        # mean, covariance and KID's matrix products: the same bits on one OpenBLAS thread as on many, and one
        # thread leaves no spinning BLAS threads behind for the next network forward (`bench.metrics.blas`)
        with blas.single_threaded():
            if "fid_stats" not in derived:
                derived["fid_stats"] = fid_features_to_statistics(ref_fid.double())
            s_gen = fid_features_to_statistics(gen_fid.double())
            poly = (o["kid_kernel_poly_degree"], o["kid_kernel_poly_gamma"], o["kid_kernel_poly_coef0"])
            kept = derived.get("kid_kernel")      # (kernel parameters, the reference's `kid.ReferenceKernel`)
            if (kept is None or kept[0] != poly) and kid.fits(n, len(ref_fid)):
                kept = derived["kid_kernel"] = (poly, kid.reference_kernel(ref_fid.numpy(), *poly))
            kd = kid.kid_poly(gen_fid, ref_fid, kid_subsets=o["kid_subsets"], kid_subset_size=subset,
                              degree=poly[0], gamma=poly[1], coef0=poly[2], rng_seed=o["kid_seed"],
                              ref_kernel=kept[1] if kept is not None and kept[0] == poly else None)
        s_ref = derived["fid_stats"]

        # the eigenvalues outside that block: LAPACK's depend on the thread count (measured at 256 features and
        # more); on one thread only where that was seen to give the same bits at this dimension
        # (`blas.single_threaded_if_same`: else OpenBLAS's busy-waiting workers slow whatever runs next)
        def fid_of(feats: torch.Tensor, s_gen=None) -> float:
            s_gen = fid_features_to_statistics(feats.double()) if s_gen is None else s_gen
            return blas.single_threaded_if_same(
                ("fid", s_ref["sigma"].shape), lambda: float(fid_statistics_to_metric(
                    s_ref, s_gen, verbose=False)["frechet_inception_distance"]), _same_float)

        fid = fid_of(gen_fid, s_gen)
        isc = isc_features_to_metric(gen_isc, splits=o["isc_splits"], shuffle=True, rng_seed=o["isc_seed"])
        out = {"fid": fid, "is": isc["inception_score_mean"], "is_std": isc["inception_score_std"],
               "kid": kd["kernel_inception_distance_mean"], "kid_std": kd["kernel_inception_distance_std"]}
        if o["prc"] and n > o["prc_neighborhood"]:    # k-NN radii need k + 1 samples (fewer: a smoke run)
            k, bs = o["prc_neighborhood"], o["prc_batch_size"]
            ref_radii = reference.radii if reference.radii is not None else prc.radii(ref_fid, k, bs)
            out["precision"], out["recall"] = prc.precision_recall(gen_fid, ref_fid, ref_radii, k, bs)
        if o["bootstrap"]:
            out["fid_ci_low"], out["fid_ci_high"] = bootstrap.statistic_ci(
                gen_fid, fid_of, o["bootstrap"], o["bootstrap_seed"], o["bootstrap_level"])
        out.update(fd_extras.extras(self.options, EXTRA_NAMES, gen_fid, ref_fid, reference.dc_radii, fid_of,
                                    self.name, inf="fid_inf"))
        return out
