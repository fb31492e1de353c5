"""The job repository over one SQLAlchemy session; the unit of work owns the transaction."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from app.adapters.sql.errors import translate_errors
from app.adapters.sql.rows import JobRow, from_entity, to_entity
from app.domain.errors import JobNotFound
from app.domain.jobs import GenerationJob, JobStatus
from app.ports.persistence import JobRepository


class SqlJobRepository(JobRepository):
    """Jobs in one session. It never flushes or commits: ``sync`` (called by the unit of work
    at commit) copies every tracked entity into its row, and the version check runs then."""

    def __init__(self, session: Session) -> None:
        self._session = session
        self._tracked: dict[str, tuple[GenerationJob, JobRow]] = {}

    def add(self, job: GenerationJob) -> None:
        row = from_entity(job)
        self._session.add(row)
        self._tracked[job.id] = (job, row)

    def get(self, job_id: str) -> GenerationJob:
        if job_id in self._tracked:
            return self._tracked[job_id][0]
        with translate_errors(), self._session.no_autoflush:
            row = self._session.get(JobRow, job_id, populate_existing=True)
        if row is None:
            raise JobNotFound(f"No job {job_id}.")
        job = to_entity(row)
        self._tracked[job_id] = (job, row)
        return job

    def save(self, job: GenerationJob) -> None:
        tracked = self._tracked.get(job.id)
        if tracked is None:
            raise JobNotFound(f"Job {job.id} was not loaded in this unit of work.")
        self._tracked[job.id] = (job, from_entity(job, tracked[1]))

    def delete(self, job: GenerationJob) -> None:
        tracked = self._tracked.pop(job.id, None)
        if tracked is None:
            raise JobNotFound(f"Job {job.id} was not loaded in this unit of work.")
        self._session.delete(tracked[1])  # versioned: the commit fails if the row changed since it was read

    def finished_before(self, moment: datetime, limit: int = 500) -> list[str]:
        finished = [JobStatus.SUCCEEDED.value, JobStatus.FAILED.value, JobStatus.CANCELLED.value]
        query = (
            select(JobRow.id)
            .where(JobRow.status.in_(finished), JobRow.finished_at < moment)
            .order_by(JobRow.finished_at, JobRow.id)
            .limit(limit)
        )
        with translate_errors(), self._session.no_autoflush:
            return list(self._session.scalars(query))

    def count_unfinished(self, owner: str) -> int:
        unfinished = [JobStatus.QUEUED.value, JobStatus.RUNNING.value]
        query = select(func.count()).select_from(JobRow).where(JobRow.owner == owner, JobRow.status.in_(unfinished))
        with translate_errors(), self._session.no_autoflush:
            return int(self._session.scalar(query) or 0)

    def claimable(self, model: str, limit: int) -> list[GenerationJob]:
        query = (
            select(JobRow)
            .where(JobRow.status == JobStatus.QUEUED.value, JobRow.model == model)
            .order_by(JobRow.created_at, JobRow.id)
            .limit(limit)
            .with_for_update(skip_locked=True)  # PostgreSQL: FOR UPDATE SKIP LOCKED; SQLite has one writer
        )
        with translate_errors(), self._session.no_autoflush:
            rows = list(self._session.scalars(query.execution_options(populate_existing=True)))
        jobs = []
        for row in rows:
            job = to_entity(row)
            self._tracked[job.id] = (job, row)
            jobs.append(job)
        return jobs

    def ids_with_status(self, status: JobStatus) -> list[str]:
        # Committed state only, as the in-memory store: pending changes are not flushed for this query.
        query = select(JobRow.id).where(JobRow.status == status.value).order_by(JobRow.created_at, JobRow.id)
        with translate_errors(), self._session.no_autoflush:
            return list(self._session.scalars(query))

    def sync(self) -> None:
        """Copy every tracked entity into its row, then forget them (the commit has written them)."""
        for job, row in self._tracked.values():
            from_entity(job, row)

    def forget(self) -> None:
        self._tracked.clear()
