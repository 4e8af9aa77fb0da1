"""Tiny random diffusers pipelines built in code for the adapter tests (tokenizers too, offline): each builder
makes its components from fixed seeds, saves the pipeline with save_pretrained to ``folder`` and returns it.

Component sizes follow the shapes of diffusers' own fast tests (huggingface/diffusers, tests/pipelines/
stable_diffusion_xl/test_stable_diffusion_xl.py, sana/test_sana_sprint.py, dit/test_dit.py,
consistency_models/test_consistency_models.py), shrunk to 16-32 px and 1-2 layers; the hub tokenizers those tests
download are replaced by the byte-level CLIP, letter-level T5 and Gemma tokenizers built here.

Invariant: the same builder call writes the same weights (every random init follows a torch.manual_seed), so two
folders built with different seeds differ and the direct-call references in the tests are reproducible.
Imported only after ``pytest.importorskip("diffusers")``.
"""

from __future__ import annotations

from pathlib import Path

import diffusers
import torch
import transformers

LORA_TARGETS = ["to_q", "to_k", "to_v", "to_out.0"]      # the UNet attention projections diffusers' LoRAs touch


# ---------------------------------------------------------------------------------------------------- text parts
def clip_tokenizer():
    """A byte-level CLIP BPE tokenizer with no merges: every byte is a token (vocab 514), built offline."""
    from tokenizers.pre_tokenizers import ByteLevel
    chars = sorted(ByteLevel.alphabet())
    vocab = {"<|startoftext|>": 0, "<|endoftext|>": 1}
    for c in chars:
        vocab.setdefault(c, len(vocab))
    for c in chars:
        vocab.setdefault(c + "</w>", len(vocab))
    return transformers.CLIPTokenizer(vocab=vocab, merges=[], model_max_length=77)


def t5_tokenizer():
    """A T5 Unigram tokenizer over letters, digits and '_' (vocab 78), built offline."""
    chars = "abcdefghijklmnopqrstuvwxyz0123456789_"
    vocab = [("<pad>", 0.0), ("</s>", 0.0), ("<unk>", 0.0), ("\u2581", -2.0)]
    vocab += [(c, -3.0) for c in chars] + [("\u2581" + c, -3.5) for c in chars]
    return transformers.T5Tokenizer(vocab=vocab, extra_ids=0)


def gemma_tokenizer():
    """A Gemma BPE tokenizer with no merges over '▁' and lowercase letters (vocab 32; anything else is <unk>)."""
    vocab = {"<pad>": 0, "<eos>": 1, "<bos>": 2, "<unk>": 3, "<mask>": 4, "\u2581": 5}
    for c in "abcdefghijklmnopqrstuvwxyz":
        vocab[c] = len(vocab)
    return transformers.GemmaTokenizer(vocab=vocab, merges=[])


def clip_encoder(cls, seed):
    torch.manual_seed(seed)
    cfg = transformers.CLIPTextConfig(bos_token_id=0, eos_token_id=1, pad_token_id=1, hidden_size=32,
                                      intermediate_size=37, num_attention_heads=4, num_hidden_layers=2,
                                      vocab_size=600, projection_dim=32, max_position_embeddings=77)
    return cls(cfg).eval()


def t5_encoder(d_model, seed=3):
    torch.manual_seed(seed)
    cfg = transformers.T5Config(vocab_size=80, d_model=d_model, d_kv=8, d_ff=37, num_layers=1, num_heads=4,
                                relative_attention_num_buckets=8, decoder_start_token_id=0)
    return transformers.T5EncoderModel(cfg).eval()


def gemma_encoder(seed=5):
    torch.manual_seed(seed)
    cfg = transformers.Gemma2Config(head_dim=16, hidden_size=8, intermediate_size=16, max_position_embeddings=64,
                                    num_attention_heads=2, num_hidden_layers=1, num_key_value_heads=2, vocab_size=40,
                                    attn_implementation="eager")
    return transformers.Gemma2Model(cfg).eval()


def tiny_vae(latent_channels):
    """One-block AutoencoderKL: no downsampling (vae_scale_factor 1), so the image is the latent's size."""
    torch.manual_seed(4)
    return diffusers.AutoencoderKL(sample_size=32, in_channels=3, out_channels=3, block_out_channels=(4,),
                                   layers_per_block=1, latent_channels=latent_channels, norm_num_groups=1,
                                   use_quant_conv=False, use_post_quant_conv=False, shift_factor=0.0609,
                                   scaling_factor=1.5035)


# ---------------------------------------------------------------------------------------------------- SD3 / FLUX
def build_sd3(folder):
    """SD3: two CLIP-with-projection encoders + T5, MMDiT, FlowMatch Euler; native 32 px."""
    torch.manual_seed(0)
    transformer = diffusers.SD3Transformer2DModel(
        sample_size=32, patch_size=2, in_channels=4, num_layers=1, attention_head_dim=8, num_attention_heads=4,
        caption_projection_dim=32, joint_attention_dim=64, pooled_projection_dim=64, out_channels=4)
    pipe = diffusers.StableDiffusion3Pipeline(
        transformer=transformer, scheduler=diffusers.FlowMatchEulerDiscreteScheduler(), vae=tiny_vae(4),
        text_encoder=clip_encoder(transformers.CLIPTextModelWithProjection, 1), tokenizer=clip_tokenizer(),
        text_encoder_2=clip_encoder(transformers.CLIPTextModelWithProjection, 2), tokenizer_2=clip_tokenizer(),
        text_encoder_3=t5_encoder(64), tokenizer_3=t5_tokenizer())
    pipe.save_pretrained(folder)
    return folder


