"""Persistence ports: a repository of jobs behind a unit of work, and a read side."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from types import TracebackType
from typing import Protocol

from app.domain.jobs import GenerationJob, JobStatus


@dataclass(frozen=True)
class JobPage:
    items: list[GenerationJob]
    total: int
    limit: int
    offset: int


@dataclass(frozen=True)
class QueuedModel:
    """The queued jobs of one model: how many, and when the oldest was submitted."""

    model: str
    queued: int
    oldest: datetime


class JobRepository(Protocol):
    """Generation jobs inside one unit of work; it never commits."""

    def add(self, job: GenerationJob) -> None: ...

    def get(self, job_id: str) -> GenerationJob:
        """Raises ``JobNotFound``."""

    def save(self, job: GenerationJob) -> None:
        """Write back a job loaded from this repository (or added to it)."""

    def count_unfinished(self, owner: str) -> int:
        """How many of ``owner``'s jobs are queued or running (committed state)."""

    def delete(self, job: GenerationJob) -> None:
        """Remove a job loaded in this unit of work at commit (``ConcurrentUpdate`` if it changed since)."""

    def finished_before(self, moment: datetime, limit: int = 500) -> list[str]:
        """Ids of jobs that ended (succeeded, failed, cancelled) before ``moment``, oldest first."""

    def claimable(self, model: str, limit: int) -> list[GenerationJob]:
        """Up to ``limit`` queued jobs of ``model``, oldest first, loaded for a change in this unit of work. Where the
        database can (PostgreSQL), their rows stay locked until it ends and another unit's ``claimable`` skips them;
        elsewhere the versioned commit lets only one of two racing claims through."""

    def ids_with_status(self, status: JobStatus) -> list[str]:
        """Ids of the jobs in a status, oldest first."""


class UnitOfWork(Protocol):
    """A transaction: rolls back on exit unless ``commit`` was called."""

    jobs: JobRepository

    def __enter__(self) -> UnitOfWork: ...

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None: ...

    def commit(self) -> None: ...


class UnitOfWorkFactory(Protocol):
    def __call__(self) -> UnitOfWork: ...


class Schema(Protocol):
    """The database schema: brought to the newest revision once, before the first session."""

    def upgrade(self) -> None:
        """Migrate to the newest revision now (idempotent); raises ``DatabaseUnavailable``."""

    def ensure(self) -> None:
        """``upgrade`` the first time it is called in this process, then nothing; a failure is retried next time."""


class JobReader(Protocol):
    """Read side for listings and status queries (no transaction to own)."""

    def get(self, job_id: str, owner: str | None = None) -> GenerationJob:
        """Raises ``JobNotFound``, also for a job of another owner."""

    def list(
        self, owner: str | None = None, status: JobStatus | None = None, limit: int = 20, offset: int = 0
    ) -> JobPage: ...

    def ping(self, write: bool = False) -> None:
        """Raises ``DatabaseUnavailable`` when the store cannot be reached (or, with ``write``, written)."""

    def queue(self) -> Sequence[QueuedModel]:
        """The queued jobs per model, by model name."""

    def status_counts(self) -> dict[JobStatus, int]:
        """How many jobs each status holds (every owner's)."""
