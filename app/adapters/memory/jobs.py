"""Jobs kept in a dict, with the same transaction and concurrency semantics as SQL."""

from __future__ import annotations

import copy
import threading
from datetime import datetime
from types import TracebackType

from app.domain.errors import ConcurrentUpdate, JobNotFound
from app.domain.jobs import GenerationJob, JobStatus
from app.ports.job_events import JobEvents
from app.ports.persistence import JobRepository, UnitOfWork


class InMemoryJobStore:
    """The shared 'database': committed jobs and their versions."""

    def __init__(self) -> None:
        self.lock = threading.RLock()
        self.rows: dict[str, tuple[GenerationJob, int]] = {}


class InMemoryJobRepository(JobRepository):
    def __init__(self, store: InMemoryJobStore) -> None:
        self._store = store
        self.pending: dict[str, tuple[GenerationJob, int | None]] = {}
        self.dirty: set[str] = set()
        self.deleted: set[str] = set()

    def add(self, job: GenerationJob) -> None:
        self.pending[job.id] = (job, None)
        self.dirty.add(job.id)

    def get(self, job_id: str) -> GenerationJob:
        if job_id in self.pending:
            return self.pending[job_id][0]
        with self._store.lock:
            if job_id not in self._store.rows:
                raise JobNotFound(f"No job {job_id}.")
            job, version = self._store.rows[job_id]
        loaded = copy.deepcopy(job)
        self.pending[job_id] = (loaded, version)
        return loaded

    def save(self, job: GenerationJob) -> None:
        if job.id not in self.pending:
            raise JobNotFound(f"Job {job.id} was not loaded in this unit of work.")
        self.dirty.add(job.id)

    def delete(self, job: GenerationJob) -> None:
        if job.id not in self.pending:
            raise JobNotFound(f"Job {job.id} was not loaded in this unit of work.")
        self.deleted.add(job.id)
        self.dirty.discard(job.id)

    def finished_before(self, moment: datetime, limit: int = 500) -> list[str]:
        with self._store.lock:
            jobs = [job for job, _ in self._store.rows.values() if job.finished_at and job.finished_at < moment]
        return [job.id for job in sorted(jobs, key=lambda j: (j.finished_at or moment, j.id))][:limit]

    def count_unfinished(self, owner: str) -> int:
        with self._store.lock:
            return sum(1 for job, _ in self._store.rows.values() if job.owner == owner and not job.status.finished)

    def claimable(self, model: str, limit: int) -> list[GenerationJob]:
        with self._store.lock:
            queued = [
                j for j, _ in self._store.rows.values() if j.status is JobStatus.QUEUED and j.params.model == model
            ]
        ids = [job.id for job in sorted(queued, key=lambda j: (j.created_at, j.id))][:limit]
        return [self.get(job_id) for job_id in ids]

    def ids_with_status(self, status: JobStatus) -> list[str]:
        with self._store.lock:
            jobs = [job for job, _ in self._store.rows.values() if job.status is status]
        return [job.id for job in sorted(jobs, key=lambda j: j.created_at)]

    def flush(self) -> list[tuple[str, str]]:
        """Write the changes; returns (id, status) of each job written or deleted."""
        changes = {job_id: self.pending[job_id] for job_id in self.dirty}
        with self._store.lock:
            for job_id in self.deleted:
                current = self._store.rows.get(job_id)
                if current is None or current[1] != self.pending[job_id][1]:
                    raise ConcurrentUpdate(f"Job {job_id} was changed by someone else.")
            for job_id, (_, version) in changes.items():
                current = self._store.rows.get(job_id)
                if version is None and current is not None:
                    raise ConcurrentUpdate(f"Job {job_id} already exists.")
                if version is not None and (current is None or current[1] != version):
                    raise ConcurrentUpdate(f"Job {job_id} was changed by someone else.")
            for job_id in self.deleted:
                del self._store.rows[job_id]
            for job_id, (job, version) in changes.items():
                self._store.rows[job_id] = (copy.deepcopy(job), (version or 0) + 1)
        written = [(job_id, job.status.value) for job_id, (job, _) in changes.items()]
        written += [(job_id, "deleted") for job_id in self.deleted]
        self.pending.clear()
        self.dirty.clear()
        self.deleted.clear()
        return written


class InMemoryUnitOfWork(UnitOfWork):
    def __init__(self, store: InMemoryJobStore, events: JobEvents | None = None) -> None:
        self._store = store
        self._events = events
        self.jobs = InMemoryJobRepository(store)

    def __enter__(self) -> InMemoryUnitOfWork:
        self.jobs = InMemoryJobRepository(self._store)
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.jobs.pending.clear()
        self.jobs.dirty.clear()
        self.jobs.deleted.clear()

    def commit(self) -> None:
        assert isinstance(self.jobs, InMemoryJobRepository)
        changes = self.jobs.flush()
        if changes and self._events is not None:
            self._events.announce(changes)


class InMemoryUnitOfWorkFactory:
    def __init__(self, store: InMemoryJobStore, events: JobEvents | None = None) -> None:
        self.store = store
        self._events = events

    def __call__(self) -> InMemoryUnitOfWork:
        return InMemoryUnitOfWork(self.store, self._events)