def build_flux(folder, guidance_embeds=True):
    """FLUX.1-dev-like: CLIP + T5, guidance-embedding transformer (guidance_embeds=True), 1-channel latents;
    ``guidance_embeds=False`` is FLUX.1-schnell-like (no guidance input: the pipeline ignores guidance_scale)."""
    torch.manual_seed(0)
    transformer = diffusers.FluxTransformer2DModel(
        patch_size=1, in_channels=4, num_layers=1, num_single_layers=1, attention_head_dim=16, num_attention_heads=2,
        joint_attention_dim=32, pooled_projection_dim=32, axes_dims_rope=[4, 4, 8], guidance_embeds=guidance_embeds)
    pipe = diffusers.FluxPipeline(
        transformer=transformer, scheduler=diffusers.FlowMatchEulerDiscreteScheduler(), vae=tiny_vae(1),
        text_encoder=clip_encoder(transformers.CLIPTextModel, 1), tokenizer=clip_tokenizer(),
        text_encoder_2=t5_encoder(32), tokenizer_2=t5_tokenizer())
    pipe.save_pretrained(folder)
    return folder


def build_pixart(folder):
    """PixArt-Sigma: T5 + DiT with learned sigma (8 output channels), DPM-Solver++; no preset names it."""
    torch.manual_seed(0)
    transformer = diffusers.PixArtTransformer2DModel(
        sample_size=8, num_layers=1, patch_size=2, attention_head_dim=8, num_attention_heads=3, caption_channels=32,
        in_channels=4, cross_attention_dim=24, out_channels=8, attention_bias=True, activation_fn="gelu-approximate",
        num_embeds_ada_norm=1000, norm_type="ada_norm_single", norm_elementwise_affine=False, norm_eps=1e-6)
    pipe = diffusers.PixArtSigmaPipeline(
        tokenizer=t5_tokenizer(), text_encoder=t5_encoder(32), vae=tiny_vae(4), transformer=transformer,
        scheduler=diffusers.DPMSolverMultistepScheduler())
    pipe.save_pretrained(folder)
    return folder


# ---------------------------------------------------------------------------------------------------- SDXL family
def sdxl_unet(seed=0, time_cond_proj_dim=None):
    """An SDXL-shaped UNet at 16 px: text_time added embedding (6 x 8 time ids + 32 pooled = 80), cross-attention
    over the two CLIP encoders' 32 + 32 hidden sizes; ``time_cond_proj_dim`` makes it LCM-style (a guidance
    embedding input instead of CFG)."""
    torch.manual_seed(seed)
    return diffusers.UNet2DConditionModel(
        sample_size=16, in_channels=4, out_channels=4, block_out_channels=(4, 8), layers_per_block=1,
        down_block_types=("DownBlock2D", "CrossAttnDownBlock2D"), up_block_types=("CrossAttnUpBlock2D", "UpBlock2D"),
        attention_head_dim=(2, 4), use_linear_projection=True, addition_embed_type="text_time",
        addition_time_embed_dim=8, transformer_layers_per_block=(1, 1), projection_class_embeddings_input_dim=80,
        cross_attention_dim=64, norm_num_groups=1, time_cond_proj_dim=time_cond_proj_dim).eval()


def euler_scheduler():
    """SDXL's Euler configuration (scaled-linear betas, leading spacing, offset 1)."""
    return diffusers.EulerDiscreteScheduler(beta_start=0.00085, beta_end=0.012, beta_schedule="scaled_linear",
                                            timestep_spacing="leading", steps_offset=1)


def build_sdxl(folder, time_cond_proj_dim=None, scheduler=None):
    """SDXL: CLIP + CLIP-with-projection, the UNet above, Euler; native 16 px. With ``time_cond_proj_dim`` and an
    LCMScheduler it is the LCM-SDXL layout (latent-consistency-distilled UNet)."""
    pipe = diffusers.StableDiffusionXLPipeline(
        unet=sdxl_unet(0, time_cond_proj_dim), scheduler=scheduler or euler_scheduler(), vae=tiny_vae(4),
        text_encoder=clip_encoder(transformers.CLIPTextModel, 1), tokenizer=clip_tokenizer(),
        text_encoder_2=clip_encoder(transformers.CLIPTextModelWithProjection, 2), tokenizer_2=clip_tokenizer())
    pipe.save_pretrained(folder)
    return folder


def build_lcm_sdxl(folder):
    return build_sdxl(folder, time_cond_proj_dim=8, scheduler=diffusers.LCMScheduler.from_config(
        euler_scheduler().config))


