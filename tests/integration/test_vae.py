"""A VAE chosen per request (A1111's ``sd_vae``): registered as a folder, a model folder's ``vae/`` or an A1111
single file, checked against the model's latent space at submission, and decoding in place of the model's own."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import diffusers
import numpy as np
import pytest
import torch
from PIL import Image
from safetensors.torch import load_file, save_file

from app.adapters.diffusers.tiny import build_tiny
from app.domain.errors import InvalidParameters
from app.domain.models import ModelKind
from app.entrypoints.library import Atelier
from tests.integration.test_single_file import vae_to_ldm

SMALL = {"width": 64, "height": 64, "steps": 2, "seed": 9}


@pytest.fixture(scope="module")
def atelier(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Atelier]:
    """A tiny SDXL (``sdxl``) and FLUX (``flux``); ``other-vae``: SDXL's VAE architecture with other weights, as a
    folder; ``other-vae-file``: the same weights as an A1111 single file; ``own-vae``: the SDXL folder's own VAE;
    ``flux-vae``: FLUX's 16-channel VAE."""
    torch.set_num_threads(1)
    root = tmp_path_factory.mktemp("vae")
    instance = Atelier.open(data_dir=str(tmp_path_factory.mktemp("data")))
    sdxl, flux = build_tiny("sdxl", str(root / "sdxl")), build_tiny("flux", str(root / "flux"))
    instance.add_model("sdxl", sdxl)
    instance.add_model("flux", flux)
    other = diffusers.AutoencoderKL.from_pretrained(sdxl, subfolder="vae")
    with torch.no_grad():
        for parameter in other.decoder.parameters():
            parameter.add_(torch.randn_like(parameter) * 0.05)
    other.save_pretrained(root / "other-vae")
    state = load_file(root / "other-vae" / "diffusion_pytorch_model.safetensors")
    ldm = {k.removeprefix("first_stage_model."): v for k, v in vae_to_ldm(state, dict(other.config)).items()}
    save_file({k: v.contiguous() for k, v in ldm.items()}, root / "other.vae.safetensors")
    instance.add_model("other-vae", str(root / "other-vae"), kind="vae")
    instance.add_model("other-vae-file", str(root / "other.vae.safetensors"), kind="vae", config="sdxl")
    instance.add_model("own-vae", sdxl, kind="vae")  # a model folder: its vae/ is used
    instance.add_model("flux-vae", flux, kind="vae")
    yield instance
    instance.close()


def pixels(atelier: Atelier, **values: object) -> np.ndarray:
    job = atelier.generate("a red house", model="sdxl", **SMALL, **values)
    assert job.status.value == "succeeded", job.error_message
    return np.asarray(Image.open(atelier.image_path(job.images[0].id)).convert("RGB"), dtype=int)


def test_a_vae_is_registered_with_its_latent_space(atelier: Atelier) -> None:
    base, vae = atelier.model("sdxl"), atelier.model("other-vae", ModelKind.VAE)
    assert base.latent is not None and base.latent == vae.latent and base.latent.startswith("AutoencoderKL:4:")
    assert atelier.model("flux", ModelKind.BASE).latent == atelier.model("flux-vae", ModelKind.VAE).latent
    assert atelier.model("flux-vae", ModelKind.VAE).latent != base.latent


def test_the_requests_vae_decodes_and_the_models_own_is_untouched(atelier: Atelier) -> None:
    plain = pixels(atelier)
    own = pixels(atelier, vae="own-vae")
    other = pixels(atelier, vae="other-vae")
    from_file = pixels(atelier, vae="other-vae-file")
    assert np.array_equal(own, plain)  # the model's own VAE, registered on its own, decodes the same
    assert np.abs(other - plain).mean() > 1.0  # another decoder
    assert np.array_equal(from_file, other)  # the A1111 single file converts to the same weights
    assert np.array_equal(pixels(atelier), plain)  # nothing leaked into the model's pipeline
    hires = atelier.generate("a red house", model="sdxl", vae="other-vae", hires={"scale": 1.5}, **SMALL)
    assert hires.status.value == "succeeded" and hires.images[0].width == 96


def test_a_vae_of_another_latent_space_or_an_unknown_one_is_refused_at_submission(atelier: Atelier) -> None:
    before = atelier.jobs().total
    with pytest.raises(
        InvalidParameters,
        match=r"The VAE 'flux-vae' \(AutoencoderKL, 1 latent channel, 1x downscale\) does not fit 'sdxl'",
    ) as e:
        atelier.submit("a red house", model="sdxl", vae="flux-vae", **SMALL)
    assert (e.value.code, e.value.field) == ("vae_mismatch", "vae")
    with pytest.raises(Exception, match="No vae named 'nope'"):
        atelier.submit("a red house", model="sdxl", vae="nope", **SMALL)
    assert atelier.jobs().total == before


def test_a_file_that_is_not_a_vae_is_refused_at_registration(atelier: Atelier, tmp_path: Path) -> None:
    save_file({"weight": torch.zeros(2)}, tmp_path / "not-a-vae.safetensors")
    with pytest.raises(InvalidParameters, match="not a VAE file"):
        atelier.add_model("bad-vae", str(tmp_path / "not-a-vae.safetensors"), kind="vae", config="sdxl")
    assert "bad-vae" not in [m.name for m in atelier.models("vae")]
