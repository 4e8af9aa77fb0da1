"""CLIP Score and PickScore: one image-text similarity metric with two scales.

CLIP Score = 100 * cosine(image, text), mean over images, not clamped unless ``clamp: true`` (the torchmetrics
convention). PickScore = logit_scale.exp() * cosine with the PickScore model. The prompt is the dataset's
template, e.g. ``a photo of a {class_name}``; text embeddings are computed once per distinct prompt (once per
class), truncated to CLIP's 77 tokens.

Backends: ``transformers`` (CLIPModel + processor by hub id or local path through `bench.hub.resolve_weights`,
HF offline mode and cache respected; the default), ``open_clip`` (model name + ``pretrained`` tag, local file or
hub id) and ``mini`` (the miniature world's tiny open_clip models).

Besides the mean (and std) each cell gets: the per-class means as rows ``<metric>/class/<label id>`` for
drill-down (``per_class``), and a seeded percentile bootstrap interval ``<metric>_ci_low`` / ``_ci_high``
(``bootstrap`` resamples, 0 = off).
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any, Literal

import torch
from pydantic import Field

from bench.hub import WeightsNotFound, resolve_weights
from bench.metrics import bootstrap
from bench.metrics.base import Metric, MetricError, PerSampleAccumulator, StrictOptions, companion, fixed_shape_forward
from bench.metrics.bootstrap import Level, Resamples
from bench.metrics.clip_preprocess import preprocess_uint8
from bench.outputs import Output
from bench.provenance import sha256_path


def _resolve(ref: str, what: str) -> Path:
    try:
        return resolve_weights(ref, what=what)
    except WeightsNotFound as e:
        raise MetricError(str(e)) from None


def _folder_id(ref: str, path: Path) -> str:
    """A Hugging Face snapshot folder is identified by its repo and commit; any other folder or file by content."""
    parts = path.absolute().parts
    if "snapshots" in parts and parts.index("snapshots") >= 1:
        i = parts.index("snapshots")
        if i + 1 < len(parts) and parts[i - 1].startswith("models--"):
            return f"hf:{ref}@{parts[i + 1]}"
    return "sha256:" + sha256_path(path)


class _OpenClipBackend:
    """An open_clip model + tokenizer; images go through preprocess_uint8 at the model's input size."""

    def __init__(self, model, tokenizer, weights_id: str, device: torch.device, mean=None, std=None):
        from bench.metrics.clip_preprocess import OPENAI_MEAN, OPENAI_STD
        self.model, self.tokenizer = model.to(device).eval(), tokenizer
        self.weights_id, self.device = weights_id, device
        import open_clip
        self.implementation = f"open_clip {open_clip.__version__}"
        size = model.visual.image_size
        self.image_size = size[0] if isinstance(size, (tuple, list)) else int(size)
        cfg = getattr(model.visual, "preprocess_cfg", {}) or {}
        self.mean = mean or cfg.get("mean", OPENAI_MEAN)
        self.std = std or cfg.get("std", OPENAI_STD)

    def logit_scale(self) -> float:
        return float(self.model.logit_scale.detach().exp())

    def encode_images(self, images: torch.Tensor) -> torch.Tensor:
        x = preprocess_uint8(images.to(self.device, non_blocking=True), self.image_size, self.mean, self.std)
        f = self.model.encode_image(x).float()
        return f / f.norm(dim=-1, keepdim=True)

    def encode_texts(self, prompts: list[str]) -> torch.Tensor:
        f = self.model.encode_text(self.tokenizer(prompts).to(self.device)).float()
        return f / f.norm(dim=-1, keepdim=True)

    def truncated(self, prompt: str) -> bool:
        """Whether the tokenizer cuts ``prompt`` to its window (start and end tokens included)."""
        tok = self.tokenizer
        window = int(getattr(tok, "context_length", 77))
        if hasattr(tok, "encode"):                       # open_clip's SimpleTokenizer
            return len(tok.encode(prompt)) + 2 > window
        inner = getattr(tok, "tokenizer", None)          # open_clip's HFTokenizer wraps a transformers tokenizer
        return inner is not None and len(inner(prompt)["input_ids"]) > window


