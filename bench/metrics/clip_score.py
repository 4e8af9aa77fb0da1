"""CLIP Score and PickScore: one image-text similarity metric with two scales.

CLIP Score = 100 * cosine(image, text), mean over images, not clamped unless ``clamp: true`` (the torchmetrics
convention). PickScore = logit_scale.exp() * cosine with the PickScore model. The prompt is the dataset's
template, e.g. ``a photo of a {class_name}``; text embeddings are computed once per distinct prompt.

Backends: ``transformers`` (CLIPModel + processor by hub id or local path; the default), ``open_clip`` (model
name + ``pretrained`` tag or local file) and ``mini`` (the miniature world's tiny open_clip models).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

from bench.metrics.base import MetricError, PerSampleAccumulator
from bench.metrics.clip_preprocess import preprocess_uint8
from bench.provenance import sha256_path


class _OpenClipBackend:
    """An open_clip model + tokenizer; images go through preprocess_uint8 at the model's input size."""

    def __init__(self, model, tokenizer, weights_id: str, device: torch.device, mean=None, std=None):
        from bench.metrics.clip_preprocess import OPENAI_MEAN, OPENAI_STD
        self.model, self.tokenizer = model.to(device).eval(), tokenizer
        self.weights_id, self.device = weights_id, device
        size = model.visual.image_size
        self.image_size = size[0] if isinstance(size, (tuple, list)) else int(size)
        cfg = getattr(model.visual, "preprocess_cfg", {}) or {}
        self.mean = mean or cfg.get("mean", OPENAI_MEAN)
        self.std = std or cfg.get("std", OPENAI_STD)

    def logit_scale(self) -> float:
        return float(self.model.logit_scale.exp())

    def encode_images(self, images: torch.Tensor) -> torch.Tensor:
        x = preprocess_uint8(images.to(self.device), self.image_size, self.mean, self.std)
        f = self.model.encode_image(x).float()
        return f / f.norm(dim=-1, keepdim=True)

    def encode_texts(self, prompts: list[str]) -> torch.Tensor:
        f = self.model.encode_text(self.tokenizer(prompts).to(self.device)).float()
        return f / f.norm(dim=-1, keepdim=True)


class _TransformersBackend:
    """A transformers CLIPModel with its processor (77-token truncation, the processor's own image pipeline)."""

    def __init__(self, model_id: str, processor_id: str | None, device: torch.device):
        try:
            from transformers import AutoProcessor, CLIPModel
        except ImportError as e:
            raise MetricError("the transformers backend needs `pip install stepbench[hf]`") from e
        try:
            self.model = CLIPModel.from_pretrained(model_id).to(device).eval()
            self.processor = AutoProcessor.from_pretrained(processor_id or model_id)
        except OSError as e:
            raise MetricError(f"cannot load CLIP model {model_id!r} (processor {processor_id or model_id!r}): {e}. "
                              f"Offline, download it once into the Hugging Face cache or give a local folder.") from e
        self.device = device
        self.weights_id = "sha256:" + sha256_path(model_id) if Path(model_id).exists() else f"hf:{model_id}"

    def logit_scale(self) -> float:
        return float(self.model.logit_scale.exp())

    def encode_images(self, images: torch.Tensor) -> torch.Tensor:
        inputs = self.processor(images=list(images.cpu().numpy()), return_tensors="pt")
        f = self.model.get_image_features(pixel_values=inputs["pixel_values"].to(self.device))
        f = getattr(f, "pooler_output", f).float()
        return f / f.norm(dim=-1, keepdim=True)

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
        model = open_clip.create_model(opt["model"], pretrained=pretrained, device=device)
        local = pretrained and Path(pretrained).exists()
        wid = "sha256:" + sha256_path(pretrained) if local else f"open_clip:{pretrained}"
        return _OpenClipBackend(model, open_clip.get_tokenizer(opt["model"]), wid, device)
    if backend == "transformers":
        return _TransformersBackend(opt["model"], opt.get("processor"), device)
    raise MetricError(f"unknown backend {backend!r}; expected transformers, open_clip or mini")


class ClipScore:
    name = "clip_score"
    version = "clip_score-1"
    outputs = {"clip_score": True}
    defaults = {"backend": "transformers", "model": "openai/clip-vit-base-patch16", "processor": None,
                "pretrained": None, "clamp": False, "batch_size": 64}

    def __init__(self, options: dict[str, Any], device: torch.device, cache_dir: Path):
        unknown = sorted(set(options) - set(self.defaults))
        if unknown:
            raise MetricError(f"{self.name}: unknown option {unknown[0]!r}; known: {', '.join(self.defaults)}")
        self.opt = {**self.defaults, **options}
        self.device = device
        self._backend = None
        self._text_cache: dict[str, torch.Tensor] = {}

    @property
    def backend(self):
        if self._backend is None:
            self._backend = make_backend(self.opt, self.device)
        return self._backend

    def scale(self) -> float:
        return 100.0

    def version_key(self) -> str:
        return f"{self.version}|{self.opt['backend']}|{self.opt['model']}|{self.backend.weights_id}"

    def describe(self) -> dict[str, Any]:
        return {**self.opt, "weights": self.backend.weights_id, "scale": self.scale(),
                "clamped": bool(self.opt["clamp"])}

    @torch.inference_mode()
    def text_features(self, prompts: list[str]) -> torch.Tensor:
        new = sorted(set(prompts) - set(self._text_cache))
        if new:
            for p, f in zip(new, self.backend.encode_texts(new)):
                self._text_cache[p] = f
        return torch.stack([self._text_cache[p] for p in prompts])

    @torch.inference_mode()
    def scores(self, images: torch.Tensor, prompts: list[str]) -> torch.Tensor:
        """Per-image score: scale * cosine(image, its prompt), clamped at 0 only when asked."""
        img = torch.cat([self.backend.encode_images(c) for c in images.split(self.opt["batch_size"])])
        s = self.scale() * (img * self.text_features(prompts).to(img.device)).sum(-1)
        return (s.clamp_min(0) if self.opt["clamp"] else s).double().cpu()

    def accumulator(self, dataset) -> PerSampleAccumulator:
        out = next(iter(self.outputs))

        def embed(images, labels, prompts):
            return {"score": self.scores(images, prompts)}

        def finalize(rows, labels):
            s = rows["score"]
            return {out: float(s.mean()), f"{out}_std": float(s.std()) if len(s) > 1 else 0.0}

        return PerSampleAccumulator(embed, finalize)


class PickScore(ClipScore):
    name = "pickscore"
    version = "pickscore-1"
    outputs = {"pickscore": True}
    defaults = {**ClipScore.defaults, "model": "yuvalkirstain/PickScore_v1",
                "processor": "laion/CLIP-ViT-H-14-laion2B-s32B-b79K"}

    def scale(self) -> float:
        return self.backend.logit_scale()
