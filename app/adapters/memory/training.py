"""Training jobs in a dict (the test profile), with the SQL store's semantics: one change at a time, copies out."""

from __future__ import annotations

import copy
import threading
from collections.abc import Callable
from datetime import datetime

from app.domain.errors import ConcurrentUpdate
from app.domain.jobs import JobStatus
from app.domain.training import EventKind, TrainingEvent, TrainingJob, TrainingJobNotFound
from app.ports.training import TrainingJobStore, TrainingPage


class InMemoryTrainingJobStore(TrainingJobStore):
    def __init__(self) -> None:
        self._lock = threading.RLock()
        self._jobs: dict[str, TrainingJob] = {}
        self._events: dict[str, list[TrainingEvent]] = {}

    def add(self, job: TrainingJob) -> None:
        with self._lock:
            if job.id in self._jobs:
                raise ConcurrentUpdate(f"Training job {job.id} already exists.")
            self._jobs[job.id] = copy.deepcopy(job)
            self._events[job.id] = []

    def get(self, job_id: str, owner: str | None = None) -> TrainingJob:
        with self._lock:
            job = self._jobs.get(job_id)
            if job is None or (owner is not None and job.owner != owner):
                raise TrainingJobNotFound(f"No training job {job_id}.")
            return copy.deepcopy(job)

    def update(self, job_id: str, change: Callable[[TrainingJob], None]) -> TrainingJob:
        with self._lock:
            job = self.get(job_id)
            change(job)
            self._jobs[job_id] = copy.deepcopy(job)
            return job

    def claim(self, worker_id: str, now: datetime) -> TrainingJob | None:
        with self._lock:
            queued = sorted(
                (j for j in self._jobs.values() if j.status is JobStatus.QUEUED), key=lambda j: (j.created_at, j.id)
            )
            if not queued:
                return None
            return self.update(queued[0].id, lambda job: job.start(now, worker_id))

    def page(self, owner: str | None = None, limit: int = 20, offset: int = 0) -> TrainingPage:
        with self._lock:
            mine = [j for j in self._jobs.values() if owner is None or j.owner == owner]
        ordered = sorted(mine, key=lambda j: j.id)
        ordered.sort(key=lambda j: j.created_at, reverse=True)
        return TrainingPage([copy.deepcopy(j) for j in ordered[offset : offset + limit]], len(mine), limit, offset)

    def running(self) -> list[TrainingJob]:
        with self._lock:
            found = [copy.deepcopy(j) for j in self._jobs.values() if j.status is JobStatus.RUNNING]
        return sorted(found, key=lambda j: j.created_at)

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
    ) -> TrainingEvent:
        with self._lock:
            if job_id not in self._jobs:
                raise TrainingJobNotFound(f"No training job {job_id}.")
            events = self._events[job_id]
            event = TrainingEvent(job_id, len(events) + 1, now, kind, message, step, loss, validation_loss, images)
            events.append(event)
            return event

    def events(self, job_id: str, after: int = 0, limit: int = 1000) -> list[TrainingEvent]:
        with self._lock:
            return [e for e in self._events.get(job_id, []) if e.seq > after][:limit]
