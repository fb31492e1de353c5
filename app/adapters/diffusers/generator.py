"""Text-to-image with diffusers' ``StableDiffusionPipeline``: one loaded pipeline per model, fresh state per request."""

from __future__ import annotations

import contextlib
import gc
import importlib.util
import json
import logging
import math
import threading
from collections import OrderedDict
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import diffusers
import numpy as np
import torch

from app.adapters.diffusers import hires, runtime
from app.adapters.diffusers.call_arguments import (
    OWN_ENCODING,
    SDXL_ENCODING,
    padding_group,
    size_arguments,
    text_arguments,
)
from app.adapters.diffusers.families import CONTROLNETS
from app.adapters.diffusers.layout import inspect_model, vae_folder
from app.adapters.diffusers.lora import LoraManager
from app.adapters.diffusers.modes import loading_class, mode_arguments, parameters, pipeline_for
from app.adapters.diffusers.processors import ImageOnlyQwen2VLProcessor
from app.adapters.diffusers.refiner import run_with_refiner
from app.adapters.diffusers.runtime import RuntimeOptions
from app.adapters.diffusers.sampler_names import sampler_of
from app.adapters.diffusers.schedulers import make_scheduler
from app.adapters.imaging.control import LuminanceDepthEstimator
from app.domain.errors import GenerationFailed, InvalidParameters, JobCancelled, ModelUnavailable
from app.domain.families import ONE_CONTROLNET_FAMILIES, Family
from app.domain.generation import GenerationParams
from app.domain.specs import Mode
from app.ports.generation import DepthEstimator, GeneratedImage, GenerationRequest, ImageGenerator, ProgressSink

_HUGE_MAX_LENGTH = 10_000
# diffusers is untyped for a strict mypy (lazy module, decorated constructors): pipelines are handled as Any.
Pipeline = Any
_lib: Any = diffusers

log = logging.getLogger(__name__)


@dataclass
class _Loaded:
    """A model's slot: its pipeline (loaded lazily) and the lock every use of it holds."""

    lock: threading.Lock = field(default_factory=threading.Lock)
    pipe: Pipeline | None = None
    loras: LoraManager = field(default_factory=LoraManager)
    bytes: int = 0  # parameters and buffers of the loaded pipeline
    family: Family = Family.SD


def quiet_libraries() -> None:
    """Silence diffusers/transformers warnings and progress bars (harmless noise in a server's log)."""
    import diffusers.utils.logging as diffusers_logging
    import transformers.utils.logging as transformers_logging

    for module in (diffusers_logging, transformers_logging):
        module.set_verbosity_error()
        module.disable_progress_bar()


