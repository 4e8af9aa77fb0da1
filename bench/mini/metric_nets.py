"""The miniature world's metric networks: a noise-robust classifier (FID/IS/KID features) and tiny CLIPs.

- :class:`MiniClassifierExtractor` is a torch-fidelity feature extractor (``"mini-classifier"`` once
  :func:`register` ran): uint8 NCHW in (any size; resized to 16x16), features ``"feat"`` (penultimate, the
  default for FID/KID/PRC) and ``"logits_unbiased"`` (class logits without the final bias, the default for IS).
- :func:`load_clip` returns a real open_clip ``CLIP`` model plus open_clip's bundled BPE tokenizer for
  ``"clip"`` (CLIP Score) or ``"pick"`` (PickScore); images go through
  :func:`bench.metrics.clip_preprocess.preprocess_uint8` with :data:`CLIP_MEAN` / :data:`CLIP_STD`.

All weights are the shipped, sha256-verified safetensors files in ``bench/mini/weights`` (see
:mod:`bench.mini.weights`); nothing is downloaded.
"""

from __future__ import annotations

import functools
import json
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn
from torch_fidelity.feature_extractor_base import FeatureExtractorBase

from bench.metrics.clip_preprocess import OPENAI_MEAN, OPENAI_STD
from bench.mini import weights as W
from bench.mini.data import NUM_CLASSES, RES

__all__ = [
    "CLASSIFIER_CONFIG",
    "CLIP_MEAN",
    "CLIP_MODEL_NAME",
    "CLIP_STD",
    "EXTRACTOR_NAME",
    "MiniClassifier",
    "MiniClassifierExtractor",
    "MiniConvTrunk",
    "build_classifier",
    "build_clip",
    "clip_image_size",
    "load_classifier",
    "load_clip",
    "register",
    "register_clip_config",
    "uint8_to_input",
]

EXTRACTOR_NAME = "mini-classifier"
CONFIG_DIR = Path(__file__).with_name("configs")

# ----------------------------------------------------------------------------------------------- classifier

CLASSIFIER_CONFIG: dict[str, Any] = {"arch": "mini-convnet-1", "widths": [32, 64, 128], "num_classes": NUM_CLASSES,
                                     "res": RES}
CLASSIFIER_MEAN = (0.5, 0.5, 0.5)
CLASSIFIER_STD = (0.25, 0.25, 0.25)


def _conv_stages(widths, cin: int = 3) -> tuple[nn.Sequential, int]:
    """Two 3x3 conv blocks per stage, 2x2 max-pool between stages: (stack, output channels)."""
    layers: list[nn.Module] = []
    for i, w in enumerate(widths):
        if i > 0:
            layers.append(nn.MaxPool2d(2))
        layers += [_block(cin, w), _block(w, w)]
        cin = w
    return nn.Sequential(*layers), cin


def _block(cin: int, cout: int) -> nn.Sequential:
    return nn.Sequential(nn.Conv2d(cin, cout, 3, padding=1, bias=False), nn.BatchNorm2d(cout), nn.ReLU(inplace=True))


class MiniClassifier(nn.Module):
    """VGG-style conv net for 16x16 RGB: two 3x3 convs per stage, 2x2 max-pool between stages, global average
    pool to the penultimate embedding ``feat`` (post-ReLU, like Inception's 2048-d pool), one linear head.
    Input: float NCHW in [0, 1] at 16x16 (normalised inside)."""

    def __init__(self, widths=(32, 64, 128), num_classes: int = NUM_CLASSES):
        super().__init__()
        self.features, cin = _conv_stages(widths)
        self.fc = nn.Linear(cin, num_classes)
        self.register_buffer("mean", torch.tensor(CLASSIFIER_MEAN).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor(CLASSIFIER_STD).view(1, 3, 1, 1), persistent=False)

    @property
    def feat_dim(self) -> int:
        return self.fc.in_features

    def embed(self, x01: torch.Tensor) -> torch.Tensor:
        x = (x01 - self.mean) / self.std
        return self.features(x).mean(dim=(2, 3))

    def forward(self, x01: torch.Tensor) -> torch.Tensor:
        return self.fc(self.embed(x01))


def build_classifier(config: dict[str, Any] | None = None) -> MiniClassifier:
    cfg = config or CLASSIFIER_CONFIG
    return MiniClassifier(tuple(cfg["widths"]), cfg["num_classes"])


