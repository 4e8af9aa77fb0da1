"""Scale-RAE: the diffusion head and SigLIP-2 decoder layouts at full size (meta device), and the adapter (Qwen2.5
query pass, rectified-flow sampler, guidance_level, decoding, loading) built from tiny random networks."""

import json
import math
from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors.torch import load_file, save_file

from bench.models.base import ModelSpec, SamplerSettings
from bench.models.scale_rae import DECODER, SIGLIP2_DECODER_XL, ScaleRAE, chat_prompt, step_pairs, used_steps
from bench.nets.rae import DecoderConfig, RAEDecoder
from bench.nets.scale_rae import HEAD_2_4B, W_SEED, HeadConfig, ScaleRAEHead
from bench.options import OptionsError
from bench.timing import NFECounter

KEYS = Path(__file__).parent / "fixtures" / "keys"


def test_full_size_head_layout_matches_official_checkpoint():
    expected = json.loads((KEYS / "scale-rae-dit-head-2.4b.json").read_text())["tensors"]
    with torch.device("meta"):
        head = ScaleRAEHead(HEAD_2_4B)
    got = {k: list(v.shape) for k, v in head.state_dict().items()}
    assert sorted(set(expected) ^ set(got)) == []
    assert {k: v for k, v in got.items() if expected[k] != v} == {}
    assert 2.4e9 < sum(v.numel() for v in head.state_dict().values()) < 2.5e9     # "DiT 2.4B"


def test_tiny_head_forward_and_null_condition():
    cfg = HeadConfig(input_size=4, in_channels=24, hidden_size=32, depth=2, num_heads=2, z_channels=16)
    torch.manual_seed(0)
    head = ScaleRAEHead(cfg).eval()
    g = torch.Generator().manual_seed(1)
    with torch.no_grad():
        for name, p in head.named_parameters():      # zero-initialised adaLN/final layers: randomise everything
            p.copy_(torch.randn(p.shape, generator=g) * 0.1 + (1.0 if "norm" in name else 0.0))
    # the time-embedding frequencies are the reference's fixed draw, not checkpoint tensors
    assert torch.equal(head.t_embedder.W, torch.normal(0.0, 1.0, size=(256,),
                                                       generator=torch.Generator().manual_seed(W_SEED)))
    assert "t_embedder.W" not in head.state_dict()
    x, t, z = torch.randn(3, 24, 4, 4), torch.rand(3), torch.randn(3, 16, 16)
    with torch.no_grad():
        v = head(x, t, z)
        v_null = head(x, t, head.y_embedder.null_like(z))
        v0 = head(x[:1], t[:1], z[:1])
    assert v.shape == x.shape
    assert not torch.allclose(v, v_null)
    assert torch.allclose(v[:1], v0, atol=1e-5)          # rows are independent of the batch


# ---------------------------------------------------------------------------------------------- the adapter

CLASSES = ["tench", "goldfish", "great white shark"]
HEAD = {"input_size": 4, "in_channels": 24, "hidden_size": 32, "depth": 2, "num_heads": 2, "z_channels": 16}
DEC = {"latent_dim": 24, "hidden_size": 32, "num_layers": 1, "num_heads": 2, "intermediate_size": 64,
       "patch_size": 4, "grid": 4}   # 16 x 16 images: the mini datasets' evaluation size
WORDS = ["system", "You", "are", "a", "helpful", "assistant", ".", "user", "Can", "you", "generate", "photo", "of",
         "?", "tench", "goldfish", "great", "white", "shark"]


def _tokenizer(first: str = "<im_start>"):
    """A word-level tokenizer with the Qwen chat and Scale-RAE image special tokens; ``first`` gets id 0."""
    from tokenizers import Tokenizer, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast
    special = ["<im_start>", "<im_end>", "<|im_start|>", "<|im_end|>", "[UNK]"]
    order = [first] + [t for t in special + WORDS if t != first]
    tok = Tokenizer(models.WordLevel({t: i for i, t in enumerate(order)}, unk_token="[UNK]"))
    tok.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
    fast = PreTrainedTokenizerFast(tokenizer_object=tok, unk_token="[UNK]")
    fast.add_special_tokens({"additional_special_tokens": [t for t in special if t != "[UNK]"]})
    return fast


