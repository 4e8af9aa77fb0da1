"""Tiny random networks the metric tests load from disk like real weights (no download)."""

from __future__ import annotations

from pathlib import Path

import torch


def save_tiny_dinov2(d: Path) -> Path:
    """A 2-layer, 24-wide random ``Dinov2Model`` (patch 14, 224 px input) saved with ``save_pretrained`` in ``d``."""
    from transformers import Dinov2Config, Dinov2Model
    torch.manual_seed(0)
    model = Dinov2Model(Dinov2Config(hidden_size=24, num_hidden_layers=2, num_attention_heads=2, mlp_ratio=2,
                                     patch_size=14, image_size=224))
    model.save_pretrained(d)
    return d


def save_tiny_clip(d: Path) -> Path:
    """A 2-layer, 32-wide random ``CLIPModel`` (32 px images, byte-level BPE with no merges) and its processor,
    saved with ``save_pretrained`` in ``d``."""
    import json

    from transformers import CLIPConfig, CLIPImageProcessor, CLIPModel, CLIPProcessor, CLIPTokenizer
    from transformers.convert_slow_tokenizer import bytes_to_unicode

    chars = list(bytes_to_unicode().values())     # byte-level BPE with no merges: one token per character
    vocab = {c: i for i, c in enumerate(chars + [c + "</w>" for c in chars] + ["<|startoftext|>", "<|endoftext|>"])}
    (d / "vocab.json").write_text(json.dumps(vocab))
    (d / "merges.txt").write_text("#version: 0.2\n")
    tok = CLIPTokenizer(str(d / "vocab.json"), str(d / "merges.txt"))
    proc = CLIPProcessor(image_processor=CLIPImageProcessor(size={"shortest_edge": 32},
                                                            crop_size={"height": 32, "width": 32}), tokenizer=tok)
    special = {"bos_token_id": vocab["<|startoftext|>"], "eos_token_id": vocab["<|endoftext|>"],
               "pad_token_id": vocab["<|endoftext|>"]}
    cfg = CLIPConfig(text_config=dict(hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=2,
                                      vocab_size=len(vocab), max_position_embeddings=77, **special),
                     vision_config=dict(hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                                        num_attention_heads=2, image_size=32, patch_size=8),
                     projection_dim=16, logit_scale_init_value=3.0)
    torch.manual_seed(0)
    model = CLIPModel(cfg).eval()
    model.save_pretrained(d)
    proc.save_pretrained(d)
    return d