def build_sdxl_lora(folder, base, seed, weight_name=None):
    """A random rank-4 LoRA on the base pipeline's UNet attention projections (peft LoraConfig with
    init_lora_weights=False, so B is not zero and the LoRA changes the output), saved with
    StableDiffusionXLPipeline.save_lora_weights into ``folder``; returns the path of the .safetensors file."""
    from peft import LoraConfig
    from peft.utils import get_peft_model_state_dict

    unet = diffusers.UNet2DConditionModel.from_pretrained(Path(base) / "unet")
    torch.manual_seed(seed)
    unet.add_adapter(LoraConfig(r=4, lora_alpha=4, target_modules=LORA_TARGETS, init_lora_weights=False))
    name = weight_name or "pytorch_lora_weights.safetensors"
    diffusers.StableDiffusionXLPipeline.save_lora_weights(folder, unet_lora_layers=get_peft_model_state_dict(unet),
                                                          weight_name=name)
    return Path(folder) / name


def save_unet_folder(folder, seed):
    """A differently seeded SDXL UNet as a diffusers model folder (config.json + safetensors)."""
    sdxl_unet(seed).save_pretrained(folder)
    return folder


def save_unet_file(path, seed):
    """A differently seeded SDXL UNet as one bare .safetensors state dict (no config next to it)."""
    from safetensors.torch import save_file
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    save_file(sdxl_unet(seed).state_dict(), str(path))
    return path


# ---------------------------------------------------------------------------------------------------- SANA-Sprint
def build_sana_sprint(folder):
    """SANA-Sprint: Gemma-2 encoder, linear-attention DiT with an embedded guidance input, DC-AE (2x), SCM
    (trigflow) scheduler; run at 32 px with resolution binning and the long system prompt off (call_kwargs)."""
    torch.manual_seed(0)
    transformer = diffusers.SanaTransformer2DModel(
        patch_size=1, in_channels=4, out_channels=4, num_layers=1, num_attention_heads=2, attention_head_dim=4,
        num_cross_attention_heads=2, cross_attention_head_dim=4, cross_attention_dim=8, caption_channels=8,
        sample_size=32, qk_norm="rms_norm_across_heads", guidance_embeds=True)
    torch.manual_seed(0)
    vae = diffusers.AutoencoderDC(
        in_channels=3, latent_channels=4, attention_head_dim=2, encoder_block_types=("ResBlock", "EfficientViTBlock"),
        decoder_block_types=("ResBlock", "EfficientViTBlock"), encoder_block_out_channels=(8, 8),
        decoder_block_out_channels=(8, 8), encoder_qkv_multiscales=((), (5,)), decoder_qkv_multiscales=((), (5,)),
        encoder_layers_per_block=(1, 1), decoder_layers_per_block=[1, 1], downsample_block_type="conv",
        upsample_block_type="interpolate", decoder_norm_types="rms_norm", decoder_act_fns="silu",
        scaling_factor=0.41407)
    pipe = diffusers.SanaSprintPipeline(tokenizer=gemma_tokenizer(), text_encoder=gemma_encoder(), vae=vae,
                                        transformer=transformer, scheduler=diffusers.SCMScheduler())
    pipe.save_pretrained(folder)
    return folder


# ---------------------------------------------------------------------------------------------------- class-conditional
def build_dit(folder):
    """DiT: class-conditional transformer (1000 classes + the null class 1000 the pipeline uses for CFG; learned
    sigma, 8 output channels), DDIM, the one-block VAE; native 16 px."""
    torch.manual_seed(0)
    transformer = diffusers.DiTTransformer2DModel(
        sample_size=16, num_layers=1, patch_size=4, attention_head_dim=8, num_attention_heads=2, in_channels=4,
        out_channels=8, attention_bias=True, activation_fn="gelu-approximate", num_embeds_ada_norm=1000,
        norm_type="ada_norm_zero", norm_elementwise_affine=False)
    pipe = diffusers.DiTPipeline(transformer=transformer.eval(), vae=tiny_vae(4), scheduler=diffusers.DDIMScheduler())
    pipe.save_pretrained(folder)
    return folder


CM_CLASSES = 10          # the mini datasets' class count: their labels 0..9 are all in range


def build_cm(folder, num_classes=CM_CLASSES):
    """Consistency model: class-conditional pixel-space UNet2DModel (``num_class_embeds`` classes), the
    multistep CM sampler over 40 Karras sigmas (explicit timestep lists index them, e.g. [22, 0]); native 16 px."""
    torch.manual_seed(0)
    unet = diffusers.UNet2DModel(
        sample_size=16, in_channels=3, out_channels=3, block_out_channels=(8, 16), layers_per_block=1,
        down_block_types=("DownBlock2D", "DownBlock2D"), up_block_types=("UpBlock2D", "UpBlock2D"),
        norm_num_groups=4, add_attention=False, num_class_embeds=num_classes)
    scheduler = diffusers.CMStochasticIterativeScheduler(num_train_timesteps=40, sigma_min=0.002, sigma_max=80.0)
    diffusers.ConsistencyModelPipeline(unet=unet.eval(), scheduler=scheduler).save_pretrained(folder)
    return folder
