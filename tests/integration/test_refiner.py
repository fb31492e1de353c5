"""The SDXL refiner as a second stage: the base model runs the first part of the schedule and the refiner the
rest on its latents (diffusers' ensemble of expert denoisers), on the tiny SDXL base and refiner (same VAE,
same OpenCLIP-G tower), through the refiner module and through the generator."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import numpy as np
import pytest
import torch
from diffusers import StableDiffusionXLImg2ImgPipeline, StableDiffusionXLPipeline

from app.adapters.diffusers.generator import DiffusersImageGenerator, quiet_libraries
from app.adapters.diffusers.refiner import refiner_view, run_with_refiner
from app.adapters.diffusers.tiny import build_tiny
from app.domain.errors import InvalidParameters, JobCancelled
from app.domain.families import Family
from app.domain.generation import GenerationParams
from app.domain.models import ModelInfo
from app.ports.generation import GeneratedImage, GenerationRequest
from tests.fakes import RecordingProgress

SIZE, STEPS, PROMPT = 64, 4, "一只猫在草地上 a cat"


@pytest.fixture(scope="module")
def folders(tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    torch.set_num_threads(1)
    quiet_libraries()
    root = tmp_path_factory.mktemp("refiner")
    return {family: build_tiny(family, str(root / family)) for family in ("sdxl", "sdxl-refiner")}


@pytest.fixture(scope="module")
def pipes(folders: dict[str, str]) -> dict[str, Any]:
    found = {
        "sdxl": StableDiffusionXLPipeline.from_pretrained(folders["sdxl"], local_files_only=True),
        "sdxl-refiner": StableDiffusionXLImg2ImgPipeline.from_pretrained(
            folders["sdxl-refiner"], local_files_only=True
        ),
    }
    for pipe in found.values():
        pipe.set_progress_bar_config(disable=True)
    return found


def _generators(*seeds: int) -> list[torch.Generator]:
    return [torch.Generator().manual_seed(seed) for seed in seeds]


def reference(pipes: dict[str, Any], switch: float, seed: int = 3, prompt: str = PROMPT) -> np.ndarray:
    """diffusers' documented two-stage call, written out (no negative prompt: SDXL's is zeros then, as the
    generator's is for an empty one)."""
    shared: dict[str, Any] = {"prompt": [prompt], "guidance_scale": 5.0}
    generators = _generators(seed)
    with torch.inference_mode():
        latents = pipes["sdxl"](
            **shared, height=SIZE, width=SIZE, num_inference_steps=STEPS, denoising_end=switch,
            output_type="latent", generator=generators,
        ).images  # fmt: skip
        image = pipes["sdxl-refiner"](
            **shared, image=latents, num_inference_steps=STEPS, denoising_start=switch, output_type="np",
            generator=generators,
        ).images  # fmt: skip
    return np.asarray(image)


def test_the_base_runs_the_first_steps_and_the_refiner_the_rest(pipes: dict[str, Any]) -> None:
    calls: list[tuple[int, int]] = []
    arguments: dict[str, Any] = {
        "prompt": [PROMPT], "guidance_scale": 5.0, "height": SIZE, "width": SIZE,
        "num_inference_steps": STEPS, "num_images_per_prompt": 1, "generator": _generators(3), "output_type": "np",
    }  # fmt: skip
    with torch.inference_mode():
        output = run_with_refiner(
            pipes["sdxl"], pipes["sdxl-refiner"], Family.SDXL_REFINER, arguments, switch=0.5, scheduler=None,
            report=lambda done, total: calls.append((done, total)),
        )  # fmt: skip
        alone = pipes["sdxl"](**{**arguments, "generator": _generators(3)}).images
    refined = np.asarray(output.images)
    assert np.array_equal(refined, reference(pipes, 0.5))
    assert np.abs(refined - np.asarray(alone)).mean() > 0.01  # the refiner's steps changed the image
    assert calls == [(1, STEPS), (2, STEPS), (3, STEPS), (4, STEPS)]  # both stages, counted as one schedule


