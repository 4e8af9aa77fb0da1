"""Scale-RAE adapter: Qwen2.5-1.5B writes 256 query hidden states, the DiT head samples SigLIP-2 tokens from them
with a rectified flow, and the SigLIP-2 ViT-XL decoder turns the tokens into 256 x 256 pixels.

Reference: ZitengWangNYU/Scale-RAE @ dab38002b4b42c2d2262776785276d410599a443 (inference.py ``generate_image``,
``ScaleRAEQwenForCausalLM.greedy_decode``, ``FullSequenceRectifiedFlowProjector.infer``,
``diffusion/transport.py`` ``RectifiedFlow.p_sample_loop``, ``multimodal_decoder``). What it does, reproduced here:

1. Prompt: the ``qwen_2`` chat template (ChatML, system "You are a helpful assistant.") around the user message
   "Can you generate a photo of a {class_name}?", ending with "<|im_start|>assistant\\n"; tokenised as a plain
   string (no image tokens).
2. LLM pass: greedy decoding without a KV cache (a full causal forward per step, as the reference does), text
   tokens appended until the model emits ``<im_start>`` (at most ``max_new_tokens`` = 512 steps, stopping at
   ``<|im_end|>``); then the ``<im_start>`` embedding and the 256 learned ``model.latent_queries`` are appended and
   one more forward gives the 256 final (post-norm) hidden states, mapped by ``diff_head_projector`` to the head's
   per-token condition z. Greedy decoding has no randomness, so z depends only on the class: it is computed once
   per class and cached (`llm_forwards` counts the LLM forwards; they are not NFE).
3. Sampler: ``RectifiedFlow`` with 1000 training steps respaced to N = ``s.steps`` used steps (the reference's
   ``create_rf_projector`` fixes 50: give ``steps: 50`` to match it; the guided-diffusion ``space_timesteps``),
   time points t_k = a u / (1 + (a - 1) u) for u = linspace(1/1000, 1, 1000), a = sqrt(1152 * 256 / base_dim),
   base_dim = config.json's ``diffusion_base_dim`` or 4096. Starting from noise x it runs Euler
   x <- x + (t_next - t_curr) v(x, t_curr) from used step N-2 down to used step 0, then ONE MORE Euler step from
   used step N-2 to used step N-1 (back towards noise: the reference's final ``euler_forward`` call, reproduced as
   written). Head evaluations: N - 1; N >= 2.
4. Guidance (``s.cfg`` is the reference's ``guidance_level``): for guidance_level > 1 the head runs on 2B rows
   (conditional z and the learned null ``y_embedder.dropout_embedding``) through ``forward_with_cfg``, which uses
   the conditional prediction when cfg_interval[0] < t < cfg_interval[1] and uncond + g (cond - uncond) otherwise.
   With the released ``cfg_interval`` [-1e4, 1e4] every t is inside, so guidance_level > 1 DOUBLES THE HEAD BATCH
   BUT DOES NOT CHANGE THE IMAGE (see `guidance`). NFE per image = (N - 1) x (2 if guidance_level > 1 else 1).
5. The sampled tokens are de-normalised with ``diff_head.data_mean`` / ``data_std`` when the checkpoint has them
   (the reference's ``normalize_data``), then decoded: the SigLIP-2 decoder (RAE's ViT decoder with 1152-wide input
   tokens; the reference prepends a zero CLS token that the decoder embeds and then drops) gives pixels in the
   SigLIP normalised space, * std + mean (0.5), clip(0, 1), * 255, truncated to uint8, 256 x 256.

Precision: the reference loads the model in bfloat16 and the head runs in the condition's dtype (noise drawn in
bfloat16, t cast to bfloat16); ``dtype`` (default bfloat16) reproduces that; the decoder runs in float32.
Randomness: the initial noise only, ``bench.noise.gaussian(seed, ids, (1152, 16, 16), stream="scale-rae/init")``
drawn in float32 and cast to ``dtype`` (the reference draws torch.randn in bfloat16 directly).

Weights: ``spec.weights`` (default ``nyu-visionx/Scale-RAE-Qwen1.5B_DiT2.4B``) is the Hugging Face model folder
(config.json, tokenizer, *.safetensors with ``model.*``, ``lm_head``, ``model.latent_queries``, ``diff_head.*``,
``diff_head_projector.*``); option ``decoder`` (default ``hf://nyu-visionx/siglip2_decoder/`` + the web73M decXL
file named in inference.py) is the decoder checkpoint (.pt weights_only / .safetensors); option ``tokenizer``
(default: the model folder) a tokenizer folder. Test-size networks: options ``head_arch`` / ``decoder_arch``.
"""