class DiffusersImageGenerator(ImageGenerator):
    """Runs the pipelines of every family in ``app.domain.families`` from local diffusers folders.

    A model is loaded once, on first use, and kept until :meth:`unload_all`. Runs on the same model are
    serialized by that model's lock; each run gets its own scheduler and seeded generators.
    """

    def __init__(
        self,
        device: str = "cpu",
        torch_threads: int | None = None,
        depth: DepthEstimator | None = None,
        safety_checker: bool = True,
        cache_bytes: int = 8 * 2**30,
        options: RuntimeOptions | None = None,
    ) -> None:
        self._options = options or RuntimeOptions(device=device)
        self._device = self._options.device
        self._models: OrderedDict[str, _Loaded] = OrderedDict()  # least recently used first
        self._cache_bytes = cache_bytes
        self.loads = 0  # pipelines loaded from disk so far (a reload after eviction counts again)
        self._controlnets: dict[str, Any] = {}
        self._vaes: dict[tuple[str, str], Any] = {}  # (path, dtype) -> a registered VAE, loaded once
        self._depth = depth or LuminanceDepthEstimator()
        self._safety_checker = safety_checker  # off: a model's bundled checker is skipped, is_nsfw is None
        self._models_lock = threading.Lock()
        if torch_threads is not None:
            torch.set_num_threads(torch_threads)
        quiet_libraries()

    def generate(self, request: GenerationRequest, progress: ProgressSink) -> list[GeneratedImage]:
        [outcome] = self._locked_run([request], [progress])
        if isinstance(outcome, Exception):
            raise outcome
        return outcome

    def generate_batch(
        self, requests: list[GenerationRequest], progress: list[ProgressSink]
    ) -> list[list[GeneratedImage] | Exception]:
        """Requests of one batching key (text-to-image, same model, size, steps, scheduler, guidance, LoRAs).
        They run in groups whose prompts pad to the same length (:func:`padding_group`), so that no
        prompt is padded beyond what it gets alone."""
        if len(requests) != len(progress):
            raise ValueError("one progress sink per request")
        slot = self._slot(requests[0].model.path)
        with slot.lock:
            base = self._loaded(slot, requests[0].model.path)
            groups: dict[int, list[int]] = {}
            for k, request in enumerate(requests):
                groups.setdefault(padding_group(slot.family, base, request.params), []).append(k)
        results: list[list[GeneratedImage] | Exception] = [GenerationFailed()] * len(requests)
        for members in groups.values():
            outcomes = self._locked_run([requests[k] for k in members], [progress[k] for k in members])
            for k, outcome in zip(members, outcomes, strict=True):
                results[k] = outcome
        return results

    def _locked_run(
        self, requests: list[GenerationRequest], progress: list[ProgressSink]
    ) -> list[list[GeneratedImage] | Exception]:
        for request in requests:
            if request.params.width is None or request.params.height is None:
                raise InvalidParameters("The image size is not resolved yet.", code="unresolved_size", field="width")
        first = requests[0]
        slot = self._slot(first.model.path)
        with slot.lock:
            base = self._loaded(slot, first.model.path)
            controlnet = self._controlnet_for(first)
            vae = self._vae(first.vae.path, slot.family) if first.vae is not None else None
            # Requests of one call share their LoRA set (it is part of the batching key). Adapters stay
            # loaded unfused and are switched per call: exact base output afterwards, and a cheap switch.
            base_loras = [(info.name, info.path, weight) for info, weight in first.loras]
            slot.loras.activate(base, base_loras)
            with self._refiner(first) as refiner:
                outcomes = self._run(base, slot.family, requests, controlnet, progress, refiner, vae)
        if any(isinstance(o, GenerationFailed) and o.code == "out_of_memory" for o in outcomes):
            # The device is full: make room for the next job by dropping every other idle pipeline.
            self._evict(keep=slot, budget=0)
        return outcomes

    def _loaded(self, slot: _Loaded, path: str) -> Pipeline:
        """The slot's pipeline, loaded on first use (called with the slot's lock held)."""
        if slot.pipe is None:
            slot.pipe, slot.family, where = self._load(path)
            slot.bytes = _pipeline_bytes(slot.pipe, offloaded=where != "device")
            self.loads += 1
            self._evict(keep=slot)
        return slot.pipe

    def adopt(self, key: str, pipe: Pipeline, family: Family) -> None:
        """Serve a pipeline already in memory under the model path ``key`` (a host application's own, or a
        benchmark's random-init full-size model): requests for ``key`` run on it, as on a loaded folder."""
        slot = self._slot(key)
        with slot.lock:
            pipe.set_progress_bar_config(disable=True)
            slot.pipe, slot.family, slot.bytes = pipe, family, _pipeline_bytes(pipe)
            self._evict(keep=slot)

    @contextlib.contextmanager
    def _refiner(self, request: GenerationRequest) -> Iterator[tuple[Pipeline, Family] | None]:
        """The request's refiner pipeline and family, loaded on first use, its lock held while the run uses it.
        Always taken after the base model's lock: a refiner is never the base of a two-stage run."""
        if request.refiner is None:
            yield None
            return
        slot = self._slot(request.refiner.path)
        with slot.lock:
            yield self._loaded(slot, request.refiner.path), slot.family

    def unload_all(self) -> None:
        """Drop every loaded pipeline (waiting for runs in progress) and free their memory."""
        with self._models_lock:
            slots = list(self._models.values())
            self._models.clear()
        for slot in slots:
            with slot.lock:
                slot.pipe = None
        gc.collect()
        if torch.cuda.is_available():
            torch.cuda.empty_cache()

    def loaded_models(self) -> list[tuple[str, int]]:
        """Paths and sizes in bytes of the pipelines in memory, least recently used first."""
        with self._models_lock:
            return [(path, slot.bytes) for path, slot in self._models.items() if slot.pipe is not None]

    def _slot(self, path: str) -> _Loaded:
        with self._models_lock:
            slot = self._models.get(path)
            if slot is None:
                slot = self._models[path] = _Loaded()
            self._models.move_to_end(path)
            return slot

    def _evict(self, keep: _Loaded, budget: int | None = None) -> None:
        """Unload least recently used pipelines until the loaded ones fit the cache budget (or ``budget``).
        A pipeline in use (its lock held) is skipped; ``keep`` always stays, even alone over budget."""
        limit = self._cache_bytes if budget is None else budget
        with self._models_lock:
            total = sum(slot.bytes for slot in self._models.values() if slot.pipe is not None)
            for path, slot in list(self._models.items()):
                if total <= limit:
                    break
                if slot is keep or slot.pipe is None or not slot.lock.acquire(blocking=False):
                    continue
                try:
                    total -= slot.bytes
                    slot.pipe, slot.bytes = None, 0
                    del self._models[path]
                finally:
                    slot.lock.release()
        gc.collect()
        if self._device.startswith("cuda"):
            torch.cuda.empty_cache()

    def _controlnet_for(self, request: GenerationRequest) -> Any:
        """The request's ControlNet, or its units' together in the family's multi-ControlNet class (Qwen-Image's
        runs its one union ControlNet over every control image). None without ControlNet units."""
        units = request.controlnets
        if not units:
            return None
        family = request.model.family
        if len(units) == 1:
            return self._controlnet(units[0].path, family)
        if family in ONE_CONTROLNET_FAMILIES:  # one union ControlNet (the same in every unit, checked at submission)
            units = units[:1]
        models = [self._controlnet(info.path, family) for info in units]
        return getattr(_lib, CONTROLNETS[family][1])(models)

    def _controlnet(self, path: str, family: Family) -> Any:
        """A registered ControlNet, loaded once and kept (shared by every base model of its family)."""
        with self._models_lock:
            cached = self._controlnets.get(path)
        if cached is not None:
            return cached
        try:
            dtype = runtime.dtype_for(family, self._options)
            with open(Path(path) / "config.json", encoding="utf-8") as handle:
                name = json.load(handle)["_class_name"]
            if name not in {single for single, _ in CONTROLNETS.values()}:
                raise ValueError(f"{name} is not a ControlNet class")
            model = getattr(_lib, name).from_pretrained(path, local_files_only=True, dtype=dtype)
            model = model.to(self._device).eval()
        except Exception as e:
            raise ModelUnavailable(f"Cannot load the ControlNet at {path}: {str(e)[:300]}") from e
        with self._models_lock:
            return self._controlnets.setdefault(path, model)

    def _vae(self, path: str, family: Family) -> Any:
        """A registered VAE at the dtype of the family it serves, loaded once and kept."""
        dtype = runtime.dtype_for(family, self._options)
        key = (path, str(dtype))
        with self._models_lock:
            cached = self._vaes.get(key)
        if cached is not None:
            return cached
        try:
            folder = vae_folder(path)
            with open(folder / "config.json", encoding="utf-8") as handle:
                name = json.load(handle)["_class_name"]
            model = getattr(_lib, name).from_pretrained(str(folder), local_files_only=True, dtype=dtype)
            model = model.to(self._device).eval()
            if self._options.vae_slicing and hasattr(model, "enable_slicing"):
                model.enable_slicing()
        except Exception as e:
            raise ModelUnavailable(f"Cannot load the VAE at {path}: {str(e)[:300]}") from e
        with self._models_lock:
            return self._vaes.setdefault(key, model)

    def _load(self, path: str) -> tuple[Pipeline, Family, str]:
        """The pipeline of the folder, its family and where it was placed (``runtime.placement``)."""
        # A clear ModelUnavailable for a missing or non-diffusers folder, or an unknown pipeline class.
        family = Family(inspect_model(path)["family"])
        if family is Family.KOLORS and importlib.util.find_spec("sentencepiece") is None:
            raise ModelUnavailable(
                "Kolors models need the sentencepiece package (their ChatGLM tokenizer): pip install 'atelier[kolors]'."
            )
        try:
            parts: dict[str, Any] = {}
            if family is Family.QWEN_IMAGE_EDIT:  # transformers' own processor needs torchvision for its video half
                parts["processor"] = ImageOnlyQwen2VLProcessor.from_pretrained(path, subfolder="processor")
            dtype = runtime.dtype_for(family, self._options)
            where = runtime.placement(self._options, runtime.weights_bytes(path, dtype), self._cache_bytes)
            pipe = loading_class(family).from_pretrained(path, local_files_only=True, dtype=dtype, **parts)
            pipe = runtime.place(pipe, where, self._device)
            runtime.prepare(pipe, self._options)
        except Exception as e:
            raise ModelUnavailable(f"Cannot load the diffusers model at {path}: {str(e)[:300]}") from e
        if family in OWN_ENCODING:
            tokenizer = pipe.tokenizer
            limit = getattr(tokenizer, "model_max_length", None)
            is_bert = type(tokenizer).__name__.startswith("Bert")
            if is_bert and (not isinstance(limit, int) or limit > _HUGE_MAX_LENGTH):
                # Old PAI folders may not record the 32-token context: the pipeline would pad to ~1e30.
                tokenizer.model_max_length = pipe.text_encoder.config.max_position_embeddings
        pipe.set_progress_bar_config(disable=True)
        return pipe, family, where

    def _run(
        self,
        base: Pipeline,
        family: Family,
        requests: list[GenerationRequest],
        controlnet: Any,
        progress: list[ProgressSink],
        refiner: tuple[Pipeline, Family] | None = None,
        vae: Any = None,
    ) -> list[list[GeneratedImage] | Exception]:
        """One pipeline call for requests that share everything but prompts, seeds and image counts.

        Each image has its own seeded generator and its prompt's own embeddings, so a request's images
        are those it gets alone. A request whose sink raises ``JobCancelled`` is dropped from the results
        (its images are computed to the end of the call but never returned); when every request is
        cancelled, the call stops at once.
        """
        # A per-request pipeline sharing the weights, with a fresh scheduler: a constructor call over
        # base.components, several times cheaper than from_pipe (docs/benchmarks.md). from_pipe also walks every
        # module with .to(dtype), and its dtype defaults to float32, which would cast a shared fp16 pipeline in place.
        params = requests[0].params
        assert params.mode is not None
        steps = effective_steps(params)
        seeds = [r.params.image_seeds() for r in requests]
        outcomes: list[list[GeneratedImage] | Exception | None] = [None] * len(requests)
        hires_steps = hires.second_pass_steps(params.hires, steps) if params.hires else None
        # Progress over both passes with hires fix: the first reports from 0, the second from ``offset``.
        phase = {"offset": 0, "total": steps + hires_steps[1] if hires_steps else 0}

        def report(done: int, total: int) -> None:
            if phase["total"]:
                done, total = min(phase["offset"] + done, phase["total"]), phase["total"]
            for k, sink in enumerate(progress):
                if outcomes[k] is None:
                    try:
                        sink.step(done, total)
                    except JobCancelled as cancelled:
                        outcomes[k] = cancelled
            if all(outcome is not None for outcome in outcomes):
                raise JobCancelled()  # nobody is waiting for this call any more

        def on_step_end(pipe: Pipeline, i: int, t: Any, kwargs: dict[str, Any]) -> dict[str, Any]:
            report(i + 1, getattr(pipe, "num_timesteps", None) or steps)
            return kwargs

        def on_step(i: int, t: Any, latents: Any) -> None:  # the older callback (PixArt)
            report(i + 1, steps)

        prompts = [r.params.prompt for r, s in zip(requests, seeds, strict=True) for _ in s]
        negatives = [r.params.negative_prompt for r, s in zip(requests, seeds, strict=True) for _ in s]
        flat_seeds = [seed for s in seeds for seed in s]
        generators = [torch.Generator(self._device).manual_seed(seed) for seed in flat_seeds]
        try:
            scheduler = make_scheduler(params.scheduler, base.scheduler, flat_seeds)
            components = base.components
            if not self._safety_checker:
                components = {**components, "safety_checker": None}
            if vae is not None:  # the request's VAE encodes and decodes in place of the model's own
                components = {**components, "vae": vae}
            view = pipeline_for(family, params.mode, components, scheduler, controlnet, dict(base.config))
            view.set_progress_bar_config(disable=True)
            runtime.tile_for(view, params.width or 0, params.height or 0, self._options)
            if "callback_on_step_end" in parameters(type(view), "__call__"):
                callbacks: dict[str, Any] = {"callback_on_step_end": on_step_end}
            else:
                callbacks = {"callback": on_step, "callback_steps": 1}
            with torch.inference_mode():
                text = text_arguments(base, family, view, prompts, negatives, params, self._device)
                arguments = {
                    **text,
                    **size_arguments(view, params.width, params.height),
                    "num_inference_steps": steps,
                    "num_images_per_prompt": 1,
                    "generator": generators,
                    "output_type": hires.first_pass_output(params.hires),
                    **callbacks,
                    **mode_arguments(requests[0], self._depth),
                }
                if refiner is None:
                    output = view(**arguments)
                else:  # the SDXL refiner runs the last steps on the base's latents
                    runtime.tile_for(refiner[0], params.width or 0, params.height or 0, self._options)
                    output = run_with_refiner(
                        view,
                        *refiner,
                        arguments,
                        switch=params.refiner_switch,
                        scheduler=params.scheduler,
                        report=report,
                        seeds=flat_seeds,
                        refiner_text=text_arguments(
                            refiner[0], refiner[1], None, prompts, negatives, params, self._device
                        ),
                        vae=vae,
                    )
                if params.hires is not None and hires_steps is not None:
                    phase["offset"] = steps
                    width, height = params.hires.target(params.width or 0, params.height or 0)
                    scheduler = make_scheduler(params.scheduler, base.scheduler, flat_seeds)
                    second = pipeline_for(family, Mode.IMG2IMG, components, scheduler, None, dict(base.config))
                    second.set_progress_bar_config(disable=True)
                    runtime.tile_for(second, width, height, self._options)
                    if family not in OWN_ENCODING + SDXL_ENCODING:  # some pipelines rewrite the prompt lists
                        text = text_arguments(base, family, second, prompts, negatives, params, self._device)
                    output = second(
                        **text,
                        **size_arguments(second, width, height),
                        image=hires.enlarge(output.images, params.hires, width, height, hires.vae_factor(base)),
                        strength=params.hires.denoise,
                        num_inference_steps=hires_steps[0],
                        num_images_per_prompt=1,
                        generator=generators,
                        output_type="np",
                        **callbacks,
                    )
        except JobCancelled as cancelled:
            return [outcome or cancelled for outcome in outcomes]
        except (torch.OutOfMemoryError, RuntimeError, ValueError) as e:
            if self._device.startswith("cuda"):
                torch.cuda.empty_cache()
            log.error("image generation failed", exc_info=e)
            out_of_memory = isinstance(e, torch.OutOfMemoryError)
            failed = GenerationFailed(
                "The model ran out of memory for this request; try a smaller size or fewer images."
                if out_of_memory
                else "Image generation failed in the model backend; the server log has the details.",
                code="out_of_memory" if out_of_memory else None,
            )
            failed.__cause__ = e
            return [failed] * len(requests)
        sampler = sampler_of(type(scheduler).__name__, dict(getattr(scheduler, "config", {})))
        nsfw = getattr(output, "nsfw_content_detected", None)
        images = _to_images(np.asarray(output.images), nsfw, flat_seeds, sampler)
        results: list[list[GeneratedImage] | Exception] = []
        for k, s in enumerate(seeds):
            mine, images = images[: len(s)], images[len(s) :]
            results.append(outcomes[k] or mine)
        return results


