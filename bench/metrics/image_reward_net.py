"""The ImageReward-v1.0 network on transformers' BLIP modules, read from ``ImageReward.pt`` by a documented key map.

Reference: github:THUDM/ImageReward — ImageReward/ImageReward.py (``ImageReward.__init__``, ``score``, ``MLP``),
ImageReward/models/BLIP/blip_pretrain.py, blip.py (``create_vit('large', 224)``), vit.py, med.py and
med_config.json. The reward of a preprocessed image ``x`` and its tokenized prompt:

    states = ViT-L/16(x)                      # all 197 tokens after the final LayerNorm (eps 1e-6)
    cls    = BERT(ids, mask, cross-attention to states, image mask all ones).last_hidden_state[:, 0]
    reward = (MLP(cls) - 0.16717362830052426) / 1.0333394966054072

The towers run as transformers' ``BlipVisionModel`` and ``BlipTextModel`` (``is_decoder=True`` in the config so
every layer has its cross-attention; called with ``is_decoder=False``: a bidirectional self-attention mask).
They compute what the reference's timm-style ViT and BLIP ``med.BertModel`` compute: pre-norm ViT blocks with a
fused qkv (same head split), scale head_dim**-0.5, exact GELU, MLP ratio 4; BERT embeddings without token types,
post-norm layers self-attention -> cross-attention (key/value from the 1024-wide image states) -> FFN, eps
1e-12. The only difference is the fill of the text padding mask (-10000 there, float32 min here): both give
padded tokens exactly zero weight. Dropouts (and the ViT's drop-path) are identity at eval.

Key map (`hf_key`), the renames of transformers' convert_blip_original_pytorch_to_hf.py ``rename_key``:

    blip.visual_encoder.cls_token              -> vision  embeddings.class_embedding
    blip.visual_encoder.pos_embed              -> vision  embeddings.position_embedding
    blip.visual_encoder.patch_embed.proj.*     -> vision  embeddings.patch_embedding.*
    blip.visual_encoder.blocks.N.norm1/norm2.* -> vision  encoder.layers.N.layer_norm1/layer_norm2.*
    blip.visual_encoder.blocks.N.attn.qkv.*    -> vision  encoder.layers.N.self_attn.qkv.*
    blip.visual_encoder.blocks.N.attn.proj.*   -> vision  encoder.layers.N.self_attn.projection.*
    blip.visual_encoder.blocks.N.mlp.fc1/fc2.* -> vision  encoder.layers.N.mlp.fc1/fc2.*
    blip.visual_encoder.norm.*                 -> vision  post_layernorm.*
    blip.text_encoder.<name>                   -> text    <name> (same names; embeddings.position_ids dropped)
    mlp.layers.{0,2,4,6,7}.*                   -> head    {0,1,2,3,4}.* (the Linear layers; 1, 3, 5 are Dropout)

Every other key (BLIP's ``vision_proj`` / ``text_proj``, unused by the reward) is ignored, as the reference's
``load_state_dict(strict=False)`` ignores it; inside the three parts loading is strict (a missing or unknown
tensor is an error). Sizes are read from the tensors (ImageReward-v1.0: ViT width 1024, 24 blocks, patch 16,
224 px; BERT 768, 12 layers, vocab 30524; MLP 768-1024-128-64-16-1); head counts are width / 64 (16 and 12 in
v1.0, whose heads are all 64 wide). The MLP has no activations: the reference's ReLUs are commented out.
"""

from __future__ import annotations

import math
import pickle
import re
from pathlib import Path

import torch
from torch import nn

from bench.metrics.base import MetricError

REWARD_MEAN = 0.16717362830052426
REWARD_STD = 1.0333394966054072
HEAD_DIM = 64                 # every attention head of ImageReward-v1.0 (ViT-L: 1024/16, BERT-base: 768/12)
VIT_EPS, BERT_EPS = 1e-6, 1e-12
HEAD_LAYERS = (0, 2, 4, 6, 7)  # the Linear layers of the reference's ``MLP.layers`` Sequential