class _TransformersBackend:
    """A transformers CLIPModel with its processor (77-token truncation, the processor's own image pipeline)."""

    def __init__(self, model_id: str, processor_id: str | None, device: torch.device):
        try:
            import transformers
            from transformers import AutoProcessor, CLIPModel
        except ImportError as e:
            raise MetricError("the transformers backend needs `pip install stepbench[hf]`") from e
        model_dir = _resolve(model_id, "CLIP model")
        proc_dir = _resolve(processor_id, "CLIP processor") if processor_id else model_dir
        try:
            self.model = CLIPModel.from_pretrained(str(model_dir)).to(device).eval()
            self.processor = AutoProcessor.from_pretrained(str(proc_dir))
        except (OSError, ValueError) as e:
            raise MetricError(f"cannot load CLIP model {model_id!r} from {str(model_dir)!r} (processor "
                              f"{processor_id or model_id!r}): {e}") from e
        self.device = device
        self.implementation = f"transformers {transformers.__version__}"
        self.weights_id = _folder_id(model_id, model_dir)
        if processor_id:
            self.weights_id += f"+processor:{_folder_id(processor_id, proc_dir)}"

    def logit_scale(self) -> float:
        return float(self.model.logit_scale.detach().exp())

    def encode_images(self, images: torch.Tensor) -> torch.Tensor:
        inputs = self.processor(images=list(images.cpu().numpy()), return_tensors="pt")
        f = self.model.get_image_features(pixel_values=inputs["pixel_values"].to(self.device))
        f = getattr(f, "pooler_output", f).float()
        return f / f.norm(dim=-1, keepdim=True)

    def truncated(self, prompt: str) -> bool:
        """Whether ``prompt`` is longer than CLIP's 77-token window (``encode_texts`` truncates it)."""
        return len(self.processor.tokenizer(prompt)["input_ids"]) > 77

    def encode_texts(self, prompts: list[str]) -> torch.Tensor:
        inputs = self.processor(text=prompts, padding=True, truncation=True, max_length=77, return_tensors="pt")
        f = self.model.get_text_features(input_ids=inputs["input_ids"].to(self.device),
                                         attention_mask=inputs["attention_mask"].to(self.device))
        f = getattr(f, "pooler_output", f).float()
        return f / f.norm(dim=-1, keepdim=True)


def make_backend(opt: dict[str, Any], device: torch.device):
    backend = opt["backend"]
    if backend == "mini":
        from bench.mini import metric_nets, weights
        model, tokenizer = metric_nets.load_clip(opt["model"])
        return _OpenClipBackend(model, tokenizer, "sha256:" + weights.entry(opt["model"])["sha256"], device)
    if backend == "open_clip":
        import open_clip
        pretrained = opt.get("pretrained")
        tags = open_clip.list_pretrained_tags_by_model(opt["model"]) if pretrained else []
        if pretrained and pretrained not in tags:       # a local file, $VAR/file or hf://org/repo/file
            path = _resolve(pretrained, f"open_clip weights for {opt['model']}")
            pretrained, wid = str(path), "sha256:" + sha256_path(path)
        else:
            wid = f"open_clip:{opt['model']}:{pretrained}"
        try:
            model = open_clip.create_model(opt["model"], pretrained=pretrained, device=device)
        except Exception as e:  # noqa: BLE001 - unknown name, failed download offline: one message
            raise MetricError(f"cannot create open_clip model {opt['model']!r} (pretrained {pretrained!r}): {e}; "
                              f"offline, give `pretrained` as a local weights file") from e
        return _OpenClipBackend(model, open_clip.get_tokenizer(opt["model"]), wid, device)
    if backend == "transformers":
        return _TransformersBackend(opt["model"], opt.get("processor"), device)
    raise MetricError(f"unknown backend {backend!r}; expected transformers, open_clip or mini")


class ClipScoreOptions(StrictOptions):
    """Options of `ClipScore`: the backend and model, clamping, batching, per-class rows and the interval."""
    backend: Literal["transformers", "open_clip", "mini"] = "transformers"
    model: str = "openai/clip-vit-base-patch16"
    processor: str | None = None                 # transformers: another processor than the model's own
    pretrained: str | None = None                # open_clip: a pretrained tag or a weights file
    clamp: bool = False
    batch_size: Annotated[int, Field(ge=1)] = 64
    per_class: bool = True
    bootstrap: Resamples = 1000
    bootstrap_seed: int = 2020
    bootstrap_level: Level = 0.95


class PickScoreOptions(ClipScoreOptions):
    """`ClipScoreOptions` with PickScore's model and processor as defaults."""
    model: str = "yuvalkirstain/PickScore_v1"
    processor: str | None = "laion/CLIP-ViT-H-14-laion2B-s32B-b79K"


def score_outputs(name: str, label: str) -> tuple[Output, ...]:
    """What `ClipScore.summarize` returns for a metric called ``name``: the mean (ranked, higher is better), its
    std and bootstrap interval, and the per-class means ``<name>/class/<label id>``."""
    return (Output(name, True, label), companion(f"{name}_std", label, "std"),
            companion(f"{name}_ci_low", label, "CI low"), companion(f"{name}_ci_high", label, "CI high"),
            Output(f"{name}/class/*", None, f"{label} per class"),
            Output(f"{name}_truncated", None, f"{label}: captions truncated", "captions", ".0f"))


