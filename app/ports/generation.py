"""Ports of the image-generation capability."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Protocol

from app.domain.generation import GenerationParams
from app.domain.jobs import ImageRef
from app.domain.models import ModelInfo, ModelKind
from app.domain.specs import ControlKind, ResizeMode


@dataclass(frozen=True)
class GeneratedImage:
    """One image as raw 8-bit RGB pixels (``width * height * 3`` bytes)."""

    width: int
    height: int
    rgb: bytes
    seed: int
    nsfw: bool | None = None
    sampler: str | None = None  # the A1111 name of the scheduler that ran, where it has one


class ProgressSink(Protocol):
    """Receives step progress from a running generation and says whether to stop."""

    def step(self, done: int, total: int) -> None:
        """Called after each denoising step; may raise ``JobCancelled`` to stop the run."""


@dataclass(frozen=True)
class RgbImage:
    """Raw 8-bit RGB pixels, for the ports that exchange pictures."""

    width: int
    height: int
    rgb: bytes


@dataclass(frozen=True)
class InputImage:
    """An uploaded image (init image, mask or control image), validated and stored."""

    id: str
    width: int
    height: int
    path: str


@dataclass(frozen=True)
class GenerationRequest:
    """Everything one run needs, resolved: the models by their registry entries and the
    uploaded inputs by local path (``init``, ``mask``, and ``control0``, ``control1``, ... per ControlNet unit)."""

    model: ModelInfo
    params: GenerationParams
    inputs: dict[str, str] = field(default_factory=dict)
    loras: tuple[tuple[ModelInfo, float], ...] = ()
    controlnets: tuple[ModelInfo, ...] = ()  # one per ControlNet unit of ``params.controls``, in order
    refiner: ModelInfo | None = None  # an SDXL refiner that runs the last steps (``params.refiner_switch``)
    vae: ModelInfo | None = None  # a registered VAE that replaces the model's own (``params.vae``)


class ImageGenerator(Protocol):
    """Turns resolved requests into images."""

    def generate(self, request: GenerationRequest, progress: ProgressSink) -> list[GeneratedImage]:
        """Run one generation: one image per seed of ``request.params.image_seeds()``."""

    def generate_batch(
        self, requests: list[GenerationRequest], progress: list[ProgressSink]
    ) -> list[list[GeneratedImage] | Exception]:
        """Run requests that share a batching key together; each request's images are those it
        would get alone. A request whose sink raises ``JobCancelled`` gets that exception as its
        result while the others go on; the whole call stops when every request is cancelled."""


class DepthEstimator(Protocol):
    """Estimates a depth map (near = bright) for depth ControlNets."""

    def estimate(self, image: RgbImage) -> RgbImage: ...


class ControlPreprocessor(Protocol):
    """Draws the conditioning image a ControlNet would see for a control image, so it can be shown first."""

    def preprocess(
        self, image: RgbImage, kind: ControlKind, width: int, height: int, resize_mode: ResizeMode
    ) -> RgbImage:
        """``image`` fitted to ``width``×``height`` by ``resize_mode``, then run through the ``kind``
        preprocessor (``none``: the fitted image) exactly as a ControlNet generation does."""


class ImageStore(Protocol):
    """Keeps result images; ids are safe to put in URLs and never reach outside the store."""

    def save(self, job_id: str, index: int, image: GeneratedImage, parameters: str) -> ImageRef:
        """Store a PNG carrying ``parameters`` as its text chunk and return its reference."""

    def path(self, image_id: str) -> str:
        """Local file path of a stored image; raises ``ImageNotFound``."""

    def read(self, image_id: str) -> RgbImage:
        """The pixels of a stored image; raises ``ImageNotFound``."""

    def delete_job(self, job_id: str) -> None:
        """Remove every image a job stored (used when a job is retried)."""

    def put_input(self, data: bytes, owner: str = "local") -> InputImage:
        """Validate (decode limits) and keep an uploaded image for ``owner``; raises ``InvalidImage``."""

    def input_image(self, input_id: str, owner: str | None = None) -> InputImage:
        """An uploaded image; raises ``ImageNotFound``, also when ``owner`` is given and did not upload it."""


class ModelCatalog(Protocol):
    """Base models, LoRAs, ControlNets and VAEs known by name (one namespace for all kinds)."""

    def get(self, name: str, kind: ModelKind = ModelKind.BASE) -> ModelInfo:
        """Raises ``UnknownModel``, also when the name is registered as another kind."""

    def list(self, kind: ModelKind | None = None) -> list[ModelInfo]: ...

    def add(
        self,
        name: str,
        source: str,
        *,
        kind: ModelKind = ModelKind.BASE,
        replace: bool = False,
        config: str | None = None,
    ) -> ModelInfo:
        """Register a local folder or file, or a hub id (downloaded when a network exists). A single-file
        ``.safetensors``/``.ckpt`` base model is converted with the configs of ``config``: a registered
        base model or a diffusers folder of the same architecture (default: the default model)."""

    def remove(self, name: str) -> ModelInfo:
        """Unregister ``name`` (any kind) and delete the folder a conversion made for it; the user's own folders
        and files, and the hub cache, stay. Raises ``UnknownModel``."""


JobHandler = Callable[[str, Callable[[], bool]], None]
"""What an executor runs for a job id: ``handler(job_id, cancel_requested)``."""
BatchHandler = Callable[[list[str], Callable[[str], bool]], None]
"""What an executor runs for jobs batched together: ``handler(job_ids, cancel_requested_of)``."""


class JobExecutor(Protocol):
    """Runs jobs outside the request. The in-process adapter queues job ids on threads and its handlers claim each
    job in the database; an executor that ``pulls`` claims jobs from the database's queue itself (any process on
    any host may have claimed a job first) and hands its handlers jobs already running under this process."""

    pulls: bool

    def start(self, handler: JobHandler, batch_handler: BatchHandler | None = None) -> None: ...

    def enqueue(self, job_id: str, batch_key: str | None = None) -> None:
        """Queue a job; jobs with equal non-empty ``batch_key`` may run as one batch."""

    def enqueue_many(self, jobs: Sequence[tuple[str, str | None]]) -> None:
        """Queue (job id, batch key) pairs at once: no worker sees some of them without the others."""

    def cancel(self, job_id: str) -> None:
        """Signal a running job to stop at its next step (best effort, in addition to the database flag)."""

    def wait(self, job_id: str, timeout: float | None = None) -> bool:
        """Block until the job's handler has returned; False on timeout."""

    def shutdown(self, wait: bool = True) -> None: ...

    def live_workers(self) -> int:
        """Workers able to take a job now (for readiness)."""


