"""Start-up recovery: nothing that got a 202 is lost when a worker dies."""

from __future__ import annotations

from app.domain.jobs import JobStatus
from app.ports.clock import Clock
from app.ports.persistence import UnitOfWorkFactory


class RecoverJobs:
    """Re-queue the jobs a dead worker left ``running`` and return every queued job id,
    oldest first, for the executor. Run by the process that owns the queue (``atelier
    serve``) before it accepts work; a job's images are rewritten when it runs again."""

    def __init__(self, uow: UnitOfWorkFactory, clock: Clock) -> None:
        self._uow = uow
        self._clock = clock

    def __call__(self) -> list[str]:
        with self._uow() as uow:
            for job_id in uow.jobs.ids_with_status(JobStatus.RUNNING):
                job = uow.jobs.get(job_id)
                job.requeue(self._clock.now())
                uow.jobs.save(job)
            uow.commit()
        with self._uow() as uow:
            return uow.jobs.ids_with_status(JobStatus.QUEUED)
