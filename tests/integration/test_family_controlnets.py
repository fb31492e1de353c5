"""ControlNet on the families that have it (SDXL, SD3, FLUX, Qwen-Image), one unit or several, on tiny pipelines
and tiny ControlNets derived from their denoisers."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from PIL import Image

from app.adapters.diffusers.generator import DiffusersImageGenerator
from app.adapters.diffusers.layout import inspect_controlnet, inspect_model
from app.adapters.diffusers.tiny import build_tiny
from app.adapters.diffusers.tiny.controlnets import BUILDERS, build_tiny_controlnet
from app.domain.families import Family
from app.domain.generation import GenerationParams
from app.domain.models import ModelInfo, ModelKind
from app.domain.specs import ControlKind, ControlSpec, Mode
from app.ports.generation import GeneratedImage, GenerationRequest
from tests.fakes import RecordingProgress

SIZE = 64
FAMILIES = sorted(BUILDERS)


@pytest.fixture(scope="module", autouse=True)
def _one_torch_thread() -> None:
    torch.set_num_threads(1)


@pytest.fixture(scope="module")
def generator() -> Iterator[DiffusersImageGenerator]:
    gen = DiffusersImageGenerator()
    yield gen
    gen.unload_all()


@pytest.fixture(scope="module")
def models(tmp_path_factory: pytest.TempPathFactory) -> dict[str, tuple[ModelInfo, list[ModelInfo]]]:
    """Each family's tiny base model and two ControlNets for it (different seeds)."""
    root = tmp_path_factory.mktemp("tiny-controlnets")
    found = {}
    for family in FAMILIES:
        base = build_tiny(family, str(root / family))
        info = ModelInfo(name=family, path=base, source=base, family=Family(inspect_model(base)["family"]))
        nets = []
        for seed in (1, 2):
            path = build_tiny_controlnet(family, base, str(root / f"{family}-cn{seed}"), seed=seed)
            described = inspect_controlnet(path)
            assert described["family"] == info.family.value
            nets.append(ModelInfo(f"{family}-cn{seed}", path, path, ModelKind.CONTROLNET, family=info.family))
        found[family] = (info, nets)
    return found


def pictures(tmp_path: Path) -> dict[str, str]:
    """Two control maps: a white square on black, and vertical stripes."""
    square, stripes = Image.new("RGB", (SIZE, SIZE), "black"), Image.new("RGB", (SIZE, SIZE), "black")
    square.paste("white", (16, 16, 48, 48))
    for x in range(0, SIZE, 8):
        stripes.paste("white", (x, 0, x + 4, SIZE))
    paths = {"control0": tmp_path / "square.png", "control1": tmp_path / "stripes.png"}
    square.save(paths["control0"])
    stripes.save(paths["control1"])
    return {key: str(path) for key, path in paths.items()}


UPLOADS = ("upload-" + "a" * 32, "upload-" + "b" * 32)


def run(
    generator: DiffusersImageGenerator,
    base: ModelInfo,
    nets: list[ModelInfo],
    inputs: dict[str, str],
    units: list[dict[str, Any]],
) -> GeneratedImage:
    controls = tuple(
        ControlSpec(image=UPLOADS[k], kind=ControlKind.NONE, model=nets[k].name, **unit) for k, unit in enumerate(units)
    )
    params = GenerationParams(
        prompt="a house", model=base.name, width=SIZE, height=SIZE, steps=2, seed=5, controls=controls
    )
    assert params.mode is Mode.CONTROLNET
    keys = {f"control{k}": inputs[f"control{k}"] for k in range(len(units))}
    request = GenerationRequest(base, params, inputs=keys, controlnets=tuple(nets[: len(units)]))
    progress = RecordingProgress()
    [image] = generator.generate(request, progress)
    assert progress.calls and progress.calls[-1][0] == progress.calls[-1][1]
    return image


def pixels(image: GeneratedImage) -> np.ndarray:
    return np.frombuffer(image.rgb, dtype=np.uint8).reshape(image.height, image.width, 3).astype(int)


@pytest.mark.parametrize("family", FAMILIES)
def test_one_unit_and_two_units_each_change_the_picture(
    family: str,
    models: dict[str, tuple[ModelInfo, list[ModelInfo]]],
    generator: DiffusersImageGenerator,
    tmp_path: Path,
) -> None:
    base, nets = models[family]
    if base.family is Family.QWEN_IMAGE:  # one union ControlNet reads every control image
        nets = [nets[0], nets[0]]
    inputs = pictures(tmp_path)
    plain = generator.generate(
        GenerationRequest(
            base, GenerationParams(prompt="a house", model=family, width=SIZE, height=SIZE, steps=2, seed=5)
        ),
        RecordingProgress(),
    )[0]
    off = run(generator, base, nets, inputs, [{"scale": 0.0}])
    one = run(generator, base, nets, inputs, [{"scale": 1.0}])
    two = run(generator, base, nets, inputs, [{"scale": 1.0}, {"scale": 1.0}])
    late = run(generator, base, nets, inputs, [{"scale": 1.0}, {"scale": 1.0, "start": 0.5}])
    # Scale 0 adds nothing: the ControlNet pipeline then draws what text-to-image draws.
    if base.family in (Family.SDXL, Family.SD3):
        # Scale 0 adds nothing: the ControlNet pipeline draws what text-to-image draws. (FLUX's and Qwen-Image's
        # encode the control image with a sample from the seed's generator first, so their noise differs.)
        assert np.abs(pixels(off) - pixels(plain)).max() <= 1, family
    assert np.abs(pixels(one) - pixels(plain)).mean() > 0.5, family
    assert np.abs(pixels(two) - pixels(one)).mean() > 0.5, family  # the second unit acts
    assert np.abs(pixels(late) - pixels(two)).mean() > 0.1, family  # ... and only from half-way with start 0.5


def test_a_unit_at_scale_zero_leaves_the_other_units_result(
    models: dict[str, tuple[ModelInfo, list[ModelInfo]]], generator: DiffusersImageGenerator, tmp_path: Path
) -> None:
    base, nets = models["sdxl"]
    inputs = pictures(tmp_path)
    one = run(generator, base, nets, inputs, [{"scale": 0.8}])
    with_silent = run(generator, base, nets, inputs, [{"scale": 0.8}, {"scale": 0.0}])
    assert np.abs(pixels(one) - pixels(with_silent)).max() <= 1
