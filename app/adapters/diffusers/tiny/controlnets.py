"""Tiny random-init ControlNets for the tiny pipelines of the families that take one, built offline.

Each is derived from its base's denoiser as diffusers derives real ones (``from_unet``, ``from_transformer``), or
built from the base's config where the derivation cannot copy the tiny base's blocks (SD3's last block has no
context output). A trained ControlNet starts from zero input and output projections and learns them; here they
are random, so that the control image visibly changes the result.
"""

from __future__ import annotations

import inspect
import json
from pathlib import Path
from typing import Any

import diffusers
import torch

_lib: Any = diffusers


def _sdxl(base: str) -> Any:
    unet = _lib.UNet2DConditionModel.from_pretrained(base, subfolder="unet", local_files_only=True)
    vae = json.loads((Path(base) / "vae" / "config.json").read_text(encoding="utf-8"))
    downsamples = len(vae["block_out_channels"]) - 1  # the conditioning embedding downsamples as the VAE does
    return _lib.ControlNetModel.from_unet(
        unet, conditioning_embedding_out_channels=tuple(8 * 2**i for i in range(downsamples + 1))
    )


def _sd3(base: str) -> Any:
    config = dict(_lib.SD3Transformer2DModel.load_config(base, subfolder="transformer", local_files_only=True))
    accepted = set(inspect.signature(_lib.SD3ControlNetModel.__init__).parameters)
    settings = {k: v for k, v in config.items() if k in accepted and not k.startswith("_")}
    return _lib.SD3ControlNetModel(**{**settings, "num_layers": 1, "extra_conditioning_channels": 0})


def _from_transformer(transformer_class: str, controlnet_class: str, **layers: int) -> Any:
    """A builder deriving ``controlnet_class`` from the tiny base's transformer, with its heads and ``layers``."""

    def build(base: str) -> Any:
        transformer = getattr(_lib, transformer_class).from_pretrained(
            base, subfolder="transformer", local_files_only=True
        )
        config = transformer.config
        heads = {"attention_head_dim": config.attention_head_dim, "num_attention_heads": config.num_attention_heads}
        return getattr(_lib, controlnet_class).from_transformer(transformer, **layers, **heads)

    return build


BUILDERS = {
    "sdxl": _sdxl,
    "sd3": _sd3,
    "flux": _from_transformer("FluxTransformer2DModel", "FluxControlNetModel", num_layers=1, num_single_layers=1),
    "qwen-image": _from_transformer("QwenImageTransformer2DModel", "QwenImageControlNetModel", num_layers=1),
}


def build_tiny_controlnet(family: str, base_dir: str, out_dir: str, seed: int = 0) -> str:
    """Save a random-init ControlNet for the tiny ``family`` pipeline at ``base_dir`` to ``out_dir``."""
    if family not in BUILDERS:
        raise ValueError(f"no tiny ControlNet for {family!r}; known: {', '.join(sorted(BUILDERS))}")
    torch.manual_seed(seed)
    controlnet = BUILDERS[family](base_dir)
    with torch.no_grad():
        for parameter in controlnet.parameters():
            if parameter.abs().max() == 0:  # the zero-initialised input and output projections (and zero biases)
                torch.nn.init.normal_(parameter, std=0.05)
    controlnet.save_pretrained(out_dir)
    return out_dir
