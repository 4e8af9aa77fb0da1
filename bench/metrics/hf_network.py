"""A metric whose network is one transformers model named by its ``model`` option (`TransformersNetworkMetric`).

Shared by `bench.metrics.cmmd` and `bench.metrics.fd_dinov2_dgm`: the weights are resolved lazily through
`bench.hub.resolve_weights` (a local folder, ``$VAR`` or a Hugging Face id already in the local cache, or
downloadable), so building the metric, validating a suite and computing ``version_key`` need no network; missing
weights are one `MetricError` that names the option (``model``) and says where to put them. The weights' identity
(``weights_id``: hub repo and commit for a snapshot folder, sha256 of the contents otherwise) enters every cell key
and every reference-cache entry. Each metric object loads its own model instance (never shared), in eval mode.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, ClassVar

import torch

from bench.metrics.base import Metric, MetricError
from bench.metrics.clip_score import _folder_id, _resolve


class TransformersNetworkMetric(Metric):
    """Subclasses set ``network_class`` (a transformers class name) and ``network_what`` (e.g. "DINOv2 weights");
    their Options have a ``model`` field. ``load_kwargs()`` adds ``from_pretrained`` arguments and ``prepare(model)``
    adapts the loaded model (defaults: nothing)."""

    network_class: ClassVar[str] = ""
    network_what: ClassVar[str] = ""
    unused_weights: ClassVar[tuple[str, ...]] = ()      # weights the forward never reads (may be absent)

    def __init__(self, options: dict[str, Any] | None, device: torch.device, cache_dir: Path):
        super().__init__(options, device, cache_dir)
        self._path: Path | None = None
        self._weights_id: str | None = None
        self._model = None

    @classmethod
    def requirements(cls, options: dict[str, Any]) -> list:
        """The weights (a hub id in the local cache, a folder or ``$VAR``) and transformers."""
        from bench.preflight import package, weights
        o = cls.Options.model_validate(options or {})
        return [weights(o.model, f"{cls.name}: option model ({cls.network_what})"),
                package("transformers", "transformers", "hf")]

    @property
    def path(self) -> Path:
        if self._path is None:
            self._path = _resolve(str(self.opt["model"]), f"{self.name}: option model ({self.network_what})")
        return self._path

    def weights_id(self) -> str:
        """Hub repo and commit, or the sha256 of a local folder's contents (hashed once per metric object)."""
        if self._weights_id is None:
            self._weights_id = _folder_id(str(self.opt["model"]), self.path)
        return self._weights_id

    def version_key(self) -> str:
        return f"{self.version}|{self.weights_id()}"

    @property
    def model(self):
        """The network, loaded once; a checkpoint that leaves any of its weights missing or of another shape (which
        transformers would initialise at random, with a warning) is refused."""
        if self._model is None:
            import transformers
            cls = getattr(transformers, self.network_class)
            try:
                model, info = cls.from_pretrained(str(self.path), output_loading_info=True, **self.load_kwargs())
            except (OSError, ValueError) as e:
                raise MetricError(f"{self.name}: option model: cannot load a {self.network_class} from "
                                  f"{str(self.path)!r}: {e}") from e
            bad = sorted(k for k in info.get("missing_keys") or [] if k not in self.unused_weights) + sorted(
                str(k[0] if isinstance(k, (tuple, list)) else k) for k in info.get("mismatched_keys") or [])
            if bad:
                raise MetricError(f"{self.name}: option model: {str(self.path)!r} does not hold every weight of a "
                                  f"{self.network_class} ({len(bad)} missing or of another shape: "
                                  f"{', '.join(bad[:4])}{', ...' if len(bad) > 4 else ''})")
            self._model = self.prepare(model.eval()).to(self.device)
        return self._model

    def load_kwargs(self) -> dict[str, Any]:
        """Extra ``from_pretrained`` arguments (default: none)."""
        return {}

    def prepare(self, model):
        """Adapt the freshly loaded model (default: unchanged)."""
        return model

    def implementation(self) -> str:
        import transformers
        return f"transformers {transformers.__version__} {self.network_class}"