from __future__ import annotations

import hashlib
import json
import math
from pathlib import Path
from typing import Annotated, Any, Literal

import numpy as np
import torch
from pydantic import AfterValidator, Field
from torch import nn

from bench import noise
from bench.hub import resolve_weights
from bench.models.base import Generator, ModelSpec, SamplerSettings, StrictOptions, frozen
from bench.models.checkpoint import (
    check_interval,
    check_settings,
    config_option,
    config_options,
    interval_option,
    load_strict,
    read_checkpoint,
)
from bench.models.rae import DecoderArch
from bench.nets.rae import DecoderConfig, RAEDecoder
from bench.nets.scale_rae import HEAD_2_4B, HeadConfig, ScaleRAEHead
from bench.provenance import sha256_path

WEIGHTS = "nyu-visionx/Scale-RAE-Qwen1.5B_DiT2.4B"
DECODER = "hf://nyu-visionx/siglip2_decoder/siglip2_sop14_i224_web73M_ganw3_decXL.pt"
SYSTEM = "<|im_start|>system\nYou are a helpful assistant."
PROMPT = "Can you generate a photo of a {class_name}?"
IMAGE_START, IMAGE_END, EOS = "<im_start>", "<im_end>", "<|im_end|>"
SIGLIP_MEAN = SIGLIP_STD = (0.5, 0.5, 0.5)
CFG_INTERVAL = (-1e4, 1e4)
TRAIN_STEPS = 1000
BASE_DIM = 4096
MAX_NEW_TOKENS = 512
INIT_STREAM = "scale-rae/init"
SIGLIP2_DECODER_XL = DecoderConfig(latent_dim=1152)
DTYPES = {"bfloat16": torch.bfloat16, "float16": torch.float16, "float32": torch.float32}


def check_prompt(prompt: str) -> str:
    if "{class_name}" not in prompt:
        raise ValueError(f"must contain {{class_name}}, got {prompt!r}")
    return prompt


HeadArch = config_option(config_options(HeadConfig), lambda d: HeadConfig(**d), names=False)
CFGInterval = interval_option()


class ScaleRAEOptions(StrictOptions):
    decoder: Annotated[str, Field(min_length=1)] = DECODER      # the SigLIP-2 decoder checkpoint
    tokenizer: str | None = None                                 # None: the model folder's tokenizer
    prompt: Annotated[str, AfterValidator(check_prompt)] = PROMPT
    dtype: Literal["bfloat16", "float16", "float32"] = "bfloat16"
    cfg_interval: CFGInterval = list(CFG_INTERVAL)
    max_new_tokens: Annotated[int, Field(ge=1)] = MAX_NEW_TOKENS
    head_arch: HeadArch = None              # None: config.json's diffusion_model_* sizes, else the 2.4B head
    decoder_arch: DecoderArch = None        # None: the SigLIP-2 ViT-XL decoder


def chat_prompt(class_name: str, template: str = PROMPT) -> str:
    """The reference's ``conv_templates["qwen_2"]`` prompt for one user message."""
    return f"{SYSTEM}<|im_end|>\n<|im_start|>user\n{template.format(class_name=class_name)}<|im_end|>\n" \
           f"<|im_start|>assistant\n"


def used_steps(steps: int, total: int = TRAIN_STEPS) -> list[int]:
    """guided-diffusion ``space_timesteps(total, str(steps))`` for one section, sorted."""
    if steps <= 1:
        return [0]
    stride = (total - 1) / (steps - 1)
    return sorted({round(k * stride) for k in range(steps)})


