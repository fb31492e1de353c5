"""Remove jobs with their images: one on request, or every finished job older than the retention period."""

from __future__ import annotations

import logging
from datetime import timedelta

from app.domain.errors import ConcurrentUpdate, JobNotFound, JobRunning
from app.domain.jobs import GenerationJob, JobStatus
from app.ports.clock import Clock
from app.ports.generation import ImageStore, JobExecutor
from app.ports.persistence import UnitOfWork, UnitOfWorkFactory
from app.usecases.job_changes import change_owned_job

log = logging.getLogger(__name__)
BATCH = 500  # job ids read per round


class DeleteJob:
    """A queued or finished job leaves the database, then its images leave the disk. A running job is refused:
    its worker would write its outcome to nothing (cancel it first)."""

    def __init__(self, uow: UnitOfWorkFactory, images: ImageStore, executor: JobExecutor) -> None:
        self._uow, self._images, self._executor = uow, images, executor

    def __call__(self, job_id: str, owner: str | None = None) -> None:
        def delete(unit: UnitOfWork, job: GenerationJob) -> None:
            if job.status is JobStatus.RUNNING:
                raise JobRunning(f"Job {job_id} is running; cancel it, and delete it once it has stopped.")
            unit.jobs.delete(job)

        change_owned_job(self._uow, job_id, owner, delete, "delete it")
        self._executor.cancel(job_id)  # a queued job that a local worker still holds never starts
        self._images.delete_job(job_id)


class PruneJobs:
    """Delete the jobs that finished more than ``days`` days ago, with their images; returns how many."""

    def __init__(self, uow: UnitOfWorkFactory, images: ImageStore, clock: Clock) -> None:
        self._uow, self._images, self._clock = uow, images, clock

    def __call__(self, days: float) -> int:
        if days <= 0:
            return 0
        cutoff = self._clock.now() - timedelta(days=days)
        removed, skipped = 0, set[str]()
        while True:
            with self._uow() as uow:
                ids = [i for i in uow.jobs.finished_before(cutoff, BATCH + len(skipped)) if i not in skipped]
            if not ids:
                break
            for job_id in ids:
                try:
                    with self._uow() as uow:
                        uow.jobs.delete(uow.jobs.get(job_id))
                        uow.commit()
                except (JobNotFound, ConcurrentUpdate):
                    skipped.add(job_id)  # deleted or changed by someone else meanwhile
                    continue
                self._images.delete_job(job_id)
                removed += 1
        if removed:
            log.info("retention: removed %d jobs that finished before %s", removed, cutoff.isoformat())
        return removed
