"""The embedded facade: what a host application, the CLI and the HTTP API call.

    from app.entrypoints.library import Atelier

    with Atelier.open(data_dir="/srv/atelier") as atelier:
        job = atelier.generate("一只猫在草地上", steps=20, seed=42)
        print(job.status, [atelier.image_path(i.id) for i in job.images])

No globals: each ``Atelier`` owns its container, database engine and worker threads. Every method
resolves a use case or a port from the container and calls it; the parts ``knowledge``, ``edits`` and
``prompts`` do the same for their capability. Training and dataset builders live in ``app.lab``.
"""

from __future__ import annotations

import contextlib
import logging
import os
import socket
import threading
import uuid
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from app.composition import Container
from app.demo_world.integrity import SceneReading
from app.domain.control_maps import ControlMapSpec
from app.domain.errors import AtelierError, DatabaseUnavailable, ImageNotFound
from app.domain.generation import GenerationParams
from app.domain.jobs import GenerationJob, JobStatus
from app.domain.models import ModelInfo, ModelKind
from app.domain.workers import WorkerInfo
from app.entrypoints.library.edits import Edits
from app.entrypoints.library.knowledge import Knowledge
from app.entrypoints.library.prompts import Prompts
from app.entrypoints.library.training import Training
from app.ports.generation import InputImage, ModelCatalog
from app.ports.job_events import JobWatch
from app.ports.persistence import JobPage, JobReader
from app.settings import Settings, load_settings

log = logging.getLogger(__name__)
RETENTION_INTERVAL = 3600.0  # seconds between applications of the retention setting


