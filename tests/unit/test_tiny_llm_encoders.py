"""The tiny LLM-text-encoder pipelines build offline, load back by their model_index class and generate."""

from __future__ import annotations

import importlib
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import diffusers
import numpy as np
import pytest
import torch
from PIL import Image

from app.adapters.diffusers.processors import ImageOnlyQwen2VLProcessor
from app.adapters.diffusers.tiny.llm_encoders import BUILDERS, NATIVE_SIZE

EDIT_MODULE = "diffusers.pipelines.qwenimage.pipeline_qwenimage_edit"


@pytest.fixture(scope="module", autouse=True)
def _one_torch_thread() -> Iterator[None]:
    # The models are so small that a second thread only adds synchronisation (tenfold on a busy CPU).
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def _needs(family: str) -> None:
    if family == "kolors":
        pytest.importorskip("sentencepiece")  # Kolors' ChatGLM tokenizer is a SentencePiece model


def _load(folder: Path) -> Any:
    # transformers' Qwen2VLProcessor needs torchvision for its video half: Qwen-Image-Edit's is loaded image-only.
    class_name = json.loads((folder / "model_index.json").read_text(encoding="utf-8"))["_class_name"]
    parts: dict[str, Any] = {}
    if class_name == "QwenImageEditPipeline":
        parts["processor"] = ImageOnlyQwen2VLProcessor.from_pretrained(str(folder), subfolder="processor")
    pipe = getattr(diffusers, class_name).from_pretrained(str(folder), local_files_only=True, **parts)
    pipe.set_progress_bar_config(disable=True)
    return pipe


def _small_edit_inputs(monkeypatch: pytest.MonkeyPatch, size: int) -> None:
    # QwenImageEditPipeline resizes the input image to about 1 megapixel (calculate_dimensions(1024 * 1024, …),
    # fixed in the pipeline) before the VAE encodes it: seconds on a CPU even for the tiny VAE. The processor
    # already caps what the vision tower sees (max_pixels); this caps what the VAE sees.
    module = importlib.import_module(EDIT_MODULE)
    original = module.calculate_dimensions
    monkeypatch.setattr(module, "calculate_dimensions", lambda _area, ratio: original(size * size, ratio))


@pytest.mark.parametrize("family", sorted(BUILDERS))
def test_a_tiny_pipeline_loads_back_and_generates(family: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    _needs(family)
    folder = tmp_path / family
    assert BUILDERS[family](str(folder), 0) == str(folder)
    pipe = _load(folder)
    size = NATIVE_SIZE[family]
    inputs: dict[str, Any] = {}
    if family == "qwen-image-edit":
        _small_edit_inputs(monkeypatch, size)
        inputs["image"] = Image.new("RGB", (size, size), (200, 120, 40))

    images = pipe(
        prompt="一只猫 on a snowy mountain",
        num_inference_steps=2,
        height=size,
        width=size,
        output_type="np",
        generator=torch.Generator().manual_seed(1),
        **inputs,
    ).images

    assert images.shape == (1, size, size, 3)
    assert np.isfinite(images).all()


@pytest.mark.parametrize("family", sorted(BUILDERS))
def test_a_tiny_pipeline_depends_only_on_its_seed(family: str, tmp_path: Path) -> None:
    _needs(family)

    def weights(seed: int, name: str) -> dict[str, bytes]:
        folder = Path(BUILDERS[family](str(tmp_path / name), seed))
        return {str(path.relative_to(folder)): path.read_bytes() for path in sorted(folder.rglob("*.safetensors"))}

    first = weights(0, "a")
    assert first == weights(0, "b")
    assert first != weights(1, "c")
