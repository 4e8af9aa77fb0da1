"""ImageReward (Xu et al. 2023, ImageReward-v1.0): a learned human-preference reward of each generated image
against its own prompt; the mean over images, with std, a seeded bootstrap interval and per-class means exactly
as `bench.metrics.clip_score` reports CLIP Score (`ClipScore.summarize`). Higher is better.

Reference: github:THUDM/ImageReward, ImageReward/ImageReward.py ``ImageReward.score`` / ``inference_rank`` and
``_transform``; ImageReward/models/BLIP/blip.py ``init_tokenizer``. Per image, as the reference's ``score``:

- image: a PIL image, torchvision ``Resize(224, BICUBIC)`` (shorter side to 224), ``CenterCrop(224)``,
  ``ToTensor``, ``Normalize`` with CLIP's mean/std (224 = the checkpoint's input size);
- prompt: BLIP's tokenizer, i.e. ``bert-base-uncased`` plus the special tokens ``[DEC]`` (bos) and ``[ENC]``,
  ``padding='max_length', truncation=True, max_length=35``; ids used as given ([CLS] first);
- the network and the reward normalisation: `bench.metrics.image_reward_net`.

Weights: ``model`` is a hub id (default ``THUDM/ImageReward``: its file ``ImageReward.pt``, cache first, as
`bench.hub.resolve_weights` finds weights), a folder holding ``ImageReward.safetensors`` or ``ImageReward.pt``,
or a file. A ``.pt`` is read with ``torch.load(weights_only=True)``, never a full unpickle; one that needs it is
refused with the one-line conversion to safetensors. ``tokenizer`` is a hub id or folder with ``vocab.txt``
(default ``google-bert/bert-base-uncased``, the hub's canonical id of ``bert-base-uncased``).

Invariants: a sample's reward depends only on its image and its own prompt (the network runs on fixed-shape
batches, `fixed_shape_forward`, rows in sample-id order), so values do not depend on batch size or shard split.
No reference set is used.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import torch
from pydantic import Field

from bench.hub import WeightsNotFound, expand_env, resolve_weights
from bench.metrics.base import Metric, MetricError, StrictOptions, fixed_shape_forward
from bench.metrics.bootstrap import Level, Resamples
from bench.metrics.clip_preprocess import OPENAI_MEAN, OPENAI_STD
from bench.metrics.clip_score import ClipScore, _folder_id, score_outputs

WEIGHTS_FILES = ("ImageReward.safetensors", "ImageReward.pt")   # looked for in a folder, in this order
MAX_TOKENS = 35
SPECIAL_TOKENS = ({"bos_token": "[DEC]"}, {"additional_special_tokens": ["[ENC]"]})   # BLIP's init_tokenizer
PREPROCESS = "PIL: Resize(shorter side, BICUBIC), CenterCrop, ToTensor, Normalize(CLIP mean/std) (torchvision)"


class ImageRewardOptions(StrictOptions):
    """Options of `ImageReward`: weights, tokenizer, batching, per-class rows and the bootstrap interval."""
    model: str = "THUDM/ImageReward"
    tokenizer: str = "google-bert/bert-base-uncased"
    batch_size: Annotated[int, Field(ge=1)] = 32
    per_class: bool = True
    bootstrap: Resamples = 1000
    bootstrap_seed: int = 2020
    bootstrap_level: Level = 0.95


def weights_file_name(ref: str) -> str:
    """The file to use in a folder (or hub repo): ImageReward.safetensors when a local folder has it."""
    try:
        p = Path(expand_env(ref, "ImageReward weights")).expanduser()
    except WeightsNotFound:
        return WEIGHTS_FILES[1]
    return next((f for f in WEIGHTS_FILES if p.is_dir() and (p / f).exists()), WEIGHTS_FILES[1])


def _resolve(ref: str, what: str, filename: str) -> Path:
    try:
        return resolve_weights(ref, what=what, filename=filename)
    except WeightsNotFound as e:
        raise MetricError(str(e)) from None


def preprocess(images: torch.Tensor, size: int) -> torch.Tensor:
    """uint8 NHWC RGB -> (B, 3, size, size) float32, each image through the reference's torchvision pipeline."""
    from PIL import Image
    from torchvision import transforms as T
    if images.dtype != torch.uint8 or images.dim() != 4 or images.shape[-1] != 3:
        raise MetricError(f"image_reward: expected uint8 NHWC RGB images, got {images.dtype} {tuple(images.shape)}")
    tf = T.Compose([T.Resize(size, interpolation=T.InterpolationMode.BICUBIC), T.CenterCrop(size), T.ToTensor(),
                    T.Normalize(OPENAI_MEAN, OPENAI_STD)])
    return torch.stack([tf(Image.fromarray(x.numpy(), "RGB")) for x in images.cpu()])