class ClipScore(Metric):
    name = "clip_score"
    version = "clip_score-2"
    Options = ClipScoreOptions
    outputs = score_outputs("clip_score", "CLIP Score")
    per_sample = {"score": "clip_score"}       # per-image scores: the store's sample_scores rows
    needs_reference = False                    # scores each image against its prompt: runs on prompt-only sets

    def __init__(self, options: dict[str, Any] | None, device: torch.device, cache_dir: Path):
        super().__init__(options, device, cache_dir)
        self._backend = None
        self._text_cache: dict[str, torch.Tensor] = {}

    @classmethod
    def requirements(cls, options: dict[str, Any]) -> list:
        """transformers: the model and processor (hub ids in the local cache, or folders) and transformers;
        open_clip: a ``pretrained`` weights file (a pretrained tag is open_clip's own download); mini: nothing."""
        from bench.preflight import package, weights
        o = cls.Options.model_validate(options or {})
        if o.backend == "transformers":
            out = [weights(o.model, "CLIP model")]
            if o.processor:
                out.append(weights(o.processor, "CLIP processor"))
            return out + [package("transformers", "transformers", "hf")]
        if o.backend == "open_clip" and o.pretrained and ("/" in o.pretrained or "$" in o.pretrained
                                                          or Path(o.pretrained).suffix):
            return [weights(o.pretrained, f"open_clip weights for {o.model}")]
        return []

    @property
    def backend(self):
        if self._backend is None:
            self._backend = make_backend(self.opt, self.device)
        return self._backend

    def scale(self) -> float:
        return 100.0

    def version_key(self) -> str:
        return f"{self.version}|{self.opt['backend']}|{self.opt['model']}|{self.backend.weights_id}"

    def forward_identity(self) -> tuple:
        """What determines the image tower's computation (backend, model, weights, device): `bench.metrics.remainder`'s
        key for the short-chunk verdicts, shared by every instance that computes the same function."""
        return (self.name, self.version_key(), str(self.backend.device))

    def describe(self) -> dict[str, Any]:
        return {"implementation": self.backend.implementation, **self.opt, "weights": self.backend.weights_id,
                "scale": self.scale(), "clamped": bool(self.opt["clamp"]), "text_max_tokens": 77,
                "bootstrap_over": "generated samples"}

    @torch.inference_mode()
    def text_features(self, prompts: list[str]) -> torch.Tensor:
        for p in sorted(set(prompts) - set(self._text_cache)):   # one at a time: no padding, no batch effects
            self._text_cache[p] = self.backend.encode_texts([p])[0]
        return torch.stack([self._text_cache[p] for p in prompts])

    @torch.inference_mode()
    def scores(self, images: torch.Tensor, prompts: list[str]) -> torch.Tensor:
        """Per-image score: scale * cosine(image, its prompt), clamped at 0 only when asked (fixed-shape batches)."""
        img = fixed_shape_forward(self.backend.encode_images, images, self.opt["batch_size"],
                                  same_bits_key=self.forward_identity())[0]
        s = self.scale() * (img * self.text_features(prompts).to(img.device)).sum(-1)
        return (s.clamp_min(0) if self.opt["clamp"] else s).double().cpu()

    def summarize(self, s: torch.Tensor, labels: torch.Tensor) -> dict[str, float]:
        """Per-image scores (in sample-id order) -> mean, std, bootstrap interval and per-class means."""
        o, out = self.opt, self.name
        res = {out: float(s.mean()), f"{out}_std": float(s.std()) if len(s) > 1 else 0.0}
        if o["bootstrap"]:
            res[f"{out}_ci_low"], res[f"{out}_ci_high"] = bootstrap.mean_ci(
                s, o["bootstrap"], o["bootstrap_seed"], o["bootstrap_level"])
        if o["per_class"]:
            for y in torch.unique(labels).tolist():
                res[f"{out}/class/{y}"] = float(s[labels == y].mean())
        return res

    def truncated(self, prompts: list[str]) -> torch.Tensor:
        """1.0 for each prompt longer than the text encoder's window (its features are of the truncated text)."""
        return torch.tensor([float(self.backend.truncated(p)) for p in prompts], dtype=torch.float64)

    def accumulator(self, dataset) -> PerSampleAccumulator:
        """Per-image scores; on a caption set also which captions the text encoder truncated, counted in
        ``<name>_truncated`` (class-name prompts are short, so class sets carry no such row)."""
        captions = getattr(dataset, "conditioning", "class") == "caption"

        def embed(images, labels, prompts):
            out = {"score": self.scores(images, prompts)}
            if captions:
                out["truncated"] = self.truncated(prompts)
            return out

        def finalize(rows, labels):
            res = self.summarize(rows["score"], labels)
            if captions:
                res[f"{self.name}_truncated"] = float(rows["truncated"].sum())
            return res

        return PerSampleAccumulator(embed, finalize, chunk=self.opt["batch_size"])


class PickScore(ClipScore):
    name = "pickscore"
    version = "pickscore-2"
    Options = PickScoreOptions
    outputs = score_outputs("pickscore", "PickScore")
    per_sample = {"score": "pickscore"}       # per-image scores: the store's sample_scores rows

    def scale(self) -> float:
        return self.backend.logit_scale()
