"""Tiny random-init diffusers pipelines whose text encoders are small LLMs, for tests.

Each builder assembles a pipeline from configs, as diffusers' own fast tests do in
``get_dummy_components`` (the transformer, VAE and scheduler configs are theirs), with tokenizers
trained here instead of downloaded (see :mod:`.llm_tokenizers`), and saves it with
``save_pretrained``; the folder loads back with ``<Pipeline>.from_pretrained(folder)``.

Families: Qwen-Image (Qwen2.5-VL text encoder), Qwen-Image-Edit (the same plus a Qwen2-VL
processor), Z-Image (Qwen3), CogView4 (GLM) and Kolors (ChatGLM3, needs ``sentencepiece``).
Weights depend only on the seed; a folder takes 1.5 to 3 MB and builds in well under a second (after imports).
"""

from __future__ import annotations

import importlib
import json
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import diffusers as _diffusers
import torch
import transformers as _transformers

from app.adapters.diffusers.generator import quiet_libraries
from app.adapters.diffusers.tiny import llm_tokenizers
from app.adapters.diffusers.tiny.clip_t5 import text_time_unet
from app.adapters.storage.folders import building

# Both libraries are untyped for a strict mypy (lazy modules, decorated constructors).
diffusers: Any = _diffusers
transformers: Any = _transformers

# The pixel size each tiny model is made for: what tests and demos should ask for. It is the pipeline's
# default size for CogView4 and Kolors; Qwen-Image's and Z-Image's defaults are the real models' 1024 px
# (fixed in the pipelines), so pass height and width. Other sizes must be multiples of 16 (Qwen-Image:
# VAE factor 8 × 2x2 packing; CogView4: its own check), of 4 (Z-Image) or of 8 (Kolors).
NATIVE_SIZE: dict[str, int] = {
    "qwen-image": 64,
    "qwen-image-edit": 64,
    "z-image": 64,
    "cogview4": 64,
    "kolors": 64,
}


def _seeded(seed: int, build: Callable[[], Any]) -> Any:
    torch.manual_seed(seed)
    return build()


def _vocab_size(tokenizer: Any) -> int:
    # ChatGLM's len() undercounts: its bos, eos and pad ids all map to the same empty token.
    return max(len(tokenizer), int(tokenizer.vocab_size))


# ---------------------------------------------------------------- Qwen-Image and Qwen-Image-Edit


def _qwen_image_transformer() -> Any:
    return diffusers.QwenImageTransformer2DModel(
        patch_size=2,
        in_channels=16,
        out_channels=4,
        num_layers=2,
        attention_head_dim=16,
        num_attention_heads=3,
        joint_attention_dim=16,
        guidance_embeds=False,
        axes_dims_rope=(8, 4, 4),
    )


def _qwen_image_vae() -> Any:
    # diffusers' test VAE (base_dim 24, two downsamples) is 16 MB and encodes Qwen-Image-Edit's
    # 1-megapixel input in a minute on a CPU (its mid-block attention spans 65k positions); this one
    # downsamples 8× like the real VAE (so sizes snap to multiples of 16 as there) and has 160k weights.
    z_dim = 4
    return diffusers.AutoencoderKLQwenImage(
        base_dim=4,
        z_dim=z_dim,
        dim_mult=[1, 2, 4, 4],
        num_res_blocks=1,
        temperal_downsample=[False, True, True],
        latents_mean=[0.0] * z_dim,
        latents_std=[1.0] * z_dim,
    )


def _qwen_vl_text_encoder(tokenizer: Any) -> Any:
    ids = tokenizer.convert_tokens_to_ids
    config = transformers.Qwen2_5_VLConfig(
        text_config={
            "hidden_size": 16,
            "intermediate_size": 16,
            "num_hidden_layers": 2,
            "num_attention_heads": 2,
            "num_key_value_heads": 2,
            "rope_scaling": {"mrope_section": [1, 1, 2], "rope_type": "default", "type": "default"},
            "rope_theta": 1000000.0,
            "vocab_size": _vocab_size(tokenizer),
            "bos_token_id": ids(llm_tokenizers.ENDOFTEXT),
            "eos_token_id": ids(llm_tokenizers.IM_END),
            "pad_token_id": tokenizer.pad_token_id,
        },
        vision_config={"depth": 2, "hidden_size": 16, "intermediate_size": 16, "num_heads": 2, "out_hidden_size": 16},
        image_token_id=ids(llm_tokenizers.IMAGE_PAD),
        video_token_id=ids("<|video_pad|>"),
        vision_start_token_id=ids(llm_tokenizers.VISION_START),
        vision_end_token_id=ids(llm_tokenizers.VISION_END),
        tie_word_embeddings=True,
    )
    return transformers.Qwen2_5_VLForConditionalGeneration(config).eval()


