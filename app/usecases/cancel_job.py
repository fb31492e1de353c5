"""Cancel a job: a queued one at once, a running one at its next denoising step."""

from __future__ import annotations

from app.domain.errors import ConcurrentUpdate, JobNotFound
from app.domain.jobs import GenerationJob
from app.ports.clock import Clock
from app.ports.generation import JobExecutor
from app.ports.persistence import UnitOfWorkFactory
from app.ports.webhooks import JobCallbacks


class CancelJob:
    """Record the cancellation in the database (seen by workers in any process) and
    signal the local executor so an in-process run stops without waiting for its next poll."""

    def __init__(
        self, uow: UnitOfWorkFactory, executor: JobExecutor, clock: Clock, callbacks: JobCallbacks | None = None
    ) -> None:
        self._uow = uow
        self._executor = executor
        self._clock = clock
        self._callbacks = callbacks

    def __call__(self, job_id: str, owner: str | None = None) -> GenerationJob:
        for _attempt in range(5):
            try:
                with self._uow() as uow:
                    job = uow.jobs.get(job_id)
                    if owner is not None and job.owner != owner:
                        raise JobNotFound(f"No job {job_id}.")
                    job.cancel(self._clock.now())
                    uow.jobs.save(job)
                    uow.commit()
                break
            except ConcurrentUpdate:
                continue  # a worker wrote progress meanwhile: read again
        else:
            raise ConcurrentUpdate(f"Job {job_id} kept changing; try to cancel again.")
        self._executor.cancel(job_id)
        if self._callbacks is not None and job.status.finished:  # a queued job ended here; a running one ends later
            self._callbacks.job_ended(job)
        return job
