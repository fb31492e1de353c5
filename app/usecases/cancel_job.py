"""Cancel a job: a queued one at once, a running one at its next denoising step."""

from __future__ import annotations

from app.domain.jobs import GenerationJob
from app.ports.clock import Clock
from app.ports.generation import JobExecutor
from app.ports.persistence import UnitOfWork, UnitOfWorkFactory
from app.ports.webhooks import JobCallbacks
from app.usecases.job_changes import change_owned_job


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
        def cancel(unit: UnitOfWork, job: GenerationJob) -> None:
            job.cancel(self._clock.now())
            unit.jobs.save(job)

        job = change_owned_job(self._uow, job_id, owner, cancel, "cancel")
        self._executor.cancel(job_id)
        if self._callbacks is not None and job.status.finished:  # a queued job ended here; a running one ends later
            self._callbacks.job_ended(job)
        return job