def _llm(seed: int = 0):
    """Tiny Qwen2.5 whose lm_head is zero: every logit ties, so greedy decoding emits token 0 (<im_start>) first."""
    from transformers import Qwen2Config, Qwen2ForCausalLM
    torch.manual_seed(seed)
    cfg = Qwen2Config(vocab_size=len(WORDS) + 5, hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                      num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=512,
                      tie_word_embeddings=False)
    llm = Qwen2ForCausalLM(cfg).eval()
    with torch.no_grad():
        llm.lm_head.weight.zero_()
    return llm


def _randomise(net: torch.nn.Module, seed: int, scale: float = 0.1) -> torch.nn.Module:
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, p in net.named_parameters():
            p.copy_(torch.randn(p.shape, generator=g) * scale + (1.0 if "norm" in name else 0.0))
    return net


def _parts(seed: int = 0):
    head = _randomise(ScaleRAEHead(HeadConfig(**HEAD)), seed + 1)
    dec = _randomise(RAEDecoder(DecoderConfig(**DEC)), seed + 2)
    g = torch.Generator().manual_seed(seed + 3)
    queries = torch.randn(16, 32, generator=g)
    proj = _randomise(torch.nn.Linear(32, 16), seed + 4, scale=0.3)
    return _llm(seed), queries, proj, head, dec


@pytest.fixture(scope="module")
def parts():
    return _parts()


def _gen(parts, **kw) -> ScaleRAE:
    llm, queries, proj, head, dec = parts
    return ScaleRAE().build(llm, _tokenizer(), queries, proj, head, dec, dtype=torch.float32, class_names=CLASSES,
                            **kw)


def test_prompt_and_sampler_schedule_follow_the_reference():
    assert chat_prompt("tench") == ("<|im_start|>system\nYou are a helpful assistant.<|im_end|>\n<|im_start|>user\n"
                                    "Can you generate a photo of a tench?<|im_end|>\n<|im_start|>assistant\n")
    assert used_steps(50)[:3] == [0, 20, 41] and used_steps(50)[-1] == 999 and len(used_steps(50)) == 50
    a = math.sqrt(1152 * 256 / 4096)
    u = np.linspace(1 / 1000, 1, 1000)
    t = a * u / (1 + (a - 1) * u)
    pairs = step_pairs(50, a)
    used = used_steps(50)
    assert len(pairs) == 49
    assert pairs[0] == (t[used[48]], t[used[47]]) and pairs[47] == (t[used[1]], t[used[0]])
    assert pairs[-1] == (t[used[48]], t[used[49]]) and pairs[-1][1] == 1.0     # the final step goes back up
    assert step_pairs(2, a) == [(t[0], t[999])]
    with pytest.raises(ValueError, match="steps must be >= 2"):
        step_pairs(1, a)


def test_full_size_siglip2_decoder_layout_matches_reference():
    expected = json.loads((KEYS / "scale-rae-decoder-siglip2-xl.json").read_text())["tensors"]
    with torch.device("meta"):
        dec = RAEDecoder(SIGLIP2_DECODER_XL)
    got = {k: list(v.shape) for k, v in dec.state_dict().items()}
    assert sorted(set(expected) ^ set(got)) == []
    assert {k: v for k, v in got.items() if expected[k] != v} == {}


def test_generate_end_to_end_nfe_and_determinism(parts):
    gen = _gen(parts)
    s = SamplerSettings(steps=5, cfg=1.0, seed=3)
    counter = NFECounter()
    with counter.watch(gen.networks()):
        img = gen.generate(torch.tensor([0, 1, 0]), torch.tensor([0, 1, 2]), s)
    assert img.shape == (3, 16, 16, 3) and img.dtype == torch.uint8
    assert counter.per_image(3) == gen.nfe_per_image(s) == 4
    assert gen.llm_forwards == 4                         # 2 classes x (1 greedy step + 1 query pass), cached after
    assert not torch.equal(img[0], img[2])              # same class, other sample id: other noise
    assert gen.condition(0).shape == (16, 16)
    with torch.inference_mode():
        both = gen.sample_tokens(torch.tensor([0, 1, 0]), torch.tensor([0, 1, 2]), s)
        one = gen.sample_tokens(torch.tensor([0]), torch.tensor([2]), s)
    assert both.shape == (3, 16, 24)
    assert torch.allclose(both[2:], one, atol=1e-5)      # row depends on (seed, id, class) only, not the batch
    assert not torch.allclose(both[0], both[1])


