"""Training jobs for hosts, the CLI and the HTTP API: upload data, start a job, follow it, cancel it.

Every process that runs jobs runs a trainer thread too: it claims the oldest queued training job from the database
(the same queue any worker process on any host may claim from), runs it, and looks again; a submission in this
process wakes it at once, one in another process within ``POLL`` seconds.
"""

from __future__ import annotations

import logging
import threading
import time
from datetime import UTC, datetime
from typing import TYPE_CHECKING

from app.domain.errors import AtelierError
from app.domain.training import StoredFile, TrainingEvent, TrainingJob, TrainingSpec
from app.ports.training import TrainingPage

if TYPE_CHECKING:
    from app.composition.container import Container

log = logging.getLogger(__name__)
POLL = 2.0  # seconds between looks at the queue when no submission here woke the trainer


class Training:
    def __init__(self, container: Container, worker_id: str, stopping: threading.Event) -> None:
        self._container = container
        self._worker_id = worker_id
        self._stopping = stopping
        self._thread: threading.Thread | None = None

    # -- data and jobs ---------------------------------------------------------------------------
    def upload(self, data: bytes, filename: str, purpose: str = "fine-tune", owner: str = "local") -> StoredFile:
        """Keep a data file after validating it (``fine-tune``: chat records, one JSON per line; ``image-lora``: a zip
        of images with captions)."""
        stored: StoredFile = self._container.files().put(owner, filename, purpose, data, datetime.now(UTC))
        return stored

    def file(self, file_id: str, owner: str | None = None) -> StoredFile:
        stored: StoredFile = self._container.files().get(file_id, owner)
        return stored

    def submit(self, spec: TrainingSpec, owner: str = "local") -> TrainingJob:
        """Queue a job (stored before this returns); a trainer thread of a worker process runs it."""
        job: TrainingJob = self._container.submit_training()(owner, spec)
        return job

    def job(self, job_id: str, owner: str | None = None) -> TrainingJob:
        found: TrainingJob = self._container.training_jobs().get(job_id, owner)
        return found

    def jobs(self, owner: str | None = None, limit: int = 20, offset: int = 0) -> TrainingPage:
        page: TrainingPage = self._container.training_jobs().page(owner, limit, offset)
        return page

    def events(self, job_id: str, after: int = 0, owner: str | None = None) -> list[TrainingEvent]:
        self.job(job_id, owner)
        found: list[TrainingEvent] = self._container.training_jobs().events(job_id, after)
        return found

    def sample(self, job_id: str, image: str, owner: str | None = None) -> bytes:
        """A PNG sample image of a job, by the name a ``sample`` event gives."""
        data: bytes = self._container.run_training().sample(job_id, owner, image)
        return data

    def cancel(self, job_id: str, owner: str | None = None) -> TrainingJob:
        """A queued job is cancelled at once; a running one stops after its current step, with a checkpoint."""
        self.job(job_id, owner)
        now = datetime.now(UTC)
        changed: TrainingJob = self._container.training_jobs().update(job_id, lambda job: job.cancel(now))
        return changed

    def wait(self, job_id: str, timeout: float | None = None, poll: float = 0.5) -> TrainingJob:
        """The job once it has ended (or as it is when ``timeout`` seconds have passed)."""
        deadline = None if timeout is None else time.monotonic() + timeout
        while True:
            job = self.job(job_id)
            if job.status.finished or (deadline is not None and time.monotonic() >= deadline):
                return job
            time.sleep(poll)

    # -- the trainer thread ----------------------------------------------------------------------
    def start(self) -> None:
        if self._thread is None:
            self._thread = threading.Thread(target=self._serve, name="atelier-trainer", daemon=True)
            self._thread.start()

    def alive(self) -> bool:
        return self._thread is not None and self._thread.is_alive()

    def _serve(self) -> None:
        wake: threading.Event = self._container.training_wake()
        while not self._stopping.is_set():
            wake.clear()
            try:
                ran = self._container.run_training().claim_and_run(self._worker_id)
            except AtelierError as e:  # the database is away: look again later
                log.warning("trainer: %s", e.message)
                ran = None
            except Exception:
                log.exception("trainer: a training job could not be run")
                ran = None
            if ran is None:
                wake.wait(POLL)