def uint8_to_input(x: torch.Tensor, res: int = RES) -> torch.Tensor:
    """uint8 NCHW (any size) -> float NCHW in [0, 1] at ``res`` x ``res``.

    Integer-factor downscaling uses a box filter (exactly how the renderer makes 16x16 from its supersampled
    canvas); any other size change uses antialiased bilinear interpolation."""
    x = x.float() / 255.0
    h, w = x.shape[-2:]
    if (h, w) != (res, res):
        if h % res == 0 and w % res == 0:
            x = F.avg_pool2d(x, kernel_size=(h // res, w // res))
        else:
            x = F.interpolate(x, size=(res, res), mode="bilinear", align_corners=False, antialias=True).clamp(0, 1)
    return x


def load_classifier(weights_path: str | Path | None = None) -> MiniClassifier:
    """The shipped classifier (manifest entry ``classifier``, sha256-verified), or one from a safetensors file or a
    plain tensor state dict (``torch.load(weights_only=True)``: what `fid_is_kid` hands torch-fidelity extractors
    after converting a safetensors file)."""
    if weights_path is None:
        sd, cfg = W.load("classifier")
    else:
        if str(weights_path).endswith(".safetensors"):
            from safetensors.torch import load_file
            raw = load_file(str(weights_path))
        else:
            raw = torch.load(str(weights_path), map_location="cpu", weights_only=True)
        sd = {k: (v.float() if v.is_floating_point() else v) for k, v in raw.items()}
        cfg = CLASSIFIER_CONFIG
    net = build_classifier(cfg)
    net.load_state_dict(sd)
    return net.float().eval().requires_grad_(False)


class MiniClassifierExtractor(FeatureExtractorBase):
    """torch-fidelity feature extractor over :class:`MiniClassifier` (register it with :func:`register`)."""

    def __init__(self, name, features_list, feature_extractor_weights_path=None, **kwargs):
        super().__init__(name, features_list)
        self.net = load_classifier(feature_extractor_weights_path)
        self.requires_grad_(False)
        self.eval()

    @staticmethod
    def get_provided_features_list():
        return "feat", "logits_unbiased", "logits"

    @staticmethod
    def get_default_feature_layer_for_metric(metric):
        return {"isc": "logits_unbiased", "fid": "feat", "kid": "feat", "prc": "feat"}[metric]

    @staticmethod
    def can_be_compiled():
        return False

    @staticmethod
    def get_dummy_input_for_compile():
        return (torch.rand([1, 3, RES, RES]) * 255).to(torch.uint8)

    def forward(self, x):
        if not (torch.is_tensor(x) and x.dtype == torch.uint8):
            raise ValueError("Expecting image as torch.Tensor with dtype=torch.uint8")
        if not (x.dim() == 4 and x.shape[1] == 3):
            raise ValueError(f"Input is not Bx3xHxW: {tuple(x.shape)}")
        # channels_last: ~1.35x faster convolutions on CPU (inference only; training used the default layout)
        feat = self.net.embed(uint8_to_input(x).contiguous(memory_format=torch.channels_last))
        out = {"feat": feat}
        if "logits_unbiased" in self.features_list or "logits" in self.features_list:
            lu = feat @ self.net.fc.weight.T
            out["logits_unbiased"] = lu
            out["logits"] = lu + self.net.fc.bias
        return tuple(out[a].to(torch.float32) for a in self.features_list)


def weights_id() -> str:
    """Identity of the shipped classifier weights, for cell keys (see bench.metrics.fid_is_kid)."""
    return "sha256:" + W.entry("classifier")["sha256"]


def register() -> str:
    """Register :class:`MiniClassifierExtractor` with torch-fidelity as ``"mini-classifier"`` (idempotent)."""
    from torch_fidelity import registry
    if registry.FEATURE_EXTRACTORS_REGISTRY.get(EXTRACTOR_NAME) is not MiniClassifierExtractor:
        registry.FEATURE_EXTRACTORS_REGISTRY.pop(EXTRACTOR_NAME, None)
        registry.register_feature_extractor(EXTRACTOR_NAME, MiniClassifierExtractor)
    return EXTRACTOR_NAME


# ----------------------------------------------------------------------------------------------- tiny CLIPs

TIMM_TRUNK_NAME = "stepbench_mini_convnet"   # the CLIP image tower's trunk, registered with timm below
CLIP_MODEL_NAME = "mini-clip"               # open_clip config name (bench/mini/configs/mini-clip.json)
CLIP_CONFIG_PATH = CONFIG_DIR / f"{CLIP_MODEL_NAME}.json"
CLIP_MEAN = OPENAI_MEAN                     # normalisation used in training and by the CLIP Score / PickScore metrics
CLIP_STD = OPENAI_STD
TOKEN_ROWS = "token_embedding.rows"         # sparse storage of the (49408 x width) token table: only trained rows
TOKEN_IDS = "token_embedding.ids"


class MiniConvTrunk(nn.Module):
    """Image trunk of the mini CLIPs: the classifier's conv stack (no head), exposed through timm's model interface
    so open_clip's ``TimmModel`` wraps it (``vision_cfg.timm_model_name``) and adds the linear projection."""

    def __init__(self, widths=(32, 64, 128), num_classes: int = 0, global_pool: str = "avg", in_chans: int = 3,
                 **kwargs):
        super().__init__()
        self.features, self.num_features = _conv_stages(widths, in_chans)
        self.global_pool = global_pool
        self.default_cfg = self.pretrained_cfg = {"pool_size": (RES // 2 ** (len(widths) - 1),) * 2, "num_classes": 0}
        self.reset_classifier(num_classes, global_pool)

    def reset_classifier(self, num_classes: int, global_pool: str | None = None):
        if global_pool is not None:
            self.global_pool = global_pool
        self.num_classes = num_classes
        self.fc = nn.Linear(self.num_features, num_classes) if num_classes else nn.Identity()

    def forward(self, x):
        x = self.features(x)
        if self.global_pool == "avg":
            x = x.mean(dim=(2, 3))
        return self.fc(x)


def stepbench_mini_convnet(pretrained: bool = False, **kwargs) -> MiniConvTrunk:
    """timm entrypoint (no pretrained weights exist: the CLIP loaders load the shipped ones)."""
    if pretrained:
        raise ValueError(f"{TIMM_TRUNK_NAME} has no downloadable weights")
    kwargs = {k: v for k, v in kwargs.items() if k not in ("pretrained_cfg", "pretrained_cfg_overlay", "cache_dir")}
    return MiniConvTrunk(**kwargs)


def _register_timm_trunk() -> None:
    import timm
    from timm.models import register_model
    if not timm.is_model(TIMM_TRUNK_NAME):
        register_model(stepbench_mini_convnet)


def clip_config() -> dict[str, Any]:
    return json.loads(CLIP_CONFIG_PATH.read_text())


def register_clip_config() -> str:
    """Make ``"mini-clip"`` a known open_clip model config (idempotent)."""
    import open_clip
    _register_timm_trunk()
    if CLIP_MODEL_NAME not in open_clip.list_models():
        open_clip.add_model_config(CLIP_CONFIG_PATH)
    return CLIP_MODEL_NAME


def build_clip(seed: int | None = None):
    """A freshly initialised open_clip CLIP from the mini config (float32, CPU) and its bundled BPE tokenizer."""
    from open_clip.model import CLIP
    register_clip_config()
    if seed is not None:
        torch.manual_seed(seed)
    model = CLIP(**clip_config()).float()                    # open_clip's own CLIP class, from the shipped config
    # what open_clip.create_model would attach; the metrics read mean/std from here (scoring == training path)
    model.visual.preprocess_cfg = {"size": RES, "mode": "RGB", "mean": CLIP_MEAN, "std": CLIP_STD,
                                   "interpolation": "bicubic", "resize_mode": "shortest", "fill_color": 0}
    return model, _tokenizer()


@functools.lru_cache(maxsize=1)
def _tokenizer():
    """open_clip's bundled BPE SimpleTokenizer(context_length=16; truncates), built once per process: reading its
    vocabulary takes ~0.1 s, and it holds no state between calls."""
    import open_clip
    return open_clip.get_tokenizer(register_clip_config())


def clip_image_size(model) -> int:
    """``model.visual.image_size`` as an int (open_clip stores a tuple)."""
    s = model.visual.image_size
    return int(s[0]) if isinstance(s, (tuple, list)) else int(s)


def clip_state_for_saving(model, used_token_ids) -> dict[str, torch.Tensor]:
    """State dict with the token table reduced to the rows of ``used_token_ids`` (the only rows training touched;
    all other rows are stored as nothing and come back as zeros). Keeps the shipped files small."""
    sd = dict(model.state_dict())
    table = sd.pop("token_embedding.weight")
    ids = torch.as_tensor(sorted({int(i) for i in used_token_ids}), dtype=torch.int64)
    sd[TOKEN_IDS] = ids
    sd[TOKEN_ROWS] = table[ids].clone()
    return sd


def clip_state_for_loading(sd: dict[str, torch.Tensor], vocab_size: int) -> dict[str, torch.Tensor]:
    sd = dict(sd)
    ids, rows = sd.pop(TOKEN_IDS), sd.pop(TOKEN_ROWS)
    table = torch.zeros(vocab_size, rows.shape[1], dtype=rows.dtype)
    table[ids] = rows
    sd["token_embedding.weight"] = table
    return sd


def load_clip(name: str = "clip", directory: Path | None = None):
    """(model, tokenizer) for ``name`` in {"clip", "pick"}: the shipped weights (sha256-verified), eval, float32.

    Scoring path (what training used): ``preprocess_uint8(images_nhwc, model.visual.image_size, CLIP_MEAN,
    CLIP_STD)`` -> ``model.encode_image``; ``tokenizer(prompts)`` -> ``model.encode_text``; L2-normalise both;
    CLIP Score = 100 * cosine, PickScore = ``model.logit_scale.exp()`` * cosine."""
    if name not in ("clip", "pick"):
        raise ValueError(f"unknown mini CLIP {name!r}; expected 'clip' or 'pick'")
    sd, cfg = W.load(name, W.WEIGHTS_DIR if directory is None else Path(directory))
    if cfg.get("open_clip_model") != CLIP_MODEL_NAME or cfg.get("model_cfg") != clip_config():
        raise W.WeightsError(f"weights {name!r} were trained for a different CLIP config than {CLIP_CONFIG_PATH}")
    model, tokenizer = build_clip()
    model.load_state_dict(clip_state_for_loading(sd, model.vocab_size))
    model = model.float().eval().requires_grad_(False)
    model.mean, model.std = CLIP_MEAN, CLIP_STD      # plain attributes, for the metrics' convenience
    return model, tokenizer