def test_guidance_level_doubles_the_head_batch_but_default_interval_keeps_the_conditional(parts):
    gen = _gen(parts)
    ids, labels = torch.tensor([4, 5]), torch.tensor([1, 2])
    plain = SamplerSettings(steps=4, cfg=1.0, seed=0)
    guided = SamplerSettings(steps=4, cfg=3.0, seed=0)
    counter = NFECounter()
    with counter.watch(gen.networks()), torch.inference_mode():
        g = gen.sample_tokens(labels, ids, guided)
    assert counter.per_image(2) == gen.nfe_per_image(guided) == 6
    assert "conditional prediction" in gen.guidance
    with torch.inference_mode():
        p = gen.sample_tokens(labels, ids, plain)
        real = _gen(parts, cfg_interval=(2.0, 3.0)).sample_tokens(labels, ids, guided)   # t never inside: true CFG
    assert torch.allclose(g, p, atol=1e-5)
    assert not torch.allclose(real, p, atol=1e-3)


def test_no_image_token_and_bad_settings_are_clear_errors(parts):
    llm, queries, proj, head, dec = parts
    gen = ScaleRAE().build(llm, _tokenizer(first="tench"), queries, proj, head, dec, dtype=torch.float32,
                           class_names=CLASSES, max_new_tokens=3)
    with pytest.raises(RuntimeError, match="no <im_start> token for class 1"):
        gen.generate(torch.tensor([1]), torch.tensor([0]), SamplerSettings(steps=3, cfg=1.0))
    with pytest.raises(ValueError, match="steps must be an integer >= 2"):
        gen.nfe_per_image(SamplerSettings(steps=1, cfg=1.0))
    with pytest.raises(ValueError, match="label 7 outside"):
        _gen(parts).generate(torch.tensor([7]), torch.tensor([0]), SamplerSettings(steps=3, cfg=1.0))
    with pytest.raises(OptionsError, match="prompt: must contain"):
        ScaleRAE.validate_options({"prompt": "a photo"})
    with pytest.raises(OptionsError, match="unknown option"):
        ScaleRAE.validate_options({"guidance_scale": 2})
    with pytest.raises(ValueError, match="latent_queries have shape"):
        ScaleRAE().build(llm, _tokenizer(), queries[:3], proj, head, dec)


SRAE_DEFAULTS = {"decoder": DECODER, "tokenizer": None, "prompt": "Can you generate a photo of a {class_name}?",
                 "dtype": "bfloat16", "cfg_interval": [-1e4, 1e4], "max_new_tokens": 512, "head_arch": None,
                 "decoder_arch": None}


def test_options_are_typed_with_defaults_and_did_you_mean():
    assert ScaleRAE.validate_options({}) == ScaleRAE.validate_options(SRAE_DEFAULTS) == SRAE_DEFAULTS
    with pytest.raises(OptionsError) as e:
        ScaleRAE.validate_options({"max_new_token": 8})
    assert e.value.problems == [("max_new_token", "unknown option (did you mean 'max_new_tokens'?)")]
    for key, bad in [("max_new_tokens", "8"), ("max_new_tokens", 0), ("dtype", "bf16"), ("cfg_interval", [1, 1]),
                     ("cfg_interval", 0.5), ("prompt", 3), ("tokenizer", 3), ("head_arch", {**HEAD, "depht": 2}),
                     ("decoder_arch", {**DEC, "grid": 4.0})]:
        with pytest.raises(OptionsError) as e:
            ScaleRAE.validate_options({key: bad})
        assert [k for k, _ in e.value.problems][:1] == [key], (key, e.value.problems)
    full = ScaleRAE.validate_options({"head_arch": HEAD})["head_arch"]
    assert full == {**HEAD, "mlp_ratio": 4.0} and ScaleRAE.validate_options({"head_arch": full})["head_arch"] == full


