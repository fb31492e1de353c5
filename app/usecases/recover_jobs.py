"""Recovery: nothing that got a 202 is lost when a worker dies.

A job records the process running it (``worker_id``; processes report themselves in the worker registry). A
running job whose process is no longer heard from (or is known to have exited: a process of this host whose pid
is gone) goes back to the queue, or fails with ``worker_lost`` once it
was started ``max_attempts`` times (a job that kills its worker every time must not kill them all). At start-up
the running jobs of no process at all (stored before jobs recorded one, or by a single-process deployment that
died) are requeued too.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from datetime import datetime, timedelta

from app.domain.errors import ConcurrentUpdate
from app.domain.jobs import JobStatus
from app.domain.training import TrainingJob
from app.domain.workers import WorkerInfo
from app.ports.clock import Clock
from app.ports.persistence import UnitOfWorkFactory
from app.ports.training import TrainingJobStore
from app.ports.workers import WorkerRegistry

log = logging.getLogger(__name__)
MAX_ATTEMPTS = 3
MIN_LEASE = 15.0  # seconds a worker may go unheard before its jobs are taken from it, however short its heartbeat


class RecoverJobs:
    """``__call__`` at start-up: requeue what dead workers left and return every queued job id, oldest first, for
    the executor. ``reap`` now and then: requeue the jobs of workers gone silent and return their ids."""

    def __init__(
        self,
        uow: UnitOfWorkFactory,
        clock: Clock,
        registry: WorkerRegistry | None = None,
        heartbeat: float = 10.0,
        max_attempts: int = MAX_ATTEMPTS,
        gone: Callable[[WorkerInfo], bool] = lambda _worker: False,
        trainings: TrainingJobStore | None = None,
    ) -> None:
        self._uow = uow
        self._trainings = trainings  # training jobs: requeued alike, they resume from their checkpoints
        self._gone = gone  # known dead without waiting for the lease (a process of this host that has exited)
        self._clock = clock
        self._registry = registry
        self._lease = max(3 * heartbeat, MIN_LEASE)
        self._max_attempts = max_attempts

    def __call__(self) -> list[str]:
        self._requeue(orphans=True)
        with self._uow() as uow:
            return uow.jobs.ids_with_status(JobStatus.QUEUED)

    def reap(self) -> list[str]:
        return self._requeue(orphans=False)

    def _requeue(self, orphans: bool) -> list[str]:
        now = self._clock.now()
        live = self._live(now)
        requeued: list[str] = []
        with self._uow() as uow:
            running = uow.jobs.ids_with_status(JobStatus.RUNNING)
        for job_id in running:
            try:
                with self._uow() as uow:
                    job = uow.jobs.get(job_id)
                    if job.status is not JobStatus.RUNNING or job.worker_id in live:
                        continue
                    if job.worker_id is None and not orphans:
                        continue
                    left_by = job.worker_id or "(none)"
                    if job.attempts >= self._max_attempts:
                        message = f"Its worker stopped answering {job.attempts} times while running it."
                        job.fail("worker_lost", message, now)
                    else:
                        job.requeue(now)
                        requeued.append(job_id)
                    uow.jobs.save(job)
                    uow.commit()
            except ConcurrentUpdate:
                continue  # it changed meanwhile (progress, its end): its worker is alive after all
            log.warning("job %s left by worker %s", job_id, left_by, extra={"event": "job_reaped"})
        if self._trainings is not None:
            self._requeue_trainings(self._trainings, live, orphans, now)
        return requeued

    def _requeue_trainings(self, store: TrainingJobStore, live: set[str | None], orphans: bool, now: datetime) -> None:
        """Training jobs left running by dead workers go back to the queue (a training worker claims them)."""
        for job in store.running():
            if job.worker_id in live or (job.worker_id is None and not orphans):
                continue

            def change(job: TrainingJob) -> None:
                if job.status is not JobStatus.RUNNING or job.worker_id in live:
                    return
                if job.attempts >= self._max_attempts:
                    job.fail("worker_lost", f"Its worker stopped answering {job.attempts} times while running it.", now)
                else:
                    job.requeue(now)

            try:
                store.update(job.id, change)
            except ConcurrentUpdate:
                continue
            log.warning("training job %s left by worker %s", job.id, job.worker_id, extra={"event": "job_reaped"})

    def _live(self, now: datetime) -> set[str | None]:
        if self._registry is None:
            return set()
        cutoff = now - timedelta(seconds=self._lease)
        return {w.id for w in self._registry.workers() if w.heartbeat_at >= cutoff and not self._gone(w)}