def step_pairs(steps: int, shift: float) -> list[tuple[float, float]]:
    """(t_curr, t_next) of every Euler step of ``p_sample_loop``, in order, including its final step."""
    if steps < 2:
        raise ValueError(f"Scale-RAE: steps must be >= 2 (the reference sampler indexes used step N-2), got {steps}")
    u = np.linspace(1 / TRAIN_STEPS, 1, TRAIN_STEPS)
    t = (shift * u / (1 + (shift - 1) * u)).tolist()
    used = used_steps(steps)
    pairs = [(t[used[i]], t[used[i - 1]]) for i in reversed(range(1, len(used) - 1))]
    return pairs + [(t[used[-2]], t[used[-1]])]


def head_config(cfg: dict) -> HeadConfig:
    """The head's shape from the checkpoint's config.json (``diffusion_model_*`` keys), else the 2.4B default."""
    d = HEAD_2_4B
    return HeadConfig(input_size=d.input_size, in_channels=cfg.get("diffusion_model_channels") or d.in_channels,
                      hidden_size=cfg.get("diffusion_model_hidden_size") or d.hidden_size,
                      depth=cfg.get("diffusion_model_depth") or d.depth,
                      num_heads=cfg.get("diffusion_model_heads") or d.num_heads,
                      z_channels=cfg.get("diffusion_model_z_channels") or d.z_channels)