class Atelier:
    """One Atelier instance: jobs, models and images over one database and data dir."""

    def __init__(self, settings: Settings, container: Container | None = None) -> None:
        self.settings = settings
        self.container = container or Container(settings=settings)
        self._worker_started = False
        self._stopping = threading.Event()
        self._retention = threading.Thread(target=self._retain, name="atelier-retention", daemon=True)
        self._heartbeat = threading.Thread(target=self._beat, name="atelier-heartbeat", daemon=True)
        self.worker_id = f"{socket.gethostname()}-{os.getpid()}-{uuid.uuid4().hex[:8]}"
        self.container.worker_id.override(self.worker_id)
        self.container.loaded_models.override(lambda: [name for name, _ in self._loaded_models()])
        if settings.executor == "ray":
            from app.entrypoints.library.remote import RemoteWorker

            self.container.remote_worker.override(RemoteWorker)
        self._started_at = datetime.now(UTC)
        self.knowledge = Knowledge(self.container)
        self.edits = Edits(self.container)
        self.prompts = Prompts(self.container)
        self.training = Training(self.container, self.worker_id, self._stopping)

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
        serving: bool = False,
        **settings: Any,
    ) -> Atelier:
        """Build an instance, migrate its database and start its workers.

        ``recover`` re-queues jobs a dead process left behind; pass False in a process
        that shares the database with a running server and should run only its own jobs.
        A server (one that runs jobs, or ``serving``) whose database is down starts anyway: the first session
        migrates it once it answers.
        """
        loaded = load_settings(
            database_url=database_url, data_dir=data_dir, profile=profile, workers=workers, **settings
        )
        atelier = cls(loaded)
        try:
            atelier.migrate()
        except DatabaseUnavailable:
            if not (start_worker or serving):
                raise
        if start_worker:
            atelier.start_worker(recover=recover)
        return atelier

    # -- lifecycle -------------------------------------------------------------------
    def migrate(self) -> None:
        """Bring the database schema to the newest revision (idempotent)."""
        self.container.schema().ensure()

    def start_worker(self, recover: bool = True) -> None:
        if self._worker_started:
            return
        executor = self.container.executor()
        run = self.container.run_generation  # built per job, so the model backend loads on first use
        if executor.pulls:  # it claims jobs from the database's queue itself: they run under this process already
            executor.start(
                lambda job_id, cancelled: run().run_claimed([job_id], lambda _job_id: cancelled()),
                lambda job_ids, cancelled_of: run().run_claimed(job_ids, cancelled_of),
            )
        else:
            executor.start(
                lambda job_id, cancelled: run()(job_id, cancelled),
                lambda job_ids, cancelled_of: run().run_batch(job_ids, cancelled_of),
            )
        self._worker_started = True
        if not getattr(executor, "remote", False):  # a launcher of remote workers trains nothing itself
            self.training.start()
        self.container.job_metrics().watch_models(self._loaded_models, self._model_loads)  # it holds pipelines now
        if self.settings.job_retention_days > 0:
            self._retention.start()
        self._heartbeat.start()
        if recover:
            try:
                for job_id in self.container.recover_jobs()():
                    executor.enqueue(job_id)
            except DatabaseUnavailable:
                pass  # nothing to recover from a database we cannot reach; requests report 503

    def _loaded_models(self) -> list[tuple[str, int]]:
        """Registered names and bytes of the pipelines in this process's memory (none before the first job: asking
        must not load the model backend)."""
        if not self._backend_started():
            return []
        generator = self.container.generator()
        loaded: list[tuple[str, int]] = getattr(generator, "loaded_models", list)()
        names = {m.path: m.name for m in self._catalog.list()}
        return [(names.get(path, "unregistered"), size) for path, size in loaded]

    def _model_loads(self) -> int:
        """Pipelines this process has loaded (a model switch is one; none before the first job)."""
        return int(getattr(self.container.generator(), "loads", 0)) if self._backend_started() else 0

    def _backend_started(self) -> bool:
        """Whether the image model backend was built (asking must not build it: that loads torch)."""
        backend = self.container.generator.providers.get(self.container.profile())
        return backend is not None and getattr(backend, "initialized", True) is not False

    def metrics(self) -> tuple[bytes, str]:
        """The Prometheus text of this instance's metrics, and its content type."""
        exported: tuple[bytes, str] = self.container.job_metrics().exposition()
        return exported

    def _retain(self) -> None:
        """Apply the retention setting now and then hourly, until the instance closes."""
        while not self._stopping.is_set():
            try:
                self.prune_jobs()
            except AtelierError as e:  # the database is away: try again next time
                log.warning("retention: %s", e.message)
            self._stopping.wait(RETENTION_INTERVAL)

    def _beat(self) -> None:
        """Report this process to the worker registry every ``worker_heartbeat`` seconds until it closes, and take
        over the jobs of workers gone silent."""
        registry, recover = self.container.worker_registry(), self.container.recover_jobs()
        executor = self.container.executor()
        runs_jobs = not getattr(executor, "remote", False)  # a launcher of remote workers is no worker itself
        while not self._stopping.is_set():
            try:
                if runs_jobs:
                    registry.beat(self._worker_info())
                for job_id in recover.reap():  # the jobs of workers gone silent: this process runs them
                    executor.enqueue(job_id)
            except AtelierError as e:  # the database is away: the next beat tries again
                log.warning("heartbeat: %s", e.message)
            self._stopping.wait(self.settings.worker_heartbeat)

    def _worker_info(self) -> WorkerInfo:
        loaded = [name for name, _ in self._loaded_models()]
        threads = self.container.executor().live_workers()
        host, pid = socket.gethostname(), os.getpid()
        return WorkerInfo(self.worker_id, host, pid, threads, tuple(loaded), self._started_at, datetime.now(UTC))

    def cluster(self) -> dict[str, Any]:
        """The live workers (heard from within three heartbeats) and the queue per model."""
        now, interval = datetime.now(UTC), self.settings.worker_heartbeat
        workers = [w for w in self.container.worker_registry().workers() if w.live(now, interval)]
        return {"workers": workers, "queue": list(self._reader.queue())}

    def close(self) -> None:
        self._stopping.set()
        if self._heartbeat.is_alive():
            self._heartbeat.join(5)
            with contextlib.suppress(AtelierError):  # the database is away: the row goes stale instead
                self.container.worker_registry().remove(self.worker_id)
        self.container.executor().shutdown(wait=True)
        self.container.shutdown_resources()  # unloads pipelines and closes the engine, if they were used

    def __enter__(self) -> Atelier:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- generation ------------------------------------------------------------------
    def params(self, prompt: str, *, owner: str = "local", **values: Any) -> GenerationParams:
        """Validated parameters; the model defaults to the deployment's default model. Specs may be
        given plainly: ``loras=["poem:0.7"]``, ``outpaint="64,64,0,0"``, ``controls=[{"image": id}, ...]`` (one
        unit: ``control={"image": id}``). Images given inline (base64, URLs) are stored as ``owner``'s uploads."""
        params: GenerationParams = self.container.accept_generation().params({"prompt": prompt, **values}, owner)
        return params

    def submit(self, prompt: str, *, owner: str = "local", **params: Any) -> GenerationJob:
        """Queue a job; it is in the database when this returns."""
        job: GenerationJob = self.container.accept_generation()({"prompt": prompt, **params}, owner)
        return job

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
        """The job once it has finished (or as it stands after ``timeout`` seconds)."""
        job: GenerationJob = self.container.await_job()(job_id, timeout, on_progress)
        return job

    def watch_job(self, job_id: str) -> JobWatch:
        """Hear of the job's committed changes (from any process on PostgreSQL): ``wait``/``wait_async`` return
        when one was announced, then read the job. ``close`` it when done."""
        watch: JobWatch = self.container.job_events().watch(job_id)
        return watch

    def cancel(self, job_id: str, owner: str | None = None) -> GenerationJob:
        job: GenerationJob = self.container.cancel_job()(job_id, owner)
        return job

    def delete_job(self, job_id: str, owner: str | None = None) -> None:
        """Delete a queued or finished job and its images (``JobRunning`` for a running one: cancel it first)."""
        self.container.delete_job()(job_id, owner)

    def prune_jobs(self, days: float | None = None) -> int:
        """Delete the jobs that finished more than ``days`` days ago (default: the retention setting), with
        their images; returns how many."""
        removed: int = self.container.prune_jobs()(self.settings.job_retention_days if days is None else days)
        return removed

    # -- queries ---------------------------------------------------------------------
    def job(self, job_id: str, owner: str | None = None) -> GenerationJob:
        return self._reader.get(job_id, owner)

    def jobs(
        self, owner: str | None = None, status: JobStatus | None = None, limit: int = 20, offset: int = 0
    ) -> JobPage:
        return self._reader.list(owner=owner, status=status, limit=limit, offset=offset)

    def image_path(self, image_id: str, owner: str | None = None) -> str:
        """Local path of a result image; ``ImageNotFound``/``JobNotFound`` for another owner's image."""
        path: str = self.container.resolve_images().result_path(image_id, owner)
        return path

    def read_scene(self, image: str | bytes, caption: str | None = None, owner: str | None = None) -> SceneReading:
        """What a demo-world image shows, read by the OpenCV checker (shapes, colours, positions, sizes);
        with ``caption``, its content-integrity score against the caption. ``image``: a local file path,
        a result image id, base64, or encoded image bytes. ``InvalidParameters`` when the caption names
        no coloured shape, ``InvalidImage`` for data that is no image."""
        if isinstance(image, str) and Path(image).is_file():
            try:
                image = Path(image).read_bytes()
            except OSError as e:
                raise ImageNotFound("Cannot read the image.", detail=str(e)) from e
        decoded = self.container.codec().decode(self.container.resolve_images().encoded(image, owner))
        reading: SceneReading = self.container.read_scene()(decoded, caption)
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
        codec = self.container.codec()
        decoded = codec.decode(self.container.resolve_images().encoded(image, owner))
        png: bytes = codec.encode_png(self.container.preview_control_map()(decoded, spec))
        return png

    def readiness(self) -> dict[str, Any]:
        """Whether this instance can take jobs now: the database answers and takes writes, and a worker
        is alive (in a process that runs jobs). ``ready`` is False otherwise, with the reason."""
        checks: dict[str, Any] = {"database": "ok", "workers": self.container.executor().live_workers()}
        try:
            self._reader.ping(write=True)
        except DatabaseUnavailable:
            checks["database"] = "unavailable"
        ready = checks["database"] == "ok" and (checks["workers"] > 0 or not self._worker_started)
        return {"ready": ready, **checks, "profile": self.settings.profile}

    def health(self) -> dict[str, str]:
        """Raises ``DatabaseUnavailable`` when the database cannot be reached."""
        self._reader.ping()
        return {"status": "ok", "database": "ok", "profile": self.settings.profile}

    # -- models ----------------------------------------------------------------------
    def models(self, kind: ModelKind | str | None = None) -> list[ModelInfo]:
        return self._catalog.list(ModelKind(kind) if kind else None)

    def model(self, name: str, kind: ModelKind | str = ModelKind.BASE) -> ModelInfo:
        return self._catalog.get(name, ModelKind(kind))

    def add_model(
        self,
        name: str,
        source: str,
        replace: bool = False,
        kind: ModelKind | str = ModelKind.BASE,
        config: str | None = None,
    ) -> ModelInfo:
        """Register a local folder or file (or a hub id, when a network exists) as a base model, LoRA, ControlNet
        or VAE. A single-file ``.safetensors``/``.ckpt`` base model or VAE is converted once, with the configs (and
        tokenizer) of ``config`` (a registered base model or a diffusers folder of the same architecture; default:
        the default model)."""
        return self._catalog.add(name, source, kind=ModelKind(kind), replace=replace, config=config)

    def remove_model(self, name: str) -> ModelInfo:
        """Unregister a model of any kind (a folder converted for it is deleted; the user's files stay). Jobs
        that name it and have not run fail with ``unknown_model``."""
        return self._catalog.remove(name)

    def init_demo(self, force: bool = False, seed: int = 0) -> ModelInfo:
        """Register the offline demo models (``demo``, ``demo-tiny``, ControlNets ``canny``/``depth``,
        LoRAs ``demo-style-a``/``-b``); returns ``demo``."""
        info: ModelInfo = self.container.register_demo_models()(force=force, seed=seed)
        return info

    def upload(self, data: bytes | str, owner: str = "local") -> InputImage:
        """Keep an input image (init image, mask, control image) given as bytes, or base64 / a data URL / an
        http(s) URL (fetched when the deployment allows it) as text; its id goes into ``init_image``,
        ``mask_image`` or ``control["image"]`` of ``owner``'s jobs (another owner cannot use it)."""
        image: InputImage = self.container.resolve_images().upload(data, owner)
        return image

    @property
    def _reader(self) -> JobReader:
        reader: JobReader = self.container.job_reader()
        return reader

    @property
    def _catalog(self) -> ModelCatalog:
        catalog: ModelCatalog = self.container.catalog()
        return catalog
