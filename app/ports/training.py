"""Training jobs and their events, kept where generation jobs are."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Protocol

from app.domain.training import EventKind, TrainingEvent, TrainingJob


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
    ) -> TrainingEvent: ...

    def events(self, job_id: str, after: int = 0, limit: int = 1000) -> list[TrainingEvent]:
        """The job's events with ``seq`` above ``after``, in order."""
