"""The GPU road, tested on the CPU: dtype and placement decisions, weights counted from headers, VAE tiling per
call, torch.compile at load, and a job that runs out of device memory failing cleanly, evicting, and the next
job running."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import torch

from app.adapters.diffusers import runtime
from app.adapters.diffusers.generator import DiffusersImageGenerator, _pipeline_bytes
from app.adapters.diffusers.runtime import RuntimeOptions
from app.adapters.diffusers.tiny import build_tiny
from app.domain.errors import GenerationFailed, InvalidParameters
from app.domain.families import Family
from app.domain.generation import GenerationParams
from app.domain.models import ModelInfo
from app.ports.generation import GenerationRequest

CUDA = RuntimeOptions(device="cuda")


@pytest.fixture(scope="module")
def folders(tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    root = tmp_path_factory.mktemp("tiny")
    return {family: build_tiny(family, str(root / family)) for family in ("sdxl", "flux")}


def test_dtype_follows_the_device_and_the_family() -> None:
    assert runtime.dtype_for(Family.FLUX, RuntimeOptions()) is torch.float32  # the CPU
    assert runtime.dtype_for(Family.FLUX, CUDA, bf16_supported=True) is torch.bfloat16
    assert runtime.dtype_for(Family.FLUX, CUDA, bf16_supported=False) is torch.float16
    assert runtime.dtype_for(Family.SDXL, CUDA, bf16_supported=True) is torch.float16
    assert runtime.dtype_for(Family.SD, RuntimeOptions(device="cuda", dtype="float32")) is torch.float32
    with pytest.raises(InvalidParameters, match="dtype must be auto"):
        RuntimeOptions(dtype="int8")
    with pytest.raises(InvalidParameters, match="offload must be one of"):
        RuntimeOptions(offload="disk")


def test_a_model_over_the_cache_budget_is_offloaded_on_cuda_only() -> None:
    assert runtime.placement(CUDA, weights=10, budget=100) == "device"
    assert runtime.placement(CUDA, weights=1000, budget=100) == "model"
    assert runtime.placement(RuntimeOptions(device="cuda", offload="none"), 1000, 100) == "device"
    assert runtime.placement(RuntimeOptions(device="cuda", offload="sequential"), 10, 100) == "sequential"
    assert runtime.placement(RuntimeOptions(), weights=1000, budget=100) == "device"  # nothing to offload to

    class Pipe:
        def __init__(self) -> None:
            self.calls: list[tuple[str, str]] = []

        def enable_model_cpu_offload(self, device: str) -> None:
            self.calls.append(("model", device))

        def enable_sequential_cpu_offload(self, device: str) -> None:
            self.calls.append(("sequential", device))

    pipe = Pipe()
    runtime.place(pipe, "model", "cuda:1")
    runtime.place(pipe, "sequential", "cuda:1")
    assert pipe.calls == [("model", "cuda:1"), ("sequential", "cuda:1")]


@pytest.mark.parametrize("family", ["sdxl", "flux"])
def test_weights_read_from_headers_equal_the_loaded_parameters(family: str, folders: dict[str, str]) -> None:
    generator = DiffusersImageGenerator()
    pipe, loaded_family, where = generator._load(folders[family])
    assert (loaded_family.value, where) == (family, "device")
    # The saved weights; the loaded pipeline also holds a few non-persistent buffers (position ids, RoPE tables).
    loaded = _pipeline_bytes(pipe)
    assert 0.99 * loaded <= runtime.weights_bytes(folders[family], torch.float32) <= loaded
    assert (
        runtime.weights_bytes(folders[family], torch.float16)
        == runtime.weights_bytes(folders[family], torch.float32) // 2
    )
    assert _pipeline_bytes(pipe, offloaded=True) < _pipeline_bytes(pipe)
    assert runtime.attention_backends(pipe)  # the denoiser's processors are listed


def test_vae_tiling_follows_the_image_size_and_compile_runs_at_load(
    folders: dict[str, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    compiled: list[Any] = []
    monkeypatch.setattr(torch.nn.Module, "compile", lambda self, *a, **k: compiled.append(self))
    options = RuntimeOptions(compile=True, vae_tiling_pixels=64 * 64)
    generator = DiffusersImageGenerator(options=options)
    pipe, _, _ = generator._load(folders["sdxl"])
    assert compiled == [pipe.unet]
    assert pipe.vae.use_slicing
    assert runtime.tile_for(pipe, 64, 64, options) is False and not pipe.vae.use_tiling
    assert runtime.tile_for(pipe, 128, 64, options) is True and pipe.vae.use_tiling
    assert runtime.tile_for(pipe, 128, 64, RuntimeOptions(vae_tiling_pixels=0)) is False


@pytest.fixture
def generator() -> Iterator[DiffusersImageGenerator]:
    gen = DiffusersImageGenerator()
    yield gen
    gen.unload_all()


class Sink:
    def step(self, done: int, total: int) -> None:
        pass


def request(folders: dict[str, str], family: str) -> GenerationRequest:
    model = ModelInfo(name=family, path=folders[family], source=folders[family], family=Family(family))
    params = GenerationParams(prompt="a cat", model=family, width=64, height=64, steps=1, seed=1)
    return GenerationRequest(model, params)


def test_out_of_memory_fails_the_job_evicts_the_idle_models_and_the_next_job_runs(
    folders: dict[str, str], generator: DiffusersImageGenerator, monkeypatch: pytest.MonkeyPatch
) -> None:
    generator.generate(request(folders, "flux"), Sink())
    generator.generate(request(folders, "sdxl"), Sink())
    assert {Path(p).name for p, _ in generator.loaded_models()} == {"flux", "sdxl"}
    original = runtime.tile_for

    def out_of_memory(*args: Any) -> bool:
        raise torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 20.00 GiB")

    monkeypatch.setattr(runtime, "tile_for", out_of_memory)
    with pytest.raises(GenerationFailed) as caught:
        generator.generate(request(folders, "sdxl"), Sink())
    assert caught.value.code == "out_of_memory" and "smaller size" in str(caught.value)
    assert "20.00 GiB" not in str(caught.value)
    assert [Path(p).name for p, _ in generator.loaded_models()] == ["sdxl"]  # the idle FLUX was dropped
    monkeypatch.setattr(runtime, "tile_for", original)
    [image] = generator.generate(request(folders, "sdxl"), Sink())
    assert (image.width, image.height) == (64, 64)