class ImageReward(Metric):
    """ImageReward-v1.0 (THUDM/ImageReward) reward of each image against its own prompt, mean with a bootstrap
    interval; higher is better."""
    name = "image_reward"
    version = "image_reward-1"
    Options = ImageRewardOptions
    outputs = score_outputs("image_reward", "ImageReward")
    per_sample = {"score": "image_reward"}       # per-image scores: the store's sample_scores rows
    needs_reference = False                    # scores each image against its prompt: runs on prompt-only sets
    summarize = ClipScore.summarize     # mean, std, bootstrap interval, per-class means: clip_score's reporting

    def __init__(self, options: dict[str, Any] | None, device: torch.device, cache_dir: Path):
        super().__init__(options, device, cache_dir)
        self._net = None
        self._tokenizer = None
        self._paths: dict[str, Path] = {}
        self._tokens: dict[str, tuple[torch.Tensor, torch.Tensor]] = {}

    @classmethod
    def requirements(cls, options: dict[str, Any]) -> list:
        """The ImageReward weights file, the BERT tokenizer's vocab.txt and transformers."""
        from bench.preflight import package, weights
        o = cls.Options.model_validate(options or {})
        return [weights(o.model, "ImageReward weights", filename=weights_file_name(o.model)),
                weights(o.tokenizer, "ImageReward's BERT tokenizer", filename="vocab.txt"),
                package("transformers", "transformers", "hf")]

    @property
    def weights_path(self) -> Path:
        if self._paths.get("model") is None:
            ref = self.opt["model"]
            self._paths["model"] = _resolve(ref, "image_reward: ImageReward weights (option `model`)",
                                            weights_file_name(ref))
        return self._paths["model"]

    @property
    def vocab_path(self) -> Path:
        if self._paths.get("tokenizer") is None:
            self._paths["tokenizer"] = _resolve(self.opt["tokenizer"], "image_reward: BERT tokenizer (option "
                                                "`tokenizer`)", "vocab.txt")
        return self._paths["tokenizer"]

    @property
    def net(self):
        if self._net is None:
            from bench.metrics.image_reward_net import ImageRewardNet, read_state_dict
            path = self.weights_path
            sd = read_state_dict(path, "model")
            self._net = ImageRewardNet.from_state_dict(sd, repr(str(path))).to(self.device)
        return self._net

    @property
    def tokenizer(self):
        if self._tokenizer is None:
            from transformers import BertTokenizer
            folder = self.vocab_path.parent
            try:
                tok = BertTokenizer.from_pretrained(str(folder))
            except (OSError, ValueError) as e:
                raise MetricError(f"image_reward: cannot load a BertTokenizer from {str(folder)!r} (option "
                                  f"`tokenizer`): {e}") from e
            for special in SPECIAL_TOKENS:
                tok.add_special_tokens(special)
            self._tokenizer = tok
        return self._tokenizer

    def weights_id(self) -> str:
        return f"{_folder_id(self.opt['model'], self.weights_path)}/{self.weights_path.name}"

    def tokenizer_id(self) -> str:
        return _folder_id(self.opt["tokenizer"], self.vocab_path)

    def version_key(self) -> str:
        return f"{self.version}|{self.weights_id()}|tokenizer:{self.tokenizer_id()}"

    def describe(self) -> dict[str, Any]:
        import transformers
        return {"implementation": f"transformers {transformers.__version__} BlipVisionModel + BlipTextModel, "
                                  f"ImageReward-v1.0 key map", **self.opt, "weights": self.weights_id(),
                "tokenizer_files": self.tokenizer_id(), "architecture": dict(self.net.arch),
                "preprocess": PREPROCESS, "text_max_tokens": MAX_TOKENS, "bootstrap_over": "generated samples"}

    def tokens(self, prompts: list[str]) -> tuple[torch.Tensor, torch.Tensor]:
        """(ids, attention mask), (B, 35) each; every distinct prompt is tokenized once, on its own."""
        for p in sorted(set(prompts) - set(self._tokens)):
            t = self.tokenizer(p, padding="max_length", truncation=True, max_length=MAX_TOKENS, return_tensors="pt")
            if int(t["input_ids"].max()) >= self.net.arch["vocab"]:
                raise MetricError(f"image_reward: the tokenizer (option `tokenizer`) gives ids beyond the "
                                  f"checkpoint's {self.net.arch['vocab']}-token vocabulary: not BLIP's tokenizer")
            self._tokens[p] = (t["input_ids"][0], t["attention_mask"][0])
        return (torch.stack([self._tokens[p][0] for p in prompts]), torch.stack([self._tokens[p][1] for p in prompts]))

    @torch.inference_mode()
    def scores(self, images: torch.Tensor, prompts: list[str]) -> torch.Tensor:
        """Per-image rewards (float64 of the float32 network output), each against its own prompt."""
        if len(prompts) != len(images):
            raise MetricError(f"image_reward: {len(images)} images but {len(prompts)} prompts")
        ids, mask = self.tokens(prompts)
        images, size, dev = images.cpu(), self.net.arch["image_size"], self.device

        def forward(rows: torch.Tensor) -> torch.Tensor:     # rows index the batch; padding rows repeat row 0
            return self.net(preprocess(images[rows], size).to(dev), ids[rows].to(dev), mask[rows].to(dev))

        return fixed_shape_forward(forward, torch.arange(len(images)), self.opt["batch_size"])[0].double().cpu()

    def truncated(self, prompts: list[str]) -> torch.Tensor:
        """1.0 for each prompt longer than BLIP's 35-token window (its reward is of the truncated text)."""
        return torch.tensor([float(len(self.tokenizer(p)["input_ids"]) > MAX_TOKENS) for p in prompts],
                            dtype=torch.float64)

    accumulator = ClipScore.accumulator   # per-image scores (+ truncated captions on a caption set), as clip_score