def test_only_a_refiner_refines(pipes: dict[str, Any]) -> None:
    with pytest.raises(InvalidParameters, match=r"must be a Stable Diffusion XL refiner model, not a Stable Diff"):
        refiner_view(pipes["sdxl"], Family.SDXL, None)


# --- through the generator: GenerationParams.refiner/refiner_switch and GenerationRequest.refiner ------------


@pytest.fixture(scope="module")
def generator() -> Iterator[DiffusersImageGenerator]:
    gen = DiffusersImageGenerator()
    yield gen
    gen.unload_all()


def _info(folders: dict[str, str], family: str) -> ModelInfo:
    return ModelInfo(name=family, path=folders[family], source=folders[family], family=Family(family))


def _request(folders: dict[str, str], switch: float = 0.5, seed: int = 3, prompt: str = PROMPT) -> GenerationRequest:
    params = GenerationParams(
        prompt=prompt, model="sdxl", width=SIZE, height=SIZE, steps=STEPS, seed=seed, refiner="sdxl-refiner",
        refiner_switch=switch,
    )  # fmt: skip
    return GenerationRequest(_info(folders, "sdxl"), params, refiner=_info(folders, "sdxl-refiner"))


def _pixels(image: GeneratedImage) -> np.ndarray:
    return np.frombuffer(image.rgb, dtype=np.uint8).reshape(image.height, image.width, 3)


def _as_generated(images: np.ndarray) -> np.ndarray:
    return (np.clip(images[0], 0, 1) * 255).round().astype(np.uint8)


def test_the_generator_runs_the_refiner_as_a_second_stage(
    folders: dict[str, str], pipes: dict[str, Any], generator: DiffusersImageGenerator
) -> None:
    progress = RecordingProgress()
    [image] = generator.generate(_request(folders, switch=0.5), progress)
    assert np.array_equal(_pixels(image), _as_generated(reference(pipes, 0.5)))
    assert progress.calls[-1] == (STEPS, STEPS) and [done for done, _ in progress.calls] == [1, 2, 3, 4]
    assert {path for path, _ in generator.loaded_models()} >= {folders["sdxl"], folders["sdxl-refiner"]}
    [later] = generator.generate(_request(folders, switch=0.75), RecordingProgress())
    assert not np.array_equal(_pixels(later), _pixels(image))  # the switch moves the hand-over
    plain_params = GenerationParams(prompt=PROMPT, model="sdxl", width=SIZE, height=SIZE, steps=STEPS, seed=3)
    [plain] = generator.generate(GenerationRequest(_info(folders, "sdxl"), plain_params), RecordingProgress())
    assert not np.array_equal(_pixels(plain), _pixels(image))


def test_a_batch_with_a_refiner_gives_each_request_its_own_images(
    folders: dict[str, str], generator: DiffusersImageGenerator
) -> None:
    requests = [_request(folders, seed=5), _request(folders, seed=9, prompt="一座红色的房子 a red house")]
    alone = [generator.generate(request, RecordingProgress()) for request in requests]
    together = generator.generate_batch(requests, [RecordingProgress(), RecordingProgress()])
    for single, batched in zip(alone, together, strict=True):
        assert isinstance(batched, list)
        # Equal but for float rounding (batch-size-dependent kernels), as without a refiner.
        difference = np.abs(_pixels(single[0]).astype(int) - _pixels(batched[0]).astype(int))
        assert difference.max() <= 1 and difference.mean() < 0.01


def test_a_two_stage_run_can_be_cancelled_in_either_stage(
    folders: dict[str, str], generator: DiffusersImageGenerator
) -> None:
    for step in (1, 3):  # in the base's steps, then in the refiner's
        progress = RecordingProgress(cancel_at=step)
        with pytest.raises(JobCancelled):
            generator.generate(_request(folders), progress)
        assert progress.calls[-1][0] == step
