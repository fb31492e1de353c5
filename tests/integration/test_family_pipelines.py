"""Each family's modes, batching, progress and cancel through the diffusers adapter, on tiny pipelines."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from PIL import Image

from app.adapters.diffusers.generator import DiffusersImageGenerator
from app.adapters.diffusers.layout import inspect_model
from app.adapters.diffusers.tiny import BUILDERS, build_tiny
from app.domain.errors import JobCancelled
from app.domain.families import Family, profile
from app.domain.generation import GenerationParams
from app.domain.models import ModelInfo
from app.domain.specs import HiresSpec, HiresUpscaler, Mode, OutpaintSpec
from app.ports.generation import GeneratedImage, GenerationRequest
from tests.fakes import RecordingProgress

SIZE = 64
EDIT_MODES = (Mode.IMG2IMG, Mode.INPAINT, Mode.OUTPAINT, Mode.INSTRUCT)


@pytest.fixture(scope="module", autouse=True)
def _one_torch_thread() -> None:
    torch.set_num_threads(1)


@pytest.fixture(scope="module")
def folders(tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    root = tmp_path_factory.mktemp("tiny")
    return {family: str(root / family) for family in BUILDERS}


@pytest.fixture(scope="module")
def generator() -> Iterator[DiffusersImageGenerator]:
    gen = DiffusersImageGenerator()
    yield gen
    gen.unload_all()


def model(folders: dict[str, str], family: str) -> ModelInfo:
    path = folders[family]
    if not Path(path, "model_index.json").is_file():
        build_tiny(family, path)
    details = inspect_model(path)
    return ModelInfo(name=family, path=path, source=path, family=Family(details["family"]))


def picture(tmp_path: Path, name: str, colour: str = "red", size: int = SIZE) -> str:
    path = tmp_path / f"{name}.png"
    image = Image.new("RGB", (size, size), colour)
    if name == "mask":
        image.paste("white", (0, 0, size // 2, size))
    image.save(path)
    return str(path)


def params(family: str, **values: Any) -> GenerationParams:
    base: dict[str, Any] = {"prompt": "一只猫在草地上 a cat", "model": family, "width": SIZE, "height": SIZE}
    return GenerationParams(**{**base, "steps": 2, "seed": 11, **values})


def pixels(image: GeneratedImage) -> np.ndarray:
    return np.frombuffer(image.rgb, dtype=np.uint8).reshape(image.height, image.width, 3)


@pytest.mark.parametrize("family", sorted(BUILDERS))
def test_every_mode_of_the_family_runs(
    family: str, folders: dict[str, str], generator: DiffusersImageGenerator, tmp_path: Path
) -> None:
    info = model(folders, family)
    inputs = {"init": picture(tmp_path, "init"), "mask": picture(tmp_path, "mask")}
    modes = profile(info.family).modes()
    for mode in modes:
        extra: dict[str, Any] = {}
        if mode in EDIT_MODES:
            extra["init_image"] = "upload-" + "1" * 32
        if mode is Mode.INPAINT:
            extra["mask_image"] = "upload-" + "2" * 32
        if mode is Mode.OUTPAINT:
            extra["outpaint"] = OutpaintSpec(left=16, right=16)
        if mode is Mode.CONTROLNET:
            continue  # the SD ControlNet path has its own tests
        progress = RecordingProgress()
        request = GenerationRequest(info, params(family, mode=mode, **extra), inputs=inputs)
        [image] = generator.generate(request, progress)
        assert (image.width, image.height) == (SIZE, SIZE), mode
        assert progress.calls and progress.calls[-1][0] == progress.calls[-1][1], (mode, progress.calls)
        assert pixels(image).std() > 0, mode


@pytest.mark.parametrize("family", sorted(f for f in BUILDERS if Mode.TXT2IMG in profile(f).modes()))
def test_a_batch_gives_each_request_the_images_it_gets_alone(
    family: str, folders: dict[str, str], generator: DiffusersImageGenerator
) -> None:
    info = model(folders, family)
    negative = "blurry" if "negative_prompt" in profile(info.family).capabilities else ""
    requests = [
        GenerationRequest(info, params(family, prompt="a cat", seed=3, negative_prompt=negative)),
        GenerationRequest(info, params(family, prompt="一座很高的红色房子在湖边 a tall red house by a lake", seed=9)),
    ]
    alone = [generator.generate(r, RecordingProgress()) for r in requests]
    together = generator.generate_batch(requests, [RecordingProgress(), RecordingProgress()])
    for single, batched in zip(alone, together, strict=True):
        assert isinstance(batched, list)
        # Equal but for float rounding: batch-size-dependent kernels differ by ~1e-6 before the 8-bit quantisation.
        difference = np.abs(pixels(single[0]).astype(int) - pixels(batched[0]).astype(int))
        assert difference.max() <= 1 and difference.mean() < 0.01, f"{family}: differs by {difference.max()}"


def test_euler_on_a_flow_matching_model_is_its_own_scheduler(
    folders: dict[str, str], generator: DiffusersImageGenerator
) -> None:
    info = model(folders, "flux")
    [own] = generator.generate(GenerationRequest(info, params("flux")), RecordingProgress())
    [euler] = generator.generate(GenerationRequest(info, params("flux", scheduler="Euler")), RecordingProgress())
    assert own.rgb == euler.rgb


@pytest.mark.parametrize("family", ["sdxl", "flux", "qwen-image"])
def test_cancel_stops_within_a_step(family: str, folders: dict[str, str], generator: DiffusersImageGenerator) -> None:
    info = model(folders, family)
    progress = RecordingProgress(cancel_at=1)
    with pytest.raises(JobCancelled):
        generator.generate(GenerationRequest(info, params(family, steps=6)), progress)
    assert [done for done, _ in progress.calls] == [1]


def test_the_model_cache_switches_families_without_reloading(
    folders: dict[str, str], generator: DiffusersImageGenerator
) -> None:
    infos = [model(folders, family) for family in ("sdxl", "sd3", "pixart-sigma")]
    for info in infos:
        generator.generate(GenerationRequest(info, params(info.name)), RecordingProgress())
    loads = generator.loads
    for info in reversed(infos):
        generator.generate(GenerationRequest(info, params(info.name)), RecordingProgress())
    assert generator.loads == loads
    sizes = dict(generator.loaded_models())
    assert all(sizes[info.path] > 0 for info in infos)


@pytest.mark.parametrize(
    ("family", "upscaler"), [("sdxl", "latent"), ("sdxl", "lanczos"), ("flux", "nearest"), ("z-image", "lanczos")]
)
def test_hires_fix_generates_enlarges_and_denoises_again(
    family: str, upscaler: str, folders: dict[str, str], generator: DiffusersImageGenerator
) -> None:
    info = model(folders, family)
    progress = RecordingProgress()
    spec = HiresSpec(scale=1.5, upscaler=HiresUpscaler(upscaler), steps=4, denoise=0.5)
    [image] = generator.generate(GenerationRequest(info, params(family, steps=3, hires=spec)), progress)
    assert (image.width, image.height) == (96, 96)
    assert progress.calls[-1] == (5, 5)  # 3 first-pass steps, then 4 × 0.5 at the larger size
    assert [done for done, _ in progress.calls] == sorted(done for done, _ in progress.calls)
    [plain] = generator.generate(GenerationRequest(info, params(family, steps=3)), RecordingProgress())
    assert (plain.width, plain.height) == (64, 64)


@pytest.mark.parametrize("family", ["sdxl", "sd3"])
def test_clip_skip_reads_an_earlier_clip_layer(
    family: str, folders: dict[str, str], generator: DiffusersImageGenerator
) -> None:
    info = model(folders, family)
    [last] = generator.generate(GenerationRequest(info, params(family)), RecordingProgress())
    [skipped] = generator.generate(GenerationRequest(info, params(family, clip_skip=2)), RecordingProgress())
    assert last.rgb != skipped.rgb
