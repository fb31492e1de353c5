"""Tiny random-init diffusers pipelines of the CLIP/T5-conditioned families, for tests and demos.

Each builder makes a pipeline from configs, as diffusers' own fast tests do in
``get_dummy_components`` (the denoiser, VAE and text-encoder configs are copied from there, with
the changes noted at each), and saves it with ``save_pretrained``: a folder that
``<Pipeline>.from_pretrained(folder, local_files_only=True)`` loads back, tokenizers included. The
tokenizers are built offline (:mod:`app.adapters.diffusers.tiny.tokenizers`; HunyuanDiT's BERT
tokenizer is the shipped bert-base-chinese vocabulary), and the weights depend only on the seed.

A folder is a few hundred kilobytes to a few megabytes, builds in about a second on a CPU, and
generates at :data:`NATIVE_SIZE` pixels in a fraction of a second per step. Its images are noise.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import diffusers as _diffusers
import torch
import transformers as _transformers

from app.adapters.diffusers.demo import bert_chinese_tokenizer
from app.adapters.diffusers.generator import quiet_libraries
from app.adapters.diffusers.tiny.tokenizers import clip_tokenizer, gemma_tokenizer, t5_tokenizer
from app.adapters.storage.folders import building

# Both libraries are untyped for a strict mypy (lazy modules, decorated constructors).
diffusers: Any = _diffusers
transformers: Any = _transformers

CLIP_MAX_TOKENS = 77
BERT_MAX_TOKENS = 77  # HunyuanDiTPipeline pads BERT prompts to 77 tokens whatever the tokenizer says

# The pixel size each tiny model is made for (its denoiser's sample size times the VAE's downscaling,
# which is also the pipeline's default size, except FLUX's fixed 128): what tests and demos should
# ask for. Other sizes must pass the pipelines' own checks:
# multiples of 8 for SDXL, PixArt-Sigma and HunyuanDiT (which also needs 16 for its rotary grid),
# of 32 for Sana, of 2 for FLUX (2x2-packed latents) and of 1 for SD3 (VAE factor and patch both 1).
NATIVE_SIZE: dict[str, int] = {
    "sdxl": 64,
    "sdxl-refiner": 64,
    "instruct-pix2pix": 64,
    "sd3": 32,
    "flux": 32,
    "pixart-sigma": 32,
    "sana": 32,
    "hunyuandit": 32,
}


# --- text encoders -------------------------------------------------------------------------------


def _clip_config(tokenizer: Any) -> Any:
    # diffusers' dummy CLIP text config; the vocabulary and special ids are the tokenizer's.
    return transformers.CLIPTextConfig(
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
        hidden_size=32,
        intermediate_size=37,
        layer_norm_eps=1e-05,
        num_attention_heads=4,
        num_hidden_layers=5,
        vocab_size=len(tokenizer),
        max_position_embeddings=CLIP_MAX_TOKENS,
        hidden_act="gelu",
        projection_dim=32,
    )


def _clip(tokenizer: Any, seed: int, projection: bool) -> Any:
    torch.manual_seed(seed)
    cls = transformers.CLIPTextModelWithProjection if projection else transformers.CLIPTextModel
    return cls(_clip_config(tokenizer)).eval()


def _t5(tokenizer: Any, seed: int) -> Any:
    """A T5 encoder shaped like ``hf-internal-testing/tiny-random-t5`` (d_model 32), over ``tokenizer``.

    Its initializer factor is T5's 1.0, not that model's 0.002: the final layer norm starts at the
    factor, and T5 embeddings 500 times too small leave PixArt-Sigma (T5 alone) deaf to its prompt."""
    torch.manual_seed(seed)
    config = transformers.T5Config(
        vocab_size=len(tokenizer),
        d_model=32,
        d_kv=8,
        d_ff=37,
        num_layers=5,
        num_decoder_layers=5,
        num_heads=4,
        relative_attention_num_buckets=8,
        dropout_rate=0.1,
        layer_norm_epsilon=1e-06,
        initializer_factor=1.0,
        pad_token_id=tokenizer.pad_token_id,
        eos_token_id=tokenizer.eos_token_id,
        decoder_start_token_id=tokenizer.pad_token_id,
    )
    return transformers.T5EncoderModel(config).eval()


# --- VAEs ----------------------------------------------------------------------------------------


def _vae_kl_one_block(seed: int, latent_channels: int) -> Any:
    # SD3's and FLUX's dummy VAE: one 4-channel block, so no downscaling (VAE factor 1).
    torch.manual_seed(seed)
    return diffusers.AutoencoderKL(
        sample_size=32,
        in_channels=3,
        out_channels=3,
        block_out_channels=(4,),
        layers_per_block=1,
        latent_channels=latent_channels,
        norm_num_groups=1,
        use_quant_conv=False,
        use_post_quant_conv=False,
        shift_factor=0.0609,
        scaling_factor=1.5035,
    ).eval()


def _vae_kl(seed: int, blocks: int, sample_size: int) -> Any:
    """A 4-latent-channel AutoencoderKL with 8 channels per block and ``2 ** (blocks - 1)`` downscaling."""
    torch.manual_seed(seed)
    return diffusers.AutoencoderKL(
        sample_size=sample_size,
        in_channels=3,
        out_channels=3,
        block_out_channels=(8,) * blocks,
        down_block_types=("DownEncoderBlock2D",) * blocks,
        up_block_types=("UpDecoderBlock2D",) * blocks,
        layers_per_block=1,
        latent_channels=4,
        norm_num_groups=8,
    ).eval()


# --- SDXL ----------------------------------------------------------------------------------------


def _sdxl_unet(seed: int, refiner: bool) -> Any:
    # The refiner conditions on text_encoder_2 alone (cross-attention 32, not 32 + 32) and on an aesthetic
    # score instead of a target size (5 time ids, not 6: 5 * 8 + 32 = 72).
    torch.manual_seed(seed)
    return text_time_unet(projection=72 if refiner else 80, cross_attention=32 if refiner else 64)


def text_time_unet(projection: int, cross_attention: int) -> Any:
    """diffusers' SDXL dummy UNet (SDXL, its refiner, Kolors): size and time ids added to the time embedding
    (``text_time``), 2 and 4 channels (diffusers' refiner test uses 32/64; 2/4 keeps it tiny)."""
    return diffusers.UNet2DConditionModel(
        block_out_channels=(2, 4),
        layers_per_block=2,
        sample_size=32,
        in_channels=4,
        out_channels=4,
        down_block_types=("DownBlock2D", "CrossAttnDownBlock2D"),
        up_block_types=("CrossAttnUpBlock2D", "UpBlock2D"),
        attention_head_dim=(2, 4),
        use_linear_projection=True,
        addition_embed_type="text_time",
        addition_time_embed_dim=8,
        transformer_layers_per_block=(1, 2),
        projection_class_embeddings_input_dim=projection,
        cross_attention_dim=cross_attention,
        norm_num_groups=1,
    ).eval()


def _euler() -> Any:
    return diffusers.EulerDiscreteScheduler(
        beta_start=0.00085,
        beta_end=0.012,
        steps_offset=1,
        beta_schedule="scaled_linear",
        timestep_spacing="leading",
    )


def _sdxl_vae(seed: int) -> Any:
    # diffusers' SDXL dummy VAE: two blocks (VAE factor 2), 2.6 MB of the folder's 3.
    torch.manual_seed(seed)
    return diffusers.AutoencoderKL(
        block_out_channels=(32, 64),
        in_channels=3,
        out_channels=3,
        down_block_types=("DownEncoderBlock2D", "DownEncoderBlock2D"),
        up_block_types=("UpDecoderBlock2D", "UpDecoderBlock2D"),
        latent_channels=4,
        sample_size=128,
    ).eval()


def _build_sdxl(seed: int) -> Any:
    tokenizer = clip_tokenizer(CLIP_MAX_TOKENS)
    return diffusers.StableDiffusionXLPipeline(
        vae=_sdxl_vae(seed),
        text_encoder=_clip(tokenizer, seed, projection=False),
        text_encoder_2=_clip(tokenizer, seed + 1, projection=True),
        tokenizer=tokenizer,
        tokenizer_2=tokenizer,
        unet=_sdxl_unet(seed, refiner=False),
        scheduler=_euler(),
        image_encoder=None,
        feature_extractor=None,
    )


def _build_sdxl_refiner(seed: int) -> Any:
    tokenizer = clip_tokenizer(CLIP_MAX_TOKENS)
    return diffusers.StableDiffusionXLImg2ImgPipeline(
        vae=_sdxl_vae(seed),
        text_encoder=None,
        text_encoder_2=_clip(tokenizer, seed + 1, projection=True),
        tokenizer=None,
        tokenizer_2=tokenizer,
        unet=_sdxl_unet(seed, refiner=True),
        scheduler=_euler(),
        image_encoder=None,
        feature_extractor=None,
        requires_aesthetics_score=True,
    )


# --- InstructPix2Pix ----------------------------------------------------------------------------


def _build_instruct_pix2pix(seed: int) -> Any:
    # diffusers' InstructPix2Pix dummy components: an SD UNet whose input is the noisy latents and the encoded
    # input image side by side (8 channels), with 4 and 8 channels per block to keep it tiny.
    tokenizer = clip_tokenizer(CLIP_MAX_TOKENS)
    torch.manual_seed(seed)
    unet = diffusers.UNet2DConditionModel(
        block_out_channels=(4, 8),
        layers_per_block=2,
        sample_size=32,
        in_channels=8,
        out_channels=4,
        down_block_types=("DownBlock2D", "CrossAttnDownBlock2D"),
        up_block_types=("CrossAttnUpBlock2D", "UpBlock2D"),
        attention_head_dim=(2, 4),
        cross_attention_dim=32,
        norm_num_groups=4,
    ).eval()
    return diffusers.StableDiffusionInstructPix2PixPipeline(
        vae=_sdxl_vae(seed),
        text_encoder=_clip(tokenizer, seed, projection=False),
        tokenizer=tokenizer,
        unet=unet,
        scheduler=diffusers.EulerAncestralDiscreteScheduler(
            beta_start=0.00085, beta_end=0.012, beta_schedule="scaled_linear"
        ),
        safety_checker=None,
        feature_extractor=None,
        requires_safety_checker=False,
    )


# --- SD3 and FLUX --------------------------------------------------------------------------------


def _build_sd3(seed: int) -> Any:
    torch.manual_seed(seed)
    # diffusers' SD3 inpainting dummy transformer: patch 1 over 16-channel latents, as SD3's own
    # (StableDiffusion3InpaintPipeline refuses other widths; the text-to-image test's 4 would too).
    # The pooled projection is both CLIPs' 32-dim projections side by side; joint attention is T5's
    # width (the CLIPs' 64 are cut to it). Two blocks: the last one reads no ControlNet residual.
    transformer = diffusers.SD3Transformer2DModel(
        sample_size=32,
        patch_size=1,
        in_channels=16,
        num_layers=2,
        attention_head_dim=8,
        num_attention_heads=4,
        caption_projection_dim=32,
        joint_attention_dim=32,
        pooled_projection_dim=64,
        out_channels=16,
    ).eval()
    clip = clip_tokenizer(CLIP_MAX_TOKENS)
    t5 = t5_tokenizer()
    return diffusers.StableDiffusion3Pipeline(
        transformer=transformer,
        scheduler=diffusers.FlowMatchEulerDiscreteScheduler(),
        vae=_vae_kl_one_block(seed, latent_channels=16),
        text_encoder=_clip(clip, seed, projection=True),
        tokenizer=clip,
        text_encoder_2=_clip(clip, seed + 1, projection=True),
        tokenizer_2=clip,
        text_encoder_3=_t5(t5, seed),
        tokenizer_3=t5,
        image_encoder=None,
        feature_extractor=None,
    )


def _build_flux(seed: int) -> Any:
    torch.manual_seed(seed)
    # diffusers' FLUX dummy transformer (patch 1 over 1-channel latents packed 2x2 into 4 channels),
    # with guidance_embeds=True: FLUX.1-dev's layout, where guidance_scale is a model input.
    transformer = diffusers.FluxTransformer2DModel(
        patch_size=1,
        in_channels=4,
        num_layers=1,
        num_single_layers=1,
        attention_head_dim=16,
        num_attention_heads=2,
        joint_attention_dim=32,
        pooled_projection_dim=32,
        guidance_embeds=True,
        axes_dims_rope=(4, 4, 8),
    ).eval()
    clip = clip_tokenizer(CLIP_MAX_TOKENS)
    t5 = t5_tokenizer()
    return diffusers.FluxPipeline(
        transformer=transformer,
        scheduler=diffusers.FlowMatchEulerDiscreteScheduler(),
        vae=_vae_kl_one_block(seed, latent_channels=1),
        text_encoder=_clip(clip, seed, projection=False),
        tokenizer=clip,
        text_encoder_2=_t5(t5, seed),
        tokenizer_2=t5,
        image_encoder=None,
        feature_extractor=None,
    )


# --- PixArt-Sigma, Sana, HunyuanDiT --------------------------------------------------------------


def _build_pixart_sigma(seed: int) -> Any:
    torch.manual_seed(seed)
    # diffusers' PixArt-Sigma dummy transformer at sample size 16 (not 8); its VAE is 8 channels and
    # two blocks (factor 2) instead of the 64-channel AutoencoderKL() default (2 MB).
    transformer = diffusers.PixArtTransformer2DModel(
        sample_size=16,
        num_layers=2,
        patch_size=2,
        attention_head_dim=8,
        num_attention_heads=3,
        caption_channels=32,
        in_channels=4,
        cross_attention_dim=24,
        out_channels=8,
        attention_bias=True,
        activation_fn="gelu-approximate",
        num_embeds_ada_norm=1000,
        norm_type="ada_norm_single",
        norm_elementwise_affine=False,
        norm_eps=1e-6,
    ).eval()
    tokenizer = t5_tokenizer()
    return diffusers.PixArtSigmaPipeline(
        transformer=transformer,
        scheduler=diffusers.DDIMScheduler(),
        vae=_vae_kl(seed, blocks=2, sample_size=32),
        text_encoder=_t5(tokenizer, seed),
        tokenizer=tokenizer,
    )


def _build_sana(seed: int) -> Any:
    torch.manual_seed(seed)
    # diffusers' Sana dummy transformer at sample size 16 (not 32): with the dummy DC-AE's factor 2,
    # 32-pixel images.
    transformer = diffusers.SanaTransformer2DModel(
        patch_size=1,
        in_channels=4,
        out_channels=4,
        num_layers=1,
        num_attention_heads=2,
        attention_head_dim=4,
        num_cross_attention_heads=2,
        cross_attention_head_dim=4,
        cross_attention_dim=8,
        caption_channels=8,
        sample_size=16,
    ).eval()
    torch.manual_seed(seed)
    vae = diffusers.AutoencoderDC(
        in_channels=3,
        latent_channels=4,
        attention_head_dim=2,
        encoder_block_types=("ResBlock", "EfficientViTBlock"),
        decoder_block_types=("ResBlock", "EfficientViTBlock"),
        encoder_block_out_channels=(8, 8),
        decoder_block_out_channels=(8, 8),
        encoder_qkv_multiscales=((), (5,)),
        decoder_qkv_multiscales=((), (5,)),
        encoder_layers_per_block=(1, 1),
        decoder_layers_per_block=(1, 1),
        downsample_block_type="conv",
        upsample_block_type="interpolate",
        decoder_norm_types="rms_norm",
        decoder_act_fns="silu",
        scaling_factor=0.41407,
    ).eval()
    tokenizer = gemma_tokenizer()
    torch.manual_seed(seed)
    # diffusers' dummy Gemma2 has 8 tokens (only empty prompts work); this one has the tokenizer's.
    config = transformers.Gemma2Config(
        head_dim=16,
        hidden_size=8,
        initializer_range=0.02,
        intermediate_size=64,
        max_position_embeddings=8192,
        num_attention_heads=2,
        num_hidden_layers=1,
        num_key_value_heads=2,
        vocab_size=len(tokenizer),
        pad_token_id=tokenizer.pad_token_id,
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
        attn_implementation="eager",
    )
    return diffusers.SanaPipeline(
        transformer=transformer,
        scheduler=diffusers.FlowMatchEulerDiscreteScheduler(shift=7.0),
        vae=vae,
        text_encoder=transformers.Gemma2Model(config).eval(),
        tokenizer=tokenizer,
    )


def _bert(tokenizer: Any, seed: int) -> Any:
    # Shaped like hf-internal-testing/tiny-random-BertModel but 16 wide and 2 deep: the Chinese
    # vocabulary has 21128 tokens, so the embedding table is most of the folder.
    torch.manual_seed(seed)
    config = transformers.BertConfig(
        vocab_size=len(tokenizer),
        hidden_size=16,
        num_hidden_layers=2,
        num_attention_heads=2,
        intermediate_size=37,
        max_position_embeddings=BERT_MAX_TOKENS,
        type_vocab_size=2,
        pad_token_id=tokenizer.pad_token_id,
    )
    return transformers.BertModel(config, add_pooling_layer=False).eval()


def _build_hunyuandit(seed: int) -> Any:
    torch.manual_seed(seed)
    # diffusers' HunyuanDiT dummy transformer, cross-attending to a 16-wide BERT. HunyuanDiTPipeline
    # sizes its rotary embedding for a VAE factor of 8 (height // 8 // patch), so the VAE has four
    # blocks (diffusers' test uses the factor-1 AutoencoderKL() and 16-pixel images, where the
    # single rotary position happens to broadcast).
    transformer = diffusers.HunyuanDiT2DModel(
        sample_size=4,
        num_layers=2,
        patch_size=2,
        attention_head_dim=8,
        num_attention_heads=3,
        in_channels=4,
        cross_attention_dim=16,
        cross_attention_dim_t5=32,
        pooled_projection_dim=16,
        hidden_size=24,
        activation_fn="gelu-approximate",
    ).eval()
    bert_tokenizer = bert_chinese_tokenizer(BERT_MAX_TOKENS)
    tokenizer_2 = t5_tokenizer()
    return diffusers.HunyuanDiTPipeline(
        transformer=transformer,
        scheduler=diffusers.DDPMScheduler(),
        vae=_vae_kl(seed, blocks=4, sample_size=32),
        text_encoder=_bert(bert_tokenizer, seed),
        tokenizer=bert_tokenizer,
        text_encoder_2=_t5(tokenizer_2, seed),
        tokenizer_2=tokenizer_2,
        safety_checker=None,
        feature_extractor=None,
        requires_safety_checker=False,
    )


# --- builders ------------------------------------------------------------------------------------


def _saver(make: Callable[[int], Any]) -> Callable[..., str]:
    def build(out_dir: str, seed: int = 0, replace: bool = False) -> str:
        """Write the tiny pipeline for ``seed`` to ``out_dir`` and return ``out_dir``.

        The folder appears complete or not at all. Raises ``FileExistsError`` when ``out_dir``
        exists and is not empty, unless ``replace`` is set."""
        quiet_libraries()
        target = Path(out_dir).resolve()
        if not replace and target.exists() and (not target.is_dir() or any(target.iterdir())):
            raise FileExistsError(f"{target} already exists and is not an empty folder.")
        with building(target) as tmp:
            make(seed).save_pretrained(tmp)
        return out_dir

    build.__name__ = build.__qualname__ = f"build_{make.__name__.removeprefix('_build_')}"
    return build


build_sdxl = _saver(_build_sdxl)
build_sdxl_refiner = _saver(_build_sdxl_refiner)
build_sd3 = _saver(_build_sd3)
build_instruct_pix2pix = _saver(_build_instruct_pix2pix)
build_flux = _saver(_build_flux)
build_pixart_sigma = _saver(_build_pixart_sigma)
build_sana = _saver(_build_sana)
build_hunyuandit = _saver(_build_hunyuandit)

BUILDERS: dict[str, Callable[[str, int], str]] = {
    "sdxl": build_sdxl,
    "sdxl-refiner": build_sdxl_refiner,
    "sd3": build_sd3,
    "instruct-pix2pix": build_instruct_pix2pix,
    "flux": build_flux,
    "pixart-sigma": build_pixart_sigma,
    "sana": build_sana,
    "hunyuandit": build_hunyuandit,
}