_VISION_RULES = (
    (r"^cls_token$", "embeddings.class_embedding"),
    (r"^pos_embed$", "embeddings.position_embedding"),
    (r"^patch_embed\.proj\.", "embeddings.patch_embedding."),
    (r"^norm\.", "post_layernorm."),
    (r"^blocks\.(\d+)\.norm([12])\.", r"encoder.layers.\1.layer_norm\2."),
    (r"^blocks\.(\d+)\.attn\.qkv\.", r"encoder.layers.\1.self_attn.qkv."),
    (r"^blocks\.(\d+)\.attn\.proj\.", r"encoder.layers.\1.self_attn.projection."),
    (r"^blocks\.(\d+)\.mlp\.", r"encoder.layers.\1.mlp."),
)


def convert_hint(path: Path) -> str:
    """The one-line conversion of a pickled checkpoint to safetensors (run where the file is trusted)."""
    out = path.with_suffix(".safetensors")
    return (f"python -c \"import torch; from safetensors.torch import save_file; save_file({{k: v.contiguous() for "
            f"k, v in torch.load('{path}', map_location='cpu', weights_only=False).items()}}, '{out}')\"")


def read_state_dict(path: Path, option: str) -> dict[str, torch.Tensor]:
    """A flat name -> tensor dict from ``.safetensors`` or a ``torch.save`` file read with ``weights_only=True``
    (never a full unpickle: a file that needs one is refused, with the conversion to run once)."""
    try:
        if path.suffix == ".safetensors":
            from safetensors.torch import load_file
            sd = load_file(str(path))
        else:
            sd = torch.load(str(path), map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as e:
        raise MetricError(f"image_reward: {str(path)!r} (option `{option}`) cannot be loaded with "
                          f"torch.load(weights_only=True) ({str(e).splitlines()[0]}); it is not read with a full "
                          f"unpickle. Convert it once, on a machine where you trust the file: {convert_hint(path)} "
                          f"-- and give the .safetensors file as `{option}`") from None
    except Exception as e:  # noqa: BLE001 - truncated file, not a checkpoint: one message
        raise MetricError(f"image_reward: cannot read {str(path)!r} (option `{option}`): {type(e).__name__}: "
                          f"{e}") from None
    if not isinstance(sd, dict) or not all(isinstance(v, torch.Tensor) for v in sd.values()):
        raise MetricError(f"image_reward: {str(path)!r} (option `{option}`) is not a state dict of tensors")
    return sd


def hf_key(key: str) -> tuple[str, str] | None:
    """(part, name) of a reference key in transformers' modules / our head, or None for a key the reward ignores."""
    if key.startswith("blip.visual_encoder."):
        k = key[len("blip.visual_encoder."):]
        for pattern, repl in _VISION_RULES:
            new, n = re.subn(pattern, repl, k)
            if n:
                return "vision", new
        return "vision", k                      # unknown: refused by the strict load below
    if key.startswith("blip.text_encoder."):
        k = key[len("blip.text_encoder."):]
        return None if k == "embeddings.position_ids" else ("text", k)
    m = re.fullmatch(r"mlp\.layers\.(\d+)\.(weight|bias)", key)
    if m and int(m.group(1)) in HEAD_LAYERS:
        return "head", f"{HEAD_LAYERS.index(int(m.group(1)))}.{m.group(2)}"
    return None


def split(sd: dict[str, torch.Tensor]) -> dict[str, dict[str, torch.Tensor]]:
    parts: dict[str, dict[str, torch.Tensor]] = {"vision": {}, "text": {}, "head": {}}
    for k, v in sd.items():
        where = hf_key(k)
        if where is not None:
            parts[where[0]][where[1]] = v.float()
    return parts


def _count(names, prefix: str) -> int:
    idx = {int(m.group(1)) for n in names if (m := re.match(re.escape(prefix) + r"(\d+)\.", n))}
    return max(idx) + 1 if idx else 0


def architecture(parts: dict[str, dict[str, torch.Tensor]]) -> dict[str, int]:
    """Sizes read off the tensors (KeyError when a tensor the reward needs is absent)."""
    v, t = parts["vision"], parts["text"]
    width, patch = v["embeddings.class_embedding"].shape[-1], v["embeddings.patch_embedding.weight"].shape[-1]
    grid = math.isqrt(v["embeddings.position_embedding"].shape[1] - 1)
    vocab, hidden = t["embeddings.word_embeddings.weight"].shape
    return {"vision_width": width, "vision_layers": _count(v, "encoder.layers."), "patch": patch,
            "image_size": grid * patch, "vision_mlp": v["encoder.layers.0.mlp.fc1.weight"].shape[0],
            "text_width": hidden, "text_layers": _count(t, "encoder.layer."), "vocab": vocab,
            "text_positions": t["embeddings.position_embeddings.weight"].shape[0],
            "text_ffn": t["encoder.layer.0.intermediate.dense.weight"].shape[0],
            "encoder_width": t["encoder.layer.0.crossattention.self.key.weight"].shape[1],
            "head": [parts["head"][f"{i}.weight"].shape[0] for i in range(len(HEAD_LAYERS))]}


class ImageRewardNet(nn.Module):
    """``forward(pixels, ids, mask)`` -> (B,) float32 rewards; build with `ImageRewardNet.from_state_dict`."""

    def __init__(self, arch: dict):
        from transformers import BlipTextConfig, BlipTextModel, BlipVisionConfig, BlipVisionModel
        super().__init__()
        self.arch = arch
        w, h = arch["vision_width"], arch["text_width"]
        self.vision = BlipVisionModel(BlipVisionConfig(
            hidden_size=w, intermediate_size=arch["vision_mlp"], num_hidden_layers=arch["vision_layers"],
            num_attention_heads=w // HEAD_DIM, image_size=arch["image_size"], patch_size=arch["patch"],
            hidden_act="gelu", layer_norm_eps=VIT_EPS, attention_dropout=0.0))
        self.text = BlipTextModel(BlipTextConfig(
            vocab_size=arch["vocab"], hidden_size=h, encoder_hidden_size=arch["encoder_width"],
            intermediate_size=arch["text_ffn"], num_hidden_layers=arch["text_layers"],
            num_attention_heads=h // HEAD_DIM, max_position_embeddings=arch["text_positions"], hidden_act="gelu",
            layer_norm_eps=BERT_EPS, hidden_dropout_prob=0.0, attention_probs_dropout_prob=0.0, pad_token_id=0,
            bos_token_id=None, eos_token_id=None, sep_token_id=None,      # generation only: unused here
            is_decoder=True), add_pooling_layer=False)
        sizes = [h, *arch["head"]]
        self.head = nn.Sequential(*[nn.Linear(a, b) for a, b in zip(sizes[:-1], sizes[1:])])

    @classmethod
    def from_state_dict(cls, sd: dict[str, torch.Tensor], where: str) -> "ImageRewardNet":
        parts = split(sd)
        try:
            arch = architecture(parts)
        except KeyError as e:
            raise MetricError(f"image_reward: {where} is not an ImageReward checkpoint (no tensor for {e.args[0]!r} "
                              f"after the key map; expected blip.visual_encoder.*, blip.text_encoder.*, "
                              f"mlp.layers.*)") from None
        w, h = arch["vision_width"], arch["text_width"]
        bad = [why for why, wrong in (
            ("the cross-attention key/value width is not the ViT width", arch["encoder_width"] != w),
            ("the MLP does not end in one output", arch["head"][-1] != 1),
            (f"a width is not a multiple of {HEAD_DIM}", w % HEAD_DIM or h % HEAD_DIM)) if wrong]
        if bad:
            raise MetricError(f"image_reward: {where} has an unexpected architecture {arch}: {'; '.join(bad)}")
        net = cls(arch)
        for name in ("vision", "text", "head"):
            try:
                getattr(net, name).load_state_dict(parts[name], strict=True)
            except RuntimeError as e:
                raise MetricError(f"image_reward: {where}: its {name} tensors do not fit ImageReward-v1.0's "
                                  f"layout: {e}") from None
        return net.eval()

    def forward(self, pixels: torch.Tensor, ids: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        states = self.vision(pixel_values=pixels).last_hidden_state
        image_mask = torch.ones(states.shape[:-1], dtype=torch.long, device=states.device)
        out = self.text(input_ids=ids, attention_mask=mask, encoder_hidden_states=states,
                        encoder_attention_mask=image_mask, is_decoder=False, use_cache=False)
        cls_state = out.last_hidden_state[:, 0, :].float()
        return ((self.head(cls_state) - REWARD_MEAN) / REWARD_STD)[:, 0]
