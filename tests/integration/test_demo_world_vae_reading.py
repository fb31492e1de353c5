"""How the checker reads a VAE's reconstructions: a perfect autoencoder keeps every stated shadow, one that
wipes the image keeps none, and the shipped decoder keeps most."""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any

import torch

from app.lab.demo_world.evaluate import load_pipeline, vae_reconstructions


class _Autoencoder(torch.nn.Module):
    """``encode``/``decode`` shaped like diffusers' AutoencoderKL; ``wipe`` decodes a flat grey image."""

    def __init__(self, wipe: bool = False) -> None:
        super().__init__()
        self.wipe = wipe
        self.anchor = torch.nn.Parameter(torch.zeros(()))

    def encode(self, x: torch.Tensor) -> Any:
        return SimpleNamespace(latent_dist=SimpleNamespace(mode=lambda: x))

    def decode(self, z: torch.Tensor) -> Any:
        return SimpleNamespace(sample=torch.zeros_like(z) if self.wipe else z)


def test_a_perfect_autoencoder_keeps_the_shadows_and_a_wiping_one_keeps_none() -> None:
    perfect = vae_reconstructions(_Autoencoder(), n=40)
    assert perfect["scenes"] == 40
    assert perfect["shadow_seen"] >= 0.95 and perfect["shadowed_exact"] >= 0.9
    assert perfect["mixed_exact_ignoring_styles"] >= 0.95
    wiped = vae_reconstructions(_Autoencoder(wipe=True), n=40)
    assert wiped["shadow_seen"] == wiped["shadowed_exact"] == wiped["mixed_exact"] == 0.0


def test_the_shipped_decoder_keeps_most_stated_shadows() -> None:
    from app.adapters.demo_world import model_path as trained_demo_path

    reading = vae_reconstructions(load_pipeline(trained_demo_path()).vae, n=40)
    assert reading["shadow_seen"] >= 0.8  # 0.925 on 200 scenes; the decoder before the shade stage: 0.52
