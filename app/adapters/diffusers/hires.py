"""A1111's hires fix as two pipeline calls over the same weights: text-to-image at the requested size, the
result enlarged (its latents, or its decoded pixels), then image-to-image at the larger size.

In latent space the first pass returns its latents (``output_type="latent"``) and they are resized
bilinearly or by nearest neighbour; the image-to-image pipelines of the UNet families take 4-channel latents
as their input image directly. In pixel space the first pass is decoded and resized with Lanczos or nearest
neighbour. The second pass runs ``steps`` (the first pass's when 0) at strength ``denoise``: about
``steps × denoise`` denoising steps, as A1111 does without its "img2img fix steps" option.
"""

from __future__ import annotations

import math
from typing import Any

import torch
from PIL import Image

from app.domain.specs import HiresSpec, HiresUpscaler

_RESAMPLE = {HiresUpscaler.LANCZOS: Image.Resampling.LANCZOS, HiresUpscaler.NEAREST: Image.Resampling.NEAREST}


def first_pass_output(spec: HiresSpec | None) -> str:
    """The ``output_type`` of the first pass: latents when they are what gets enlarged."""
    if spec is None:
        return "np"
    return "latent" if spec.upscaler.in_latent_space else "pil"


def enlarge(first: Any, spec: HiresSpec, width: int, height: int, vae_factor: int) -> Any:
    """The first pass's output enlarged to ``width`` x ``height`` pixels (latents: that size over the VAE factor)."""
    if spec.upscaler.in_latent_space:
        latents = first if isinstance(first, torch.Tensor) else torch.stack(list(first))
        mode = "nearest" if spec.upscaler is HiresUpscaler.LATENT_NEAREST else "bilinear"
        size = (height // vae_factor, width // vae_factor)
        kwargs = {"align_corners": False} if mode == "bilinear" else {}
        return torch.nn.functional.interpolate(latents, size=size, mode=mode, **kwargs)
    return [picture.resize((width, height), _RESAMPLE[spec.upscaler]) for picture in first]


def second_pass_steps(spec: HiresSpec, first_steps: int) -> tuple[int, int]:
    """``num_inference_steps`` for the second call, and the denoising steps it runs (at least one)."""
    steps = spec.steps or first_steps
    if int(steps * spec.denoise) < 1:
        steps = math.ceil(1 / spec.denoise)
    return steps, max(1, int(steps * spec.denoise))


def vae_factor(pipe: Any) -> int:
    """Pixels per latent cell of the pipeline's VAE."""
    factor = getattr(pipe, "vae_scale_factor", None)
    if isinstance(factor, int) and factor > 0:
        return factor
    return 1 << (len(pipe.vae.config.block_out_channels) - 1)