class ScaleRAE(Generator):
    """Scale-RAE (Qwen2.5-1.5B + DiT 2.4B head + SigLIP-2 decoder) prompted with ImageNet class names."""
    family = "flow"
    version = "scale-rae-1"
    Options = ScaleRAEOptions
    solvers = ("euler",)
    guidance = ("guidance_level (the suite's cfg) > 1 runs the head on 2B rows (conditional and learned null "
                "condition) and counts 2 NFE per step, but with the released cfg_interval [-1e4, 1e4] the "
                "reference's forward_with_cfg returns the conditional prediction at every t, so the images equal "
                "those of guidance_level 1")

    def __init__(self) -> None:
        self.llm = self.tokenizer = self.latent_queries = self.projector = self.head = self.decoder = None
        self.data_mean = self.data_std = None
        self.device = torch.device("cpu")
        self.dtype = torch.bfloat16
        self.cfg_interval = CFG_INTERVAL
        self.prompt = PROMPT
        self.max_new_tokens = MAX_NEW_TOKENS
        self.base_dim = BASE_DIM
        self.class_names: list[str] | None = None
        self.ids: dict[str, int] = {}
        self.llm_forwards = 0
        self._cond: dict[int, torch.Tensor] = {}
        self.files: dict[str, Path] = {}

    # ------------------------------------------------------------------ building
    def build(self, llm: nn.Module, tokenizer, latent_queries: torch.Tensor, projector: nn.Module,
              head: ScaleRAEHead, decoder: RAEDecoder, device: torch.device | str = "cpu",
              dtype: torch.dtype = torch.bfloat16, data_mean: torch.Tensor | None = None,
              data_std: torch.Tensor | None = None, cfg_interval=CFG_INTERVAL, prompt: str = PROMPT,
              max_new_tokens: int = MAX_NEW_TOKENS, class_names: list[str] | None = None,
              base_dim: int = BASE_DIM) -> "ScaleRAE":
        """Use networks already in memory (tests, notebooks): ``llm`` is a transformers Qwen2ForCausalLM."""
        hc = head.cfg
        if tuple(latent_queries.shape) != (hc.input_size ** 2, llm.config.hidden_size):
            raise ValueError(f"Scale-RAE: latent_queries have shape {tuple(latent_queries.shape)}, expected "
                             f"({hc.input_size ** 2}, {llm.config.hidden_size})")
        if (projector.in_features, projector.out_features) != (llm.config.hidden_size, hc.z_channels):
            raise ValueError(f"Scale-RAE: diff_head_projector maps {projector.in_features} -> "
                             f"{projector.out_features}, expected {llm.config.hidden_size} -> {hc.z_channels}")
        if (decoder.cfg.latent_dim, decoder.cfg.grid) != (hc.in_channels, hc.input_size):
            raise ValueError(f"Scale-RAE: decoder takes {decoder.cfg.latent_dim} x {decoder.cfg.grid}^2 tokens, the "
                             f"head makes {hc.in_channels} x {hc.input_size}^2")
        if "{class_name}" not in prompt:
            raise ValueError(f"Scale-RAE: prompt must contain {{class_name}}, got {prompt!r}")
        ids = {k: tokenizer.convert_tokens_to_ids(k) for k in (IMAGE_START, IMAGE_END, EOS)}
        unk = getattr(tokenizer, "unk_token_id", None)
        bad = [k for k, v in ids.items() if v is None or (unk is not None and v == unk)]
        if bad:
            raise ValueError(f"Scale-RAE: the tokenizer has no token(s) {bad}")
        self.device, self.dtype = torch.device(device), dtype
        self.llm = self._prep(llm, dtype)
        self.projector = self._prep(projector, dtype)
        self.head = self._prep(head, dtype)
        self.decoder = self._prep(decoder, torch.float32)
        self.latent_queries = latent_queries.detach().to(self.device, dtype)
        self.tokenizer, self.ids = tokenizer, ids
        self.data_mean = None if data_mean is None else data_mean.to(self.device, dtype)
        self.data_std = None if data_std is None else data_std.to(self.device, dtype)
        self.cfg_interval = check_interval(cfg_interval, "Scale-RAE: cfg_interval")
        self.prompt, self.max_new_tokens, self.base_dim = prompt, int(max_new_tokens), int(base_dim)
        if class_names is not None:
            self.class_names = list(class_names)
        self._cond.clear()
        return self

    def _prep(self, net: nn.Module, dtype: torch.dtype) -> nn.Module:
        return frozen(net, self.device, dtype)

    def bind_dataset(self, dataset) -> None:
        self.class_names = list(dataset.class_names)
        self._cond.clear()

    def _files(self, spec: ModelSpec) -> tuple[ScaleRAEOptions, dict[str, Path]]:
        o = self.parse_options(spec.options)
        model = resolve_weights(spec.weights or WEIGHTS, what="Scale-RAE model folder")
        if not model.is_dir():
            raise ValueError(f"Scale-RAE: weights {model} must be the model folder (config.json, tokenizer, "
                             f"*.safetensors)")
        return o, {"model": model, "decoder": resolve_weights(o.decoder, what="Scale-RAE SigLIP-2 decoder")}

    def load(self, spec: ModelSpec, device: torch.device) -> None:
        from safetensors import safe_open
        from transformers import AutoTokenizer, Qwen2Config, Qwen2ForCausalLM
        o, self.files = self._files(spec)
        root = self.files["model"]
        shards = sorted(root.glob("*.safetensors"))
        if not shards:
            raise ValueError(f"Scale-RAE: no *.safetensors files in {root}")
        extra: dict[str, torch.Tensor] = {}
        for f in shards:
            with safe_open(str(f), framework="pt") as fh:
                for k in fh.keys():
                    if k.startswith(("diff_head.", "diff_head_projector.")) or k == "model.latent_queries":
                        extra[k] = fh.get_tensor(k)
        if "model.latent_queries" not in extra:
            raise ValueError(f"Scale-RAE: {root} has no 'model.latent_queries' tensor (not a query-mode checkpoint)")
        cfg = json.loads((root / "config.json").read_text())
        head_cfg = HeadConfig(**o.head_arch) if o.head_arch else head_config(cfg)
        if cfg.get("diffusion_norm_stats_path") and "diff_head.data_mean" not in extra:
            raise ValueError(f"Scale-RAE: {root / 'config.json'} names diffusion_norm_stats_path but the checkpoint "
                             f"has no diff_head.data_mean / data_std")
        head = ScaleRAEHead(head_cfg)
        load_strict(head, {k.removeprefix("diff_head.model."): v for k, v in extra.items()
                           if k.startswith("diff_head.model.")}, f"Scale-RAE diff_head.model in {root}")
        proj = nn.Linear(cfg["hidden_size"], head_cfg.z_channels)
        load_strict(proj, {k.removeprefix("diff_head_projector."): v for k, v in extra.items()
                           if k.startswith("diff_head_projector.")}, f"Scale-RAE diff_head_projector in {root}")
        llm = Qwen2ForCausalLM.from_pretrained(str(root), config=Qwen2Config.from_pretrained(str(root)),
                                               torch_dtype=DTYPES[o.dtype])
        decoder = RAEDecoder(DecoderConfig(**o.decoder_arch) if o.decoder_arch else SIGLIP2_DECODER_XL)
        # the reference loads the decoder non-strictly: extra entries are ignored, missing ones are not
        path = self.files["decoder"]
        load_strict(decoder, read_checkpoint(path, "Scale-RAE decoder"), f"Scale-RAE decoder {path}", allow_extra=True)
        tok = resolve_weights(o.tokenizer, what="Scale-RAE tokenizer") if o.tokenizer is not None else root
        self.build(llm, AutoTokenizer.from_pretrained(str(tok)), extra["model.latent_queries"], proj, head, decoder,
                   device, DTYPES[o.dtype], extra.get("diff_head.data_mean"), extra.get("diff_head.data_std"),
                   o.cfg_interval, o.prompt, o.max_new_tokens, self.class_names,
                   cfg.get("diffusion_base_dim") or BASE_DIM)

    def requirements(self, spec: ModelSpec) -> list:
        """The model folder (LLM, head, tokenizer), the SigLIP-2 decoder, an explicit tokenizer, and transformers."""
        from bench.preflight import package, weights
        o = self.parse_options(spec.options)
        out = [weights(spec.weights or WEIGHTS, "Scale-RAE model folder"), weights(o.decoder, "SigLIP-2 decoder")]
        if o.tokenizer is not None:
            out.append(weights(o.tokenizer, "Scale-RAE tokenizer"))
        return out + [package("transformers", "transformers (the Qwen2.5 LLM)", "hf")]

    def weights_id(self, spec: ModelSpec) -> str:
        _, files = self._files(spec)
        h = hashlib.sha256(b"scale-rae/1")
        for f in sorted(files["model"].iterdir()):
            if f.is_file():
                h.update(f"{f.name}={sha256_path(f)};".encode())
        h.update(f"decoder={sha256_path(files['decoder'])};".encode())
        return "sha256:" + h.hexdigest()

    def networks(self) -> list[nn.Module]:
        if self.head is None:
            raise RuntimeError("Scale-RAE: call load() before generating")
        return [self.head]

    # ------------------------------------------------------------------ LLM pass
    @torch.inference_mode()
    def condition(self, label: int) -> torch.Tensor:
        """(256, z_channels) head condition for one class (greedy decoding, cached per class)."""
        if label in self._cond:
            return self._cond[label]
        if self.class_names is None:
            raise RuntimeError("Scale-RAE: no class names (the runner binds the dataset before generating)")
        if not 0 <= label < len(self.class_names):
            raise ValueError(f"Scale-RAE: label {label} outside 0..{len(self.class_names) - 1}")
        ids = self.tokenizer(chat_prompt(self.class_names[label], self.prompt)).input_ids
        embed = self.llm.get_input_embeddings()
        x = embed(torch.tensor([ids], device=self.device))
        for _ in range(self.max_new_tokens + 1):
            self.llm_forwards += 1
            out = self.llm.model(inputs_embeds=x, use_cache=False)
            tok = int(self.llm.lm_head(out.last_hidden_state[:, -1]).float().argmax(-1))
            x = torch.cat([x, embed(torch.tensor([[tok]], device=self.device))], dim=1)
            if tok == self.ids[IMAGE_START]:
                x = torch.cat([x, self.latent_queries[None]], dim=1)
                self.llm_forwards += 1
                hidden = self.llm.model(inputs_embeds=x, use_cache=False).last_hidden_state
                z = self.projector(hidden[0, -self.latent_queries.shape[0]:])
                self._cond[label] = z
                return z
            if tok == self.ids[EOS]:
                break
        raise RuntimeError(f"Scale-RAE: the language model gave no {IMAGE_START} token for class {label} "
                           f"({self.class_names[label]!r}) within {self.max_new_tokens} new tokens")

    # ------------------------------------------------------------------ sampling
    @property
    def shift(self) -> float:
        c = self.head.cfg
        return math.sqrt(c.in_channels * c.input_size ** 2 / self.base_dim)

    def _check(self, s: SamplerSettings) -> None:
        check_settings("Scale-RAE", s, self.solvers, min_steps=2)

    def nfe_per_image(self, s: SamplerSettings) -> int:
        self._check(s)
        return (int(s.steps) - 1) * (2 if float(s.cfg) > 1.0 else 1)

    def _velocity(self, x: torch.Tensor, t: torch.Tensor, z: torch.Tensor, g: float) -> torch.Tensor:
        if g <= 1.0:
            return self.head(x, t, z)
        out = self.head(torch.cat([x, x]), torch.cat([t, t]), torch.cat([z, self.head.y_embedder.null_like(z)]))
        cond, uncond = out.chunk(2)
        lo, hi = self.cfg_interval
        if lo < float(t[0]) < hi:
            return cond
        return uncond + g * (cond - uncond)

    def sample_tokens(self, labels: torch.Tensor, sample_ids: torch.Tensor, s: SamplerSettings) -> torch.Tensor:
        """(B, 256, 1152) SigLIP-2 tokens (de-normalised), in ``dtype``."""
        self._check(s)
        if self.head is None:
            raise RuntimeError("Scale-RAE: call load() before generating")
        y = torch.as_tensor(labels).reshape(-1).tolist()
        ids = torch.as_tensor(sample_ids).reshape(-1).cpu()
        if len(y) != len(ids):
            raise ValueError(f"Scale-RAE: {len(y)} labels but {len(ids)} sample ids")
        c = self.head.cfg
        if not y:
            return torch.empty((0, c.input_size ** 2, c.in_channels), device=self.device, dtype=self.dtype)
        z = torch.stack([self.condition(int(k)) for k in y])
        x = noise.gaussian(s.seed, ids, (c.in_channels, c.input_size, c.input_size), stream=INIT_STREAM,
                           device=self.device, dtype=self.dtype)
        g = float(s.cfg)
        for t_curr, t_next in step_pairs(int(s.steps), self.shift):
            tc = torch.tensor(t_curr).to(self.device).repeat(len(x)).to(x.dtype)
            tn = torch.tensor(t_next).to(self.device).repeat(len(x)).to(x.dtype)
            x = x + (tn - tc).view(-1, 1, 1, 1) * self._velocity(x, tc, z, g)
        tokens = x.permute(0, 2, 3, 1).reshape(len(x), -1, c.in_channels)
        if self.data_mean is not None:
            tokens = tokens * self.data_std + self.data_mean
        return tokens

    @torch.inference_mode()
    def decode(self, tokens: torch.Tensor) -> torch.Tensor:
        """(B, 256, 1152) tokens -> uint8 NHWC, quantised as the reference does (clip to [0, 1], * 255, truncate)."""
        mean = torch.tensor(SIGLIP_MEAN, device=self.device).view(1, 3, 1, 1)
        std = torch.tensor(SIGLIP_STD, device=self.device).view(1, 3, 1, 1)
        img = self.decoder(tokens.float()) * std + mean
        return (img.clamp(0, 1) * 255).to(torch.uint8).permute(0, 2, 3, 1).contiguous().cpu()

    def generate(self, labels: torch.Tensor, sample_ids: torch.Tensor, s: SamplerSettings) -> torch.Tensor:
        with torch.inference_mode():
            return self.decode(self.sample_tokens(labels, sample_ids, s))

    def describe(self) -> dict[str, Any]:
        return {"guidance": self.guidance, "cfg_interval": list(self.cfg_interval), "time_shift": self.shift,
                "prompt": self.prompt, "dtype": str(self.dtype).removeprefix("torch."),
                "llm_forwards": self.llm_forwards}