def _save(tmp_path: Path, parts, base_dim: int | None = None) -> dict:
    """The official folder layout (one safetensors file holding the LLM and the Scale-RAE tensors), a decoder .pt and
    a tokenizer folder; returns the model options that point at them."""
    llm, queries, proj, head, dec = parts
    llm.save_pretrained(tmp_path)
    _tokenizer().save_pretrained(tmp_path / "tok")    # beside a qwen2 config.json transformers would read it as BPE
    sd = load_file(str(tmp_path / "model.safetensors"))
    sd["model.latent_queries"] = queries.clone()
    sd.update({f"diff_head.model.{k}": v.clone() for k, v in head.state_dict().items()})
    sd.update({f"diff_head_projector.{k}": v.clone() for k, v in proj.state_dict().items()})
    sd["diff_head.data_mean"], sd["diff_head.data_std"] = torch.full((24,), 0.5), torch.full((24,), 2.0)
    save_file(sd, str(tmp_path / "model.safetensors"), metadata={"format": "pt"})
    torch.save(dec.state_dict(), tmp_path / "decoder.pt")
    if base_dim:
        conf = json.loads((tmp_path / "config.json").read_text())
        (tmp_path / "config.json").write_text(json.dumps({**conf, "diffusion_base_dim": base_dim}))
    return {"decoder": str(tmp_path / "decoder.pt"), "tokenizer": str(tmp_path / "tok"), "dtype": "float32",
            "head_arch": HEAD, "decoder_arch": DEC}


def test_load_official_layout_from_folder(tmp_path, parts):
    opts = _save(tmp_path, parts, base_dim=24 * 16 * 4)
    spec = ModelSpec(id="scale-rae", adapter="scale-rae", weights=str(tmp_path), options=opts)
    gen = ScaleRAE()
    gen.class_names = CLASSES
    gen.load(spec, torch.device("cpu"))
    ref = _gen(parts)
    s = SamplerSettings(steps=3, cfg=1.0, seed=1)
    assert gen.shift == 0.5 and ref.shift == math.sqrt(24 * 16 / 4096)   # time shift from diffusion_base_dim
    gen.base_dim = ref.base_dim
    with torch.inference_mode():
        a = gen.sample_tokens(torch.tensor([2]), torch.tensor([0]), s)
        b = ref.sample_tokens(torch.tensor([2]), torch.tensor([0]), s)
    assert torch.allclose(a, b * 2.0 + 0.5, atol=1e-5)   # the checkpoint's data statistics de-normalise the tokens
    assert gen.weights_id(spec).startswith("sha256:")
    with pytest.raises(ValueError, match="unknown option"):
        ScaleRAE().load(ModelSpec(id="s", adapter="scale-rae", weights=str(tmp_path), options={"steps": 3}), "cpu")


@pytest.mark.slow
def test_suite_runs_scale_rae_end_to_end(tmp_path, parts, toy_suite_text):
    import bench
    from bench.runner import Runner
    from bench.suite import Suite
    opts = _save(tmp_path / "w", parts)
    text = toy_suite_text(n=2, steps="[2, 4]", cfg="[1.0, 2.0]").replace(
        "    adapter: toy\n",
        f"    adapter: scale-rae\n    weights: {tmp_path / 'w'}\n    options: {json.dumps(opts)}\n")
    summary = Runner(Suite.parse(text, "scale-rae.yaml"), db=tmp_path / "b.duckdb", progress=False).run()
    assert (summary.ran, summary.failed) == (4, 0)
    df = bench.load(tmp_path / "b.duckdb").sort_values(["steps", "cfg"])
    assert list(df["nfe"]) == [1.0, 2.0, 3.0, 6.0]
    assert list(df["nfe"]) == list(df["nfe_declared"])
