"""The settings of a demo-world training run, each with the reason for its default, and its progress callback.

A run stores its configuration with its checkpoints and refuses to resume under another one, and the export
writes it into the model's ``atelier-demo.json``, so a shipped model names the settings that trained it.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass


@dataclass
class TrainConfig:
    seed: int = 0
    threads: int = 2
    # VAE
    vae_steps: int = 2000
    decoder_steps: int = 600
    vae_batch: int = 16
    vae_lr: float = 2e-3
    decoder_lr: float = 2e-4
    # A second decoder-only stage ("sharpen", encoder still frozen, so the latent space and the UNet
    # are untouched) with a loss that weighs small objects and shape edges more: small stars and
    # squares decoded as round blobs, which the checker rightly read as circles, so the VAE, not the
    # UNet, capped colour+shape accuracy (docs/generation.md, "The demo world").
    sharpen_steps: int = 3000
    sharpen_lr: float = 1e-4
    small_object_weight: float = 1.0
    edge_weight: float = 4.0
    # A third decoder-only stage ("shade") where the pixels of drop shadows weigh ``shadow_weight``
    # more, on batches where styles are more frequent: the decoder blurred the faint 2-px shadow
    # crescent into the background. A weight of 20 over 1500 steps brought the shadows back where a
    # lighter one did not (docs/generation.md has the readings).
    shade_steps: int = 1500
    shade_lr: float = 1e-4
    shadow_weight: float = 20.0
    shade_style_rate: float = 0.35
    # A fourth decoder-only stage ("palette") on scenes in every colour, the new ones (pink) too: the decoder,
    # trained on eight colours, drew a pink latent as grey or white, so no LoRA could teach the colour.
    palette_steps: int = 1200
    palette_lr: float = 1e-4
    gate_scenes: int = 200
    gate_min: float = 0.8
    # UNet + text encoder
    n_scenes: int = 20000
    unet_steps: int = 6500
    batch: int = 32
    lr: float = 8e-4
    warmup: int = 200
    min_snr_gamma: float = 5.0
    # Noise schedule: SD's scaled-linear betas rescaled to zero terminal SNR, with v-prediction and
    # "trailing" sampling (Lin et al. 2024, "Common Diffusion Noise Schedules and Sample Steps Are
    # Flawed"). The plain schedule leaves sqrt(alpha_bar_T) = 0.068 of the image in the last training
    # step; on a 16x16 latent that is enough to read the layout, so the model learns to keep the
    # layout of the noise and never to place an object from the caption: with the plain schedule the
    # seed alone decided position, whatever the prompt said.
    zero_terminal_snr: bool = True
    caption_dropout: float = 0.1
    english_rate: float = 0.2
    checkpoint_every: int = 250
    unet_channels: tuple[int, ...] = (64, 128, 128)
    text_width: int = 128
    text_layers: int = 3
    # The text tower is pretrained to state what a caption says and then frozen, as SD's CLIP text
    # encoder is: trained jointly from scratch, it learned to map position words (左上/右下) to nearly
    # the same states, because the young UNet could not use them yet, and position was never learned.
    text_steps: int = 800
    text_batch: int = 64
    text_lr: float = 1e-3
    freeze_text: bool = True
    # Cross-attention at every UNet level, the 4x4 one included, where zero padding tells every
    # location where it is.
    attention_all_levels: bool = True


# What a stage reports after each step: (stage, steps done, steps in the stage, running figures such as the loss).
Progress = Callable[[str, int, int, dict[str, float]], None]