class ImageFetcher(Protocol):
    """Downloads an input image given by URL, within the deployment's allow-list and limits."""

    def fetch(self, url: str) -> bytes:
        """The raw bytes at ``url`` (not decoded). Raises ``InvalidParameters`` for a URL that is not
        allowed (fetching off, scheme, host, private address) and ``InvalidImage`` for a download that
        fails or exceeds the size or time limits."""


class ImageCodec(Protocol):
    """Encoded images (PNG, JPEG, WebP, ...) and their text forms, to and from ``RgbImage``."""

    def decode(self, data: bytes) -> RgbImage:
        """Raises ``InvalidImage`` when ``data`` is no image (or one past the size limits)."""

    def encode_png(self, image: RgbImage) -> bytes: ...

    def from_base64(self, text: str) -> bytes:
        """The bytes of base64 text or a data URL; raises ``InvalidImage`` when it is neither."""


class DemoModels(Protocol):
    """The offline demo models: the trained demo-world model shipped with the package, and builders of
    random-init pipelines, ControlNets and LoRAs of its family (the floor it is measured against)."""

    def shipped(self) -> str:
        """The folder of the shipped demo-world model."""

    def build_pipeline(self, out_dir: str, seed: int) -> str: ...

    def build_controlnet(self, base_dir: str, out_dir: str, seed: int) -> str: ...

    def build_lora(self, base_dir: str, out_dir: str, seed: int) -> str: ...
