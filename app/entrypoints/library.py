"""The embedded facade: what a host application, the CLI and the HTTP API call.

    from app.entrypoints.library import Atelier

    with Atelier.open(data_dir="/srv/atelier") as atelier:
        job = atelier.generate("一只猫在草地上", steps=20, seed=42)
        print(job.status, [atelier.image_path(i.id) for i in job.images])

No globals: each ``Atelier`` owns its container, database engine and worker threads.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from app.container import (
    Container,
    build_demo,
    build_demo_controlnet,
    build_demo_lora,
    decode_base64,
    decode_rgb,
    encode_png,
    train_demo,
    trained_demo_path,
    upgrade_schema,
)
from app.domain.control_maps import ControlMapSpec
from app.domain.errors import DatabaseUnavailable, ImageNotFound, InvalidParameters, JobNotFound, ModelUnavailable
from app.domain.generation import GenerationParams
from app.domain.jobs import GenerationJob, JobStatus, job_id_of
from app.domain.models import ModelInfo, ModelKind
from app.domain.scenes import SceneReading
from app.entrypoints.edits import Edits
from app.entrypoints.knowledge import Knowledge
from app.entrypoints.prompts import Prompts
from app.ports.generation import InputImage, ModelCatalog
from app.ports.persistence import JobPage, JobReader
from app.settings import Settings, load_settings


class Atelier:
    """One Atelier instance: jobs, models and images over one database and data dir."""

    def __init__(self, settings: Settings, container: Container | None = None) -> None:
        self.settings = settings
        self.container = container or Container(settings=settings)
        self._schema_ready = settings.profile == "test"
        self._schema_lock = threading.Lock()
        self._worker_started = False
        self.knowledge = Knowledge(self)
        self.edits = Edits(self)
        self.prompts = Prompts(self)

    @classmethod
    def open(
        cls,
        database_url: str | None = None,
        data_dir: str | None = None,
        *,
        profile: str | None = None,
        workers: int | None = None,
        start_worker: bool = True,
        recover: bool = True,
        **settings: Any,
    ) -> Atelier:
        """Build an instance, migrate its database and start its workers.

        ``recover`` re-queues jobs a dead process left behind; pass False in a process
        that shares the database with a running server and should run only its own jobs.
        """
        loaded = load_settings(
            database_url=database_url, data_dir=data_dir, profile=profile, workers=workers, **settings
        )
        atelier = cls(loaded)
        try:
            atelier.migrate()
        except DatabaseUnavailable:
            if not start_worker:
                raise
        if start_worker:
            atelier.start_worker(recover=recover)
        return atelier

    # -- lifecycle -------------------------------------------------------------------
    def migrate(self) -> None:
        """Bring the database schema to the newest revision (idempotent)."""
        with self._schema_lock:
            if self._schema_ready:
                return
            upgrade_schema(self.settings.resolved_database_url)
            self._schema_ready = True

    def start_worker(self, recover: bool = True) -> None:
        if self._worker_started:
            return
        executor = self.container.executor()
        run = self.container.run_generation  # built per job, so the model backend loads on first use
        executor.start(
            lambda job_id, cancelled: run()(job_id, cancelled),
            lambda job_ids, cancelled_of: run().run_batch(job_ids, cancelled_of),
        )
        self._worker_started = True
        if recover:
            try:
                self.migrate()
                for job_id in self.container.recover_jobs()():
                    executor.enqueue(job_id)
            except DatabaseUnavailable:
                pass  # nothing to recover from a database we cannot reach; requests report 503

    def close(self) -> None:
        self.container.executor().shutdown(wait=True)
        self.container.shutdown_resources()  # unloads pipelines and closes the engine, if they were used

    def __enter__(self) -> Atelier:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- generation ------------------------------------------------------------------
    def params(self, prompt: str, *, owner: str = "local", **values: Any) -> GenerationParams:
        """Validated parameters; the model defaults to the deployment's default model. Specs may be
        given plainly: ``loras=["poem:0.7"]``, ``outpaint="64,64,0,0"``, ``control={"image": id}``.
        Images given inline (base64, URLs) are stored as ``owner``'s uploads."""
        values = self._store_inline_images({k: v for k, v in values.items() if v is not None}, owner)
        values.setdefault("model", self.settings.default_model)
        unknown = set(values) - set(GenerationParams.__dataclass_fields__)
        if unknown:
            raise InvalidParameters(f"Unknown parameters: {', '.join(sorted(unknown))}.", code="unknown_parameter")
        return GenerationParams.from_dict({"prompt": prompt, **values})

    def submit(self, prompt: str, *, owner: str = "local", **params: Any) -> GenerationJob:
        """Queue a job; it is in the database when this returns."""
        self.migrate()
        return self.container.submit_generation()(owner, self.params(prompt, owner=owner, **params))

    def generate(
        self,
        prompt: str,
        *,
        owner: str = "local",
        timeout: float | None = None,
        on_progress: Callable[[GenerationJob], None] | None = None,
        **params: Any,
    ) -> GenerationJob:
        """Submit and wait for the job to finish; returns the finished job."""
        job = self.submit(prompt, owner=owner, **params)
        return self.wait(job.id, timeout=timeout, on_progress=on_progress)

    def wait(
        self, job_id: str, timeout: float | None = None, on_progress: Callable[[GenerationJob], None] | None = None
    ) -> GenerationJob:
        deadline = None if timeout is None else time.monotonic() + timeout
        executor = self.container.executor()
        while True:
            ran_here = executor.wait(job_id, timeout=0.1)  # returns at once when this process ran it
            job = self.job(job_id)
            if on_progress is not None:
                on_progress(job)
            if job.status.finished or (deadline is not None and time.monotonic() > deadline):
                return job
            if ran_here:
                time.sleep(0.1)  # queued or running in another process: poll the database

    def cancel(self, job_id: str, owner: str | None = None) -> GenerationJob:
        self.migrate()
        return self.container.cancel_job()(job_id, owner)

    # -- queries ---------------------------------------------------------------------
    def job(self, job_id: str, owner: str | None = None) -> GenerationJob:
        self.migrate()
        return self._reader.get(job_id, owner)

    def jobs(
        self, owner: str | None = None, status: JobStatus | None = None, limit: int = 20, offset: int = 0
    ) -> JobPage:
        self.migrate()
        return self._reader.list(owner=owner, status=status, limit=limit, offset=offset)

    def image_path(self, image_id: str, owner: str | None = None) -> str:
        """Local path of a result image; ``ImageNotFound``/``JobNotFound`` for another owner's image."""
        job = self.job(job_id_of(image_id), owner)
        if image_id not in {ref.id for ref in job.images}:
            raise JobNotFound(f"Job {job.id} has no image {image_id}.")
        return self.container.images().path(image_id)

    def read_scene(self, image: str | bytes, caption: str | None = None, owner: str | None = None) -> SceneReading:
        """What a demo-world image shows, read by the OpenCV checker (shapes, colours, positions, sizes);
        with ``caption``, its content-integrity score against the caption. ``image``: a file path, a
        result image id, or encoded image bytes. ``InvalidParameters`` when the caption names no coloured
        shape, ``InvalidImage`` for bytes that are no image."""
        if isinstance(image, str):
            path = image if Path(image).is_file() else self.image_path(image, owner)
            try:
                image = Path(path).read_bytes()
            except OSError as e:
                raise ImageNotFound("Cannot read the image.", detail=str(e)) from e
        reading: SceneReading = self.container.read_scene()(decode_rgb(image), caption)
        return reading

    def control_map(
        self,
        image: str | bytes,
        kind: str = "canny",
        width: int | None = None,
        height: int | None = None,
        resize_mode: str = "stretch",
        owner: str | None = None,
    ) -> bytes:
        """The control map (PNG) a ControlNet job with these values would condition on, to show before
        generating: the image fitted to the size by ``resize_mode`` (stretch, crop, pad), then ``kind``'s
        preprocessor (canny edges, depth map, or none: the fitted image). An open side follows the image,
        rounded down to a multiple of 8, as in a job. ``image``: an upload id, a result image id, encoded
        image bytes, base64 / a data URL, or an http(s) URL where fetching is allowed. ``InvalidParameters``
        for a bad kind or size (checked before the image is read), ``ImageNotFound`` for an unknown upload or
        image id, ``InvalidImage`` for data that is no image."""
        spec = ControlMapSpec.parse(kind, width, height, resize_mode)
        drawn = self.container.preview_control_map()(decode_rgb(self._image_bytes(image, owner)), spec)
        return encode_png(drawn)

    def _image_bytes(self, image: str | bytes, owner: str | None) -> bytes:
        """The encoded bytes of an image given as bytes, an upload id, a result image id, base64 or a URL."""
        if isinstance(image, bytes):
            return image
        if image.startswith("upload-"):
            path = self.container.images().input_image(image, owner).path
        elif image[:8].lower().startswith(("http://", "https://")):
            data: bytes = self.container.fetcher().fetch(image)
            return data
        else:
            try:
                job_id_of(image)
            except ImageNotFound:
                return decode_base64(image)
            path = self.image_path(image, owner)
        try:
            return Path(path).read_bytes()
        except OSError as e:
            raise ImageNotFound(f"Cannot read the image {image}.") from e

    def readiness(self) -> dict[str, Any]:
        """Whether this instance can take jobs now: the database answers and takes writes, and a worker
        is alive (in a process that runs jobs). ``ready`` is False otherwise, with the reason."""
        checks: dict[str, Any] = {"database": "ok", "workers": self.container.executor().live_workers()}
        try:
            self.migrate()
            self._reader.ping(write=True)
        except DatabaseUnavailable:
            checks["database"] = "unavailable"
        ready = checks["database"] == "ok" and (checks["workers"] > 0 or not self._worker_started)
        return {"ready": ready, **checks, "profile": self.settings.profile}

    def health(self) -> dict[str, str]:
        """Raises ``DatabaseUnavailable`` when the database cannot be reached."""
        self.migrate()
        self._reader.ping()
        return {"status": "ok", "database": "ok", "profile": self.settings.profile}

    # -- models ----------------------------------------------------------------------
    def models(self, kind: ModelKind | str | None = None) -> list[ModelInfo]:
        return self._catalog.list(ModelKind(kind) if kind else None)

    def model(self, name: str) -> ModelInfo:
        return self._catalog.get(name)

    def add_model(
        self,
        name: str,
        source: str,
        replace: bool = False,
        kind: ModelKind | str = ModelKind.BASE,
        config: str | None = None,
    ) -> ModelInfo:
        """Register a local folder or file (or a hub id, when a network exists) as a base model, LoRA or ControlNet.
        A single-file ``.safetensors``/``.ckpt`` base model is converted once, with the configs and tokenizer of
        ``config`` (a registered base model or a diffusers folder of the same architecture; default: the default
        model)."""
        return self._catalog.add(name, source, kind=ModelKind(kind), replace=replace, config=config)

    def upload(self, data: bytes | str, owner: str = "local") -> InputImage:
        """Keep an input image (init image, mask, control image) given as bytes, or base64 / a data URL / an
        http(s) URL (fetched when the deployment allows it) as text; its id goes into ``init_image``,
        ``mask_image`` or ``control["image"]`` of ``owner``'s jobs (another owner cannot use it)."""
        if isinstance(data, str) and data[:8].lower().startswith(("http://", "https://")):
            data = self.container.fetcher().fetch(data)
        if isinstance(data, str):
            data = decode_base64(data)
        return self.container.images().put_input(data, owner)

    def _store_inline_images(self, values: dict[str, Any], owner: str) -> dict[str, Any]:
        """Image fields may carry base64 or an http(s) URL instead of an upload id: store those first
        (``upload`` fetches a URL)."""

        def ref(value: Any) -> Any:
            inline = isinstance(value, str) and not value.startswith("upload-")
            return self.upload(value, owner).id if inline else value

        values = {**values, **{k: ref(values[k]) for k in ("init_image", "mask_image") if k in values}}
        if isinstance(values.get("control"), dict) and "image" in values["control"]:
            values["control"] = {**values["control"], "image": ref(values["control"]["image"])}
        return values

    @property
    def _reader(self) -> JobReader:
        reader: JobReader = self.container.job_reader()
        return reader

    @property
    def _catalog(self) -> ModelCatalog:
        catalog: ModelCatalog = self.container.catalog()
        return catalog

    def train_demo(
        self,
        out_dir: str | None = None,
        work_dir: str | None = None,
        progress: Callable[[str, int, int, dict[str, float]], None] | None = None,
        restart: bool = False,
        register: str | None = None,
        **config: Any,
    ) -> dict[str, Any]:
        """Train the demo world's Chinese text-to-image model from scratch (resumable: an interrupted
        run continues from its last checkpoint in ``work_dir``) and write it to ``out_dir``
        (default ``<data dir>/models/demo-trained``); ``register`` adds it to the registry under
        that name. ``config`` overrides training settings (``unet_steps``, ``seed``, ...)."""
        data = Path(self.settings.data_dir)
        out = out_dir or str(data / "models" / "demo-trained")
        work = work_dir or str(data / "training" / "demo-world")
        result = train_demo(work, out, config, progress or (lambda *_: None), restart=restart)
        if register:
            self.add_model(register, out, replace=True)
        return result

    def init_demo(self, force: bool = False, seed: int = 0) -> ModelInfo:
        """Register the demo models, so every mode runs offline:

        - ``demo``: the demo world's Chinese text-to-image model, trained by the project and shipped
          with it (``atelier models train-demo`` reproduces it);
        - ``demo-tiny``: a tiny random-init pipeline of the same family (built once; its images are
          noise), the floor the trained model is measured against;
        - random-init ControlNets ``canny`` and ``depth`` and LoRAs ``demo-style-a``/``-b`` shaped
          for ``demo``.
        """
        tiny = Path(self.settings.models_dir) / "demo-tiny"
        if force or not (tiny / "model_index.json").is_file():
            build_demo(str(tiny), seed, replace=True)
        self.add_model("demo-tiny", str(tiny), replace=True)
        shipped = trained_demo_path()
        if not (Path(shipped) / "model_index.json").is_file():
            raise ModelUnavailable(
                f"The trained demo model is missing from {shipped}; run `atelier models train-demo`."
            )
        info = self.add_model("demo", shipped, replace=True)
        for offset, name in enumerate(("canny", "depth"), start=1):
            folder = Path(self.settings.models_dir) / f"demo-world-controlnet-{name}"
            if force or not (folder / "config.json").is_file():
                build_demo_controlnet(shipped, str(folder), seed + offset)
            self.add_model(name, str(folder), kind=ModelKind.CONTROLNET, replace=True)
        for offset, name in enumerate(("demo-style-a", "demo-style-b"), start=3):
            folder = Path(self.settings.models_dir) / f"demo-world-{name.removeprefix('demo-')}"
            if force or not (folder / "pytorch_lora_weights.safetensors").is_file():
                build_demo_lora(shipped, str(folder), seed + offset)
            self.add_model(name, str(folder), kind=ModelKind.LORA, replace=True)
        return info