def _pipeline_bytes(pipe: Pipeline, offloaded: bool = False) -> int:
    """Parameter and buffer bytes at the loaded dtype the pipeline holds on its device: all of them, or with
    CPU offload the largest component's (one component is on the device at a time)."""
    sizes = [
        sum(t.numel() * t.element_size() for t in (*component.parameters(), *component.buffers()))
        for component in pipe.components.values()
        if isinstance(component, torch.nn.Module)
    ]
    return max(sizes, default=0) if offloaded else sum(sizes)


def effective_steps(params: GenerationParams) -> int:
    """Denoising with strength s runs int(steps * s) steps (diffusers, A1111); make that at least one."""
    if params.mode in (Mode.IMG2IMG, Mode.INPAINT, Mode.OUTPAINT) and int(params.step_count * params.strength) < 1:
        return math.ceil(1 / params.strength)
    return params.step_count


def _to_images(
    images: np.ndarray, nsfw: list[bool] | None, seeds: list[int], sampler: str | None = None
) -> list[GeneratedImage]:
    pixels = (np.clip(images, 0.0, 1.0) * 255).round().astype(np.uint8)
    return [
        GeneratedImage(
            width=int(image.shape[1]),
            height=int(image.shape[0]),
            rgb=np.ascontiguousarray(image[..., :3]).tobytes(),
            seed=seed,
            nsfw=None if nsfw is None else bool(nsfw[i]),
            sampler=sampler,
        )
        for i, (image, seed) in enumerate(zip(pixels, seeds, strict=True))
    ]
