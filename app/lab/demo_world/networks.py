"""The demo-world model's parts, built from scratch in the PAI-Diffusion layout: a BERT tokenizer over the
bert-base-chinese vocabulary, a CLIP-architecture text tower, a UNet and an AutoencoderKL sized for 64x64
images, the training noise schedule, and the image <-> tensor conversions the stages share."""

from __future__ import annotations

from typing import Any

import diffusers as _diffusers
import numpy as np
import torch
import transformers as _transformers

from app.adapters.diffusers.demo import bert_chinese_tokenizer
from app.lab.demo_world.config import TrainConfig

diffusers: Any = _diffusers
transformers: Any = _transformers

MAX_TOKENS = 64


def tokenizer() -> Any:
    return bert_chinese_tokenizer(MAX_TOKENS)


def new_vae() -> Any:
    return diffusers.AutoencoderKL(
        in_channels=3,
        out_channels=3,
        down_block_types=("DownEncoderBlock2D",) * 3,
        up_block_types=("UpDecoderBlock2D",) * 3,
        block_out_channels=(32, 64, 64),
        layers_per_block=1,
        latent_channels=4,
        norm_num_groups=32,
        sample_size=64,
    )


def new_text_encoder(tok: Any, config: TrainConfig) -> Any:
    return transformers.CLIPTextModel(
        transformers.CLIPTextConfig(
            vocab_size=len(tok),
            hidden_size=config.text_width,
            intermediate_size=config.text_width * 4,
            num_hidden_layers=config.text_layers,
            num_attention_heads=4,
            max_position_embeddings=MAX_TOKENS,
            pad_token_id=tok.pad_token_id,
            bos_token_id=tok.cls_token_id,
            eos_token_id=tok.sep_token_id,
        )
    )


def new_unet(config: TrainConfig) -> Any:
    last_down = "CrossAttnDownBlock2D" if config.attention_all_levels else "DownBlock2D"
    first_up = "CrossAttnUpBlock2D" if config.attention_all_levels else "UpBlock2D"
    return diffusers.UNet2DConditionModel(
        sample_size=16,
        in_channels=4,
        out_channels=4,
        layers_per_block=1,
        block_out_channels=tuple(config.unet_channels),
        down_block_types=("CrossAttnDownBlock2D", "CrossAttnDownBlock2D", last_down),
        up_block_types=(first_up, "CrossAttnUpBlock2D", "CrossAttnUpBlock2D"),
        cross_attention_dim=config.text_width,
        attention_head_dim=8,
        norm_num_groups=32,
    )


def train_scheduler(config: TrainConfig | None = None) -> Any:
    zero_snr = (config or TrainConfig()).zero_terminal_snr
    extra: dict[str, Any] = (
        {"rescale_betas_zero_snr": True, "prediction_type": "v_prediction", "timestep_spacing": "trailing"}
        if zero_snr
        else {}
    )
    return diffusers.DDPMScheduler(
        num_train_timesteps=1000,
        beta_schedule="scaled_linear",
        beta_start=0.00085,
        beta_end=0.012,
        steps_offset=1,
        **extra,
    )


def to_tensor(images: list[np.ndarray]) -> torch.Tensor:
    x = torch.from_numpy(np.stack(images)).permute(0, 3, 1, 2).float()
    return x / 127.5 - 1.0


def from_tensor(x: torch.Tensor) -> list[np.ndarray]:
    arr = ((x.clamp(-1, 1) + 1) * 127.5).round().byte().permute(0, 2, 3, 1).cpu().numpy()
    return list(arr)