def _qwen_image_components(seed: int) -> dict[str, Any]:
    tokenizer = llm_tokenizers.qwen_tokenizer()
    return {
        "transformer": _seeded(seed, _qwen_image_transformer).eval(),
        "vae": _seeded(seed, _qwen_image_vae).eval(),
        "scheduler": diffusers.FlowMatchEulerDiscreteScheduler(),
        "text_encoder": _seeded(seed, lambda: _qwen_vl_text_encoder(tokenizer)),
        "tokenizer": tokenizer,
    }


def build_qwen_image(out_dir: str, seed: int = 0) -> str:
    """A tiny ``QwenImagePipeline`` (Qwen2.5-VL text encoder, 16-dim hidden states) in ``out_dir``."""
    return _save(diffusers.QwenImagePipeline(**_qwen_image_components(seed)), out_dir)


def build_qwen_image_edit(out_dir: str, seed: int = 0) -> str:
    """A tiny ``QwenImageEditPipeline``: Qwen-Image's components plus an image-only Qwen2-VL processor.

    The processor caps the vision tower's input at 56 × 56 px (4 image tokens). The pipeline itself
    still resizes the input image to about 1 megapixel for the VAE (``calculate_dimensions(1024 * 1024,
    …)`` in its module): seconds per call on a CPU. The processor is an
    ``ImageOnlyQwen2VLProcessor`` (transformers' own needs torchvision); ``model_index.json`` names
    ``Qwen2VLProcessor`` as a real checkpoint does, and the generator loads it image-only."""
    components = _qwen_image_components(seed)
    components["processor"] = llm_tokenizers.qwen_vl_processor(components["tokenizer"])
    return _save(diffusers.QwenImageEditPipeline(**components), out_dir)


# ---------------------------------------------------------------- Z-Image


def _z_image_transformer() -> Any:
    model = diffusers.ZImageTransformer2DModel(
        all_patch_size=(2,),
        all_f_patch_size=(1,),
        in_channels=16,
        dim=32,
        n_layers=2,
        n_refiner_layers=1,
        n_heads=2,
        n_kv_heads=2,
        norm_eps=1e-5,
        qk_norm=True,
        cap_feat_dim=16,
        rope_theta=256.0,
        t_scale=1000.0,
        axes_dims=[8, 4, 4],
        # diffusers' test has [256, 32, 32]: captions over ~250 tokens (the pipeline pads to 512) and images
        # over 128 px index past these RoPE tables. These are the real model's lengths (no weights).
        axes_lens=[1536, 512, 512],
    )
    # The padding embeddings (filling captions and images up to multiples of 32 positions) are zeros in
    # diffusers 0.42 but torch.empty in earlier releases: uninitialised memory, NaN in the images at times.
    with torch.no_grad():
        model.x_pad_token.zero_()
        model.cap_pad_token.zero_()
    return model


def _z_image_vae() -> Any:
    return diffusers.AutoencoderKL(
        in_channels=3,
        out_channels=3,
        down_block_types=["DownEncoderBlock2D", "DownEncoderBlock2D"],
        up_block_types=["UpDecoderBlock2D", "UpDecoderBlock2D"],
        block_out_channels=[16, 32],  # diffusers' test has [32, 64]: 2.7 MB, over the 4 MB folder budget
        layers_per_block=1,
        latent_channels=16,
        norm_num_groups=16,
        sample_size=32,
        scaling_factor=0.3611,
        shift_factor=0.1159,
    )


def _qwen3_text_encoder(tokenizer: Any) -> Any:
    config = transformers.Qwen3Config(
        hidden_size=16,
        intermediate_size=16,
        num_hidden_layers=2,
        num_attention_heads=2,
        num_key_value_heads=2,
        vocab_size=_vocab_size(tokenizer),
        max_position_embeddings=512,
        bos_token_id=tokenizer.convert_tokens_to_ids(llm_tokenizers.ENDOFTEXT),
        eos_token_id=tokenizer.convert_tokens_to_ids(llm_tokenizers.IM_END),
        pad_token_id=tokenizer.pad_token_id,
    )
    return transformers.Qwen3Model(config).eval()


def build_z_image(out_dir: str, seed: int = 0) -> str:
    """A tiny ``ZImagePipeline`` (Qwen3 text encoder, 16-dim hidden states) in ``out_dir``."""
    tokenizer = llm_tokenizers.qwen_tokenizer()
    pipe = diffusers.ZImagePipeline(
        transformer=_seeded(seed, _z_image_transformer).eval(),
        vae=_seeded(seed, _z_image_vae).eval(),
        scheduler=diffusers.FlowMatchEulerDiscreteScheduler(),
        text_encoder=_seeded(seed, lambda: _qwen3_text_encoder(tokenizer)),
        tokenizer=tokenizer,
    )
    return _save(pipe, out_dir)


# ---------------------------------------------------------------- CogView4


def _cogview4_transformer() -> Any:
    return diffusers.CogView4Transformer2DModel(
        patch_size=2,
        in_channels=4,
        num_layers=2,
        attention_head_dim=4,
        num_attention_heads=4,
        out_channels=4,
        text_embed_dim=32,
        time_embed_dim=8,
        condition_dim=4,
        sample_size=NATIVE_SIZE["cogview4"] // 2,  # the pipeline's default size is sample_size × VAE factor 2
    )


