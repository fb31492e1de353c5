"""Training jobs and their events, kept where generation jobs are."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Protocol

from app.domain.training import EventKind, StoredFile, TrainingEvent, TrainingJob, TrainingSpec


@dataclass(frozen=True)
class TrainingPage:
    items: list[TrainingJob]
    total: int
    limit: int
    offset: int


class TrainingJobStore(Protocol):
    """Training jobs. Each change is one transaction: ``update`` reads the job, applies a domain change and writes it
    back, and fails with ``ConcurrentUpdate`` when another process changed the job meanwhile."""

    def add(self, job: TrainingJob) -> None: ...

    def get(self, job_id: str, owner: str | None = None) -> TrainingJob:
        """Raises ``TrainingJobNotFound``, also for a job of another owner."""

    def update(self, job_id: str, change: Callable[[TrainingJob], None]) -> TrainingJob:
        """Apply ``change`` to the stored job and write it; returns the job as written."""

    def claim(self, worker_id: str, now: datetime) -> TrainingJob | None:
        """The oldest queued job, started under ``worker_id``; None when none is queued (or another process took
        it first)."""

    def page(self, owner: str | None = None, limit: int = 20, offset: int = 0) -> TrainingPage: ...

    def running(self) -> list[TrainingJob]:
        """The jobs running now (for recovery: those of dead workers go back to the queue)."""

    def add_event(
        self,
        job_id: str,
        kind: EventKind,
        message: str,
        now: datetime,
        step: int | None = None,
        loss: float | None = None,
        validation_loss: float | None = None,
        images: tuple[str, ...] = (),
    ) -> TrainingEvent: ...

    def events(self, job_id: str, after: int = 0, limit: int = 1000) -> list[TrainingEvent]:
        """The job's events with ``seq`` above ``after``, in order."""


class FileStore(Protocol):
    """Uploaded data files, kept for the jobs that read them."""

    def put(self, owner: str, filename: str, purpose: str, data: bytes, now: datetime) -> StoredFile:
        """Validate ``data`` for ``purpose`` (``fine-tune``: chat records) and keep it; raises ``InvalidParameters``
        naming the first bad line."""

    def get(self, file_id: str, owner: str | None = None) -> StoredFile:
        """Raises ``FileNotFound``, also for another owner's file."""

    def read(self, file_id: str) -> bytes: ...


class Trainer(Protocol):
    """Trains what a spec asks on its records, from the base model's folder: checkpoints go to ``work_dir`` (a run
    started again resumes from the last one), the result to ``out_dir``."""

    def train(
        self,
        spec: TrainingSpec,
        base_path: str,
        records: list[Any],
        out_dir: str,
        work_dir: str,
        report: Callable[[int, int, float, float | None], None],
        cancelled: Callable[[], bool],
        validation: list[list[dict[str, str]]] | None = None,
        samples: Callable[[int, list[str]], None] | None = None,
    ) -> TrainOutcome:
        """``report(step, total, loss, validation_loss)`` after each step (a validation loss at each epoch's end,
        when ``validation`` records are given); ``cancelled`` is asked after each step; ``samples(step, names)``
        after sample images were written to ``work_dir/samples`` (image models, when sample prompts are set).
        ``records`` are chat records for a language model, ``CaptionedImage``s for an image model."""


@dataclass(frozen=True)
class TrainOutcome:
    steps: int
    loss: float
    resumed_from: int  # the step a checkpoint gave (0: a fresh start)
    finished: bool  # False: stopped by ``cancelled`` after a checkpoint
