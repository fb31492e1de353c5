"""Typed factories of image generation: the generator, preprocessors, the model catalog's helpers,
images in and out."""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Iterator
from typing import Any

from app.domain.models import ModelInfo, ModelKind
from app.ports.generation import (
    ControlPreprocessor,
    DemoModels,
    DepthEstimator,
    ImageCodec,
    ImageFetcher,
    ImageGenerator,
    JobExecutor,
    ModelCatalog,
)
from app.ports.job_events import JobEvents
from app.ports.metrics import JobMetrics
from app.ports.persistence import JobReader
from app.ports.scenes import SceneReader
from app.ports.webhooks import JobCallbacks
from app.ports.workers import WorkerRegistry
from app.settings import Settings
from app.usecases.claim_jobs import ClaimJobs


def pick_device(device: str) -> str:
    """``auto``: CUDA when torch sees a GPU, else the CPU."""
    if device != "auto":
        return device
    import torch

    return "cuda" if torch.cuda.is_available() else "cpu"


def diffusers_generator(settings: Settings, depth: DepthEstimator) -> Iterator[ImageGenerator]:
    from app.adapters.diffusers.generator import DiffusersImageGenerator
    from app.adapters.diffusers.runtime import RuntimeOptions

    options = RuntimeOptions(
        device=pick_device(settings.device),
        dtype=settings.dtype,
        offload=settings.offload,
        compile=settings.compile,
        vae_tiling_pixels=settings.vae_tiling_pixels,
    )
    generator = DiffusersImageGenerator(
        safety_checker=settings.safety_checker,
        cache_bytes=settings.model_cache_bytes,
        depth=depth,
        options=options,
    )
    yield generator
    generator.unload_all()


def queue_executor(
    claim_jobs: Callable[[], ClaimJobs], loaded: Callable[[], list[str]], settings: Settings, events: JobEvents
) -> JobExecutor:
    """Threads that claim jobs from the database's queue (``ClaimJobs``), preferring the models they hold."""
    from app.adapters.executor.claiming import ClaimingJobExecutor

    def claim(limit: int) -> list[str]:
        return [job.id for job in claim_jobs()(loaded(), limit)]

    return ClaimingJobExecutor(claim, settings.workers, settings.max_batch, settings.queue_poll, events.watch)


def ray_executor(settings: Settings, worker: type | None) -> JobExecutor:
    """Worker actors on a Ray cluster, each claiming from the database's queue (the ``ray`` extra); ``worker`` is
    the actor's class (the library's)."""
    from app.adapters.executor.ray import RayJobExecutor

    if worker is None:
        raise RuntimeError("the ray executor needs the worker actor's class (the library sets it)")
    executor: JobExecutor = RayJobExecutor(settings, worker)
    return executor


def depth_estimator() -> DepthEstimator:
    """One for the generator and the control-map preview, so both draw the same map."""
    from app.adapters.imaging.control import LuminanceDepthEstimator

    return LuminanceDepthEstimator()


def control_preprocessor(depth: DepthEstimator) -> ControlPreprocessor:
    from app.adapters.imaging.control import OpenCvControlPreprocessor

    return OpenCvControlPreprocessor(depth)


def image_codec() -> ImageCodec:
    from app.adapters.imaging.codec import PillowImageCodec

    return PillowImageCodec()


def image_fetcher(settings: Settings) -> ImageFetcher:
    from app.adapters.imaging.fetch import HttpImageFetcher

    return HttpImageFetcher(
        settings.fetch_allowed_hosts,
        max_bytes=settings.fetch_max_bytes,
        timeout=settings.fetch_timeout,
        allow_private=settings.fetch_allow_private,
    )


def job_callbacks(settings: Settings) -> Iterator[JobCallbacks]:
    """Signed, retried callbacks to the allow-listed hosts; none allowed: callbacks off."""
    from app.adapters.webhooks import HttpJobCallbacks, NoCallbacks

    if not settings.webhook_allowed_hosts or not settings.webhook_secret:
        yield NoCallbacks()
        return
    callbacks = HttpJobCallbacks(
        settings.webhook_allowed_hosts,
        settings.webhook_secret,
        allow_private=settings.webhook_allow_private,
        public_base_url=settings.public_base_url,
    )
    yield callbacks
    callbacks.close()


def scene_reader() -> SceneReader:
    from app.adapters.demo_world.checker import OpenCvSceneReader

    return OpenCvSceneReader()


def demo_models() -> DemoModels:
    from app.adapters.diffusers.demo import DiffusersDemoModels

    return DiffusersDemoModels()


def inspect_model(path: str, kind: str) -> dict[str, Any]:
    """What the catalog records of a model folder or file; a LoRA is read once now, so a broken file
    is refused at registration, not at a job."""
    if kind in (ModelKind.LLM, ModelKind.LLM_LORA):
        from app.adapters.transformers.registry import inspect_llm, inspect_llm_adapter

        return inspect_llm(path) if kind == ModelKind.LLM else inspect_llm_adapter(path)
    from app.adapters.diffusers.layout import inspect

    details = inspect(path, kind)
    if kind == "lora":
        from app.adapters.diffusers.lora import load_lora_state

        load_lora_state(details["file"])
        details["sha256"] = _file_sha256(details["file"])
    return details


def _file_sha256(path: str) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def convert_single_file(path: str, out_dir: str, config_dir: str | None) -> str:
    """An original-layout ``.safetensors``/``.ckpt`` checkpoint as a diffusers folder."""
    from app.adapters.diffusers.single_file import convert_single_file as convert

    return convert(path, out_dir, config_dir)


def convert_gguf_file(path: str, out_dir: str, config_dir: str | None) -> str:
    """A language model's GGUF file as a transformers folder."""
    from app.adapters.transformers.registry import convert_gguf

    return convert_gguf(path, out_dir, config_dir)


def convert_vae_file(path: str, out_dir: str, config_dir: str | None) -> str:
    """An A1111-style single-file VAE as a diffusers autoencoder folder."""
    from app.adapters.diffusers.single_file import convert_vae_file as convert

    return convert(path, out_dir, config_dir)


def job_metrics(
    reader: JobReader, workers: Callable[[], int], registry: WorkerRegistry, heartbeat: float
) -> JobMetrics:
    """Prometheus metrics of this process's jobs, of the shared queue and of the live workers."""
    from app.adapters.metrics.prometheus import PrometheusMetrics

    return PrometheusMetrics(reader, workers, registry, heartbeat)


def model_catalog(settings: Settings) -> ModelCatalog:
    """The registry in ``<data dir>/models.json``: local folders and files, hub ids when a network exists."""
    from app.adapters.storage.catalog import JsonModelCatalog
    from app.adapters.storage.hub import download_from_hub

    return JsonModelCatalog(
        settings.data_dir,
        inspector=inspect_model,
        downloader=download_from_hub,
        converter=convert_single_file,
        default_model=settings.default_model,
        vae_converter=convert_vae_file,
        gguf_converter=convert_gguf_file,
    )


def test_catalog() -> ModelCatalog:
    """The test profile's one model, drawn by the pattern generator."""
    from app.adapters.memory.generation import InMemoryModelCatalog

    return InMemoryModelCatalog([ModelInfo(name="demo", path="memory://demo", source="memory://demo", default_size=64)])