def _small_vae(sample_size: int) -> Any:
    return diffusers.AutoencoderKL(
        block_out_channels=[32, 64],
        in_channels=3,
        out_channels=3,
        down_block_types=["DownEncoderBlock2D", "DownEncoderBlock2D"],
        up_block_types=["UpDecoderBlock2D", "UpDecoderBlock2D"],
        latent_channels=4,
        sample_size=sample_size,
    )


def _glm_text_encoder(tokenizer: Any) -> Any:
    config = transformers.GlmConfig(
        hidden_size=32,
        intermediate_size=8,
        num_hidden_layers=2,
        num_attention_heads=4,
        head_dim=8,
        vocab_size=_vocab_size(tokenizer),
        pad_token_id=tokenizer.pad_token_id,
        eos_token_id=tokenizer.eos_token_id,
        bos_token_id=None,
    )
    return transformers.GlmModel(config).eval()


def build_cogview4(out_dir: str, seed: int = 0) -> str:
    """A tiny ``CogView4Pipeline`` (GLM text encoder, 32-dim hidden states) in ``out_dir``."""
    tokenizer = llm_tokenizers.glm_tokenizer()
    pipe = diffusers.CogView4Pipeline(
        transformer=_seeded(seed, _cogview4_transformer).eval(),
        vae=_seeded(seed, lambda: _small_vae(128)).eval(),
        scheduler=diffusers.FlowMatchEulerDiscreteScheduler(
            base_shift=0.25,
            max_shift=0.75,
            base_image_seq_len=256,
            use_dynamic_shifting=True,
            time_shift_type="linear",
        ),
        text_encoder=_seeded(seed, lambda: _glm_text_encoder(tokenizer)),
        tokenizer=tokenizer,
    )
    return _save(pipe, out_dir)


# ---------------------------------------------------------------- Kolors


def _kolors_unet() -> Any:
    # SDXL's tiny UNet over ChatGLM's states: 6 time ids × 8 + the pooled text state (8); cross-attention 8.
    return text_time_unet(projection=56, cross_attention=8)


def _chatglm_text_encoder(tokenizer: Any) -> Any:
    chatglm: Any = importlib.import_module("diffusers.pipelines.kolors.text_encoder")
    config = chatglm.ChatGLMConfig(
        num_layers=2,
        padded_vocab_size=_vocab_size(tokenizer),
        hidden_size=8,  # the UNet's cross_attention_dim
        ffn_hidden_size=16,
        kv_channels=4,
        num_attention_heads=2,
        seq_length=llm_tokenizers.CHATGLM_MAX_LENGTH,
        original_rope=True,
        use_cache=False,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
    )
    model = chatglm.ChatGLMModel(config, empty_init=False)
    # ChatGLM's RMSNorm weights start as torch.empty and its _init_weights does nothing.
    with torch.no_grad():
        for name, parameter in model.named_parameters():
            if name.endswith("layernorm.weight"):
                parameter.fill_(1.0)
    return model.eval()


def build_kolors(out_dir: str, seed: int = 0) -> str:
    """A tiny ``KolorsPipeline`` (ChatGLM3 text encoder, 8-dim states) in ``out_dir``; needs ``sentencepiece``."""
    with tempfile.TemporaryDirectory() as tmp:
        model_file = llm_tokenizers.train_chatglm_sentencepiece(Path(tmp) / "tokenizer.model")
        tokenizer = llm_tokenizers.chatglm_tokenizer(model_file)
        pipe = diffusers.KolorsPipeline(
            unet=_seeded(seed, _kolors_unet).eval(),
            scheduler=diffusers.EulerDiscreteScheduler(
                beta_start=0.00085,
                beta_end=0.012,
                steps_offset=1,
                beta_schedule="scaled_linear",
                timestep_spacing="leading",
            ),
            vae=_seeded(seed, lambda: _small_vae(128)).eval(),
            text_encoder=_seeded(seed, lambda: _chatglm_text_encoder(tokenizer)),
            tokenizer=tokenizer,
            image_encoder=None,
            feature_extractor=None,
        )
        return _save(pipe, out_dir)  # the tokenizer copies its model file while saving


def _save(pipe: Any, out_dir: str) -> str:
    quiet_libraries()
    with building(out_dir) as tmp:
        pipe.save_pretrained(tmp)
        index_file = Path(tmp) / "model_index.json"
        index = json.loads(index_file.read_text(encoding="utf-8"))
        if "processor" in index:  # as a real checkpoint names it (the generator loads it image-only)
            index["processor"] = ["transformers", "Qwen2VLProcessor"]
            index_file.write_text(json.dumps(index, indent=2) + "\n", encoding="utf-8")
    return out_dir


BUILDERS: dict[str, Callable[[str, int], str]] = {
    "qwen-image": build_qwen_image,
    "qwen-image-edit": build_qwen_image_edit,
    "z-image": build_z_image,
    "cogview4": build_cogview4,
    "kolors": build_kolors,
}
