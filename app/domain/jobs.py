"""The generation job entity and its state machine."""

from __future__ import annotations

import re
import uuid
from dataclasses import dataclass, field
from datetime import datetime
from enum import StrEnum
from typing import ClassVar

from app.domain.errors import IllegalTransition, ImageNotFound, InvalidParameters, JobNotCancellable
from app.domain.generation import GenerationParams


class JobStatus(StrEnum):
    QUEUED = "queued"
    RUNNING = "running"
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    CANCELLED = "cancelled"

    @property
    def finished(self) -> bool:
        return self in FINISHED


FINISHED = frozenset({JobStatus.SUCCEEDED, JobStatus.FAILED, JobStatus.CANCELLED})

# queued -> running -> succeeded | failed | cancelled; queued -> cancelled.
# running -> queued only through ``requeue`` (a worker died mid-job).
TRANSITIONS: dict[JobStatus, frozenset[JobStatus]] = {
    JobStatus.QUEUED: frozenset({JobStatus.RUNNING, JobStatus.CANCELLED}),
    JobStatus.RUNNING: frozenset({JobStatus.SUCCEEDED, JobStatus.FAILED, JobStatus.CANCELLED}),
    JobStatus.SUCCEEDED: frozenset(),
    JobStatus.FAILED: frozenset(),
    JobStatus.CANCELLED: frozenset(),
}


# An image id is "<32 hex job id>-<index>": safe in URLs and file names, and it names its job.
_IMAGE_ID = re.compile(r"([0-9a-f]{32})-([0-9]{1,2})")


def new_job_id() -> str:
    return uuid.uuid4().hex


def image_id_for(job_id: str, index: int) -> str:
    image_id = f"{job_id}-{index}"
    job_id_of(image_id)
    return image_id


def job_id_of(image_id: str) -> str:
    """The job an image id belongs to; ``ImageNotFound`` for anything that is not an image id."""
    match = _IMAGE_ID.fullmatch(image_id) if isinstance(image_id, str) else None
    if not match:
        raise ImageNotFound(f"No image {image_id!r}.")
    return match.group(1)


@dataclass(frozen=True)
class ImageRef:
    """A stored result image: ``id`` is what ``GET /v1/images/{id}`` takes."""

    id: str
    seed: int
    width: int
    height: int
    nsfw: bool | None = None


class Lifecycle:
    """The state changes every queued job shares (a generation job, a training job): moves along ``TRANSITIONS``,
    failure, cancel (at once when queued, after the current step when running) and the return to the queue of a
    job whose worker died. The job classes are dataclasses holding these attributes."""

    LABEL: ClassVar[str] = "Job"
    id: str
    status: JobStatus
    updated_at: datetime
    finished_at: datetime | None
    error_code: str | None
    error_message: str | None
    cancel_requested: bool
    worker_id: str | None

    def _move(self, target: JobStatus, now: datetime) -> None:
        if target not in TRANSITIONS[self.status]:
            raise IllegalTransition(f"{self.LABEL} {self.id} cannot go from {self.status.value} to {target.value}.")
        self.status = target
        self.updated_at = now
        if target.finished:
            self.finished_at = now

    def fail(self, code: str, message: str, now: datetime) -> None:
        self._move(JobStatus.FAILED, now)
        self.error_code = code
        self.error_message = message[:1000]

    def cancel(self, now: datetime) -> None:
        """Cancel a queued job at once; a running one is only marked, and stops at its next step."""
        if self.status.finished:
            raise JobNotCancellable(f"{self.LABEL} {self.id} is already {self.status.value}.")
        if self.status is JobStatus.QUEUED:
            self._move(JobStatus.CANCELLED, now)
        self.cancel_requested = True
        self.updated_at = now

    def mark_cancelled(self, now: datetime) -> None:
        """A running job stopped because it was cancelled."""
        self._move(JobStatus.CANCELLED, now)

    def _back_to_queue(self, now: datetime) -> None:
        if self.status is not JobStatus.RUNNING:
            raise IllegalTransition(
                f"Only a running job can be re-queued; {self.LABEL.lower()} {self.id} is {self.status.value}."
            )
        self.status = JobStatus.QUEUED
        self.worker_id = None
        self.updated_at = now


@dataclass
class GenerationJob(Lifecycle):
    id: str
    owner: str
    params: GenerationParams
    created_at: datetime
    updated_at: datetime
    status: JobStatus = JobStatus.QUEUED
    progress: float = 0.0
    started_at: datetime | None = None
    finished_at: datetime | None = None
    images: list[ImageRef] = field(default_factory=list)
    error_code: str | None = None
    error_message: str | None = None
    cancel_requested: bool = False
    worker_id: str | None = None  # the process running it, while it runs
    attempts: int = 0  # how many times it was started (a job whose worker died is started again)

    @classmethod
    def create(cls, owner: str, params: GenerationParams, now: datetime, job_id: str | None = None) -> GenerationJob:
        if params.seed is None or params.width is None or params.height is None:
            raise InvalidParameters("A job needs resolved parameters (seed and size).", code="unresolved_params")
        if not owner:
            raise InvalidParameters("A job needs an owner.", code="invalid_owner", field="owner")
        return cls(id=job_id or new_job_id(), owner=owner, params=params, created_at=now, updated_at=now)

    @property
    def seed(self) -> int:
        """The seed actually used (always resolved at creation)."""
        assert self.params.seed is not None
        return self.params.seed

    def start(self, now: datetime, worker_id: str | None = None) -> None:
        self._move(JobStatus.RUNNING, now)
        self.started_at = now
        self.progress = 0.0
        self.worker_id = worker_id
        self.attempts += 1

    def report_progress(self, fraction: float, now: datetime) -> None:
        if self.status is not JobStatus.RUNNING:
            raise IllegalTransition(f"Job {self.id} is {self.status.value}; only a running job reports progress.")
        self.progress = min(1.0, max(self.progress, float(fraction)))
        self.updated_at = now

    def succeed(self, images: list[ImageRef], now: datetime) -> None:
        self._move(JobStatus.SUCCEEDED, now)
        self.images = list(images)
        self.progress = 1.0

    def requeue(self, now: datetime) -> None:
        """A job left running by a worker that died goes back to the queue."""
        self._back_to_queue(now)
        self.progress = 0.0
        self.started_at = None
