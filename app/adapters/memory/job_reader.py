"""The read side of in-memory jobs (listings and status), and their schema, which needs no migration."""

from __future__ import annotations

import copy
from collections.abc import Sequence

from app.adapters.memory.jobs import InMemoryJobStore
from app.domain.errors import JobNotFound
from app.domain.jobs import GenerationJob, JobStatus
from app.ports.persistence import JobPage, JobReader, QueuedModel


class InMemoryJobReader(JobReader):
    def __init__(self, store: InMemoryJobStore) -> None:
        self._store = store

    def get(self, job_id: str, owner: str | None = None) -> GenerationJob:
        with self._store.lock:
            row = self._store.rows.get(job_id)
        if row is None or (owner is not None and row[0].owner != owner):
            raise JobNotFound(f"No job {job_id}.")
        return copy.deepcopy(row[0])

    def list(
        self, owner: str | None = None, status: JobStatus | None = None, limit: int = 20, offset: int = 0
    ) -> JobPage:
        with self._store.lock:
            jobs = [copy.deepcopy(job) for job, _ in self._store.rows.values()]
        jobs = [j for j in jobs if (owner is None or j.owner == owner) and (status is None or j.status is status)]
        jobs.sort(key=lambda j: (j.created_at, j.id), reverse=True)
        return JobPage(items=jobs[offset : offset + limit], total=len(jobs), limit=limit, offset=offset)

    def ping(self, write: bool = False) -> None:
        return None

    def queue(self) -> Sequence[QueuedModel]:
        with self._store.lock:
            queued = [job for job, _ in self._store.rows.values() if job.status is JobStatus.QUEUED]
        models = sorted({job.params.model for job in queued})
        return [
            QueuedModel(
                model,
                sum(1 for job in queued if job.params.model == model),
                min(job.created_at for job in queued if job.params.model == model),
            )
            for model in models
        ]

    def status_counts(self) -> dict[JobStatus, int]:
        with self._store.lock:
            statuses = [job.status for job, _ in self._store.rows.values()]
        return {status: statuses.count(status) for status in set(statuses)}


class InMemorySchema:
    """``Schema`` of in-memory stores: there is nothing to migrate."""

    def upgrade(self) -> None:
        return None

    def ensure(self) -> None:
        return None
