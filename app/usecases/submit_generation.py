"""Accept a generation request: the job is committed before anyone hears of it."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import replace

from app.domain.errors import InvalidParameters, LimitExceeded
from app.domain.generation import GenerationParams, batch_key
from app.domain.jobs import GenerationJob
from app.ports.clock import Clock
from app.ports.generation import ImageStore, JobExecutor, ModelCatalog
from app.ports.persistence import UnitOfWorkFactory
from app.ports.webhooks import JobCallbacks
from app.usecases.generation_inputs import prepare

log = logging.getLogger(__name__)


class SubmitGeneration:
    """Resolve the open parameters, persist a queued job, then hand its id to the executor.

    Two per-owner limits keep one caller from holding the workers: ``max_queued`` unfinished jobs at once
    (``LimitExceeded``, nothing stored), and ``max_work`` for one job, counted as width × height × steps ×
    images (``InvalidParameters``). 0 turns a limit off."""

    def __init__(
        self,
        uow: UnitOfWorkFactory,
        catalog: ModelCatalog,
        images: ImageStore,
        executor: JobExecutor,
        clock: Clock,
        max_queued: int = 0,
        max_work: int = 0,
        callbacks: JobCallbacks | None = None,
    ) -> None:
        self._uow = uow
        self._catalog = catalog
        self._images = images
        self._executor = executor
        self._clock = clock
        self._max_queued = max_queued
        self._max_work = max_work
        self._callbacks = callbacks

    def __call__(self, owner: str, params: GenerationParams) -> GenerationJob:
        """Raises ``DatabaseUnavailable`` before anything else: no job is judged that could not be stored."""
        return self.many(owner, [params])[0]

    def many(self, owner: str, params: Sequence[GenerationParams]) -> list[GenerationJob]:
        """Several jobs in one transaction, all or none, queued together so that a worker finds all of them
        (those of one batching key run as one batch). The queue limit counts them all."""
        with self._uow() as uow:
            jobs = []
            for entry in params:
                prepared = prepare(entry, self._catalog, self._images, owner)
                if prepared.callback_url is not None:
                    if self._callbacks is None:
                        raise InvalidParameters("Job callbacks are not enabled here.", code="webhooks_disabled")
                    prepared = replace(prepared, callback_url=self._callbacks.check(prepared.callback_url))
                check_work(prepared, self._max_work)
                jobs.append(GenerationJob.create(owner, prepared, self._clock.now()))
            if self._max_queued and uow.jobs.count_unfinished(owner) + len(jobs) > self._max_queued:
                raise LimitExceeded(
                    f"{self._max_queued} of your jobs may be queued or running at once in this deployment; "
                    "wait for one to finish.",
                    code="too_many_queued_jobs",
                    retry_after=5,
                )
            for job in jobs:
                uow.jobs.add(job)
            uow.commit()
        for job in jobs:
            extra = {
                "event": "job_submitted",
                "job_id": job.id,
                "model": job.params.model,
                "mode": str(job.params.mode),
            }
            log.info("job %s submitted", job.id, extra=extra)
        self._executor.enqueue_many([(job.id, batch_key(job.params)) for job in jobs])
        return jobs


def check_work(params: GenerationParams, max_work: int) -> None:
    """Refuse a job whose width × height × steps × images is over ``max_work`` (0: no limit); with hires fix
    the second pass counts too (its size × its steps)."""
    if not max_work or params.width is None or params.height is None:
        return
    work = params.width * params.height * params.step_count * params.num_images
    hires = ""
    if params.hires is not None:
        width, height = params.hires.target(params.width, params.height)
        steps = params.hires.steps or params.step_count
        work += width * height * steps * params.num_images
        hires = f" plus a hires pass of {width}×{height} × {steps} steps"
    if work > max_work:
        raise InvalidParameters(
            f"This job asks for {params.width}×{params.height} pixels × {params.step_count} steps × "
            f"{params.num_images} images{hires} = {work:,}; this deployment allows at most {max_work:,} per job. "
            "Lower the size, the steps or the number of images.",
            code="job_too_large",
            field="steps",
        )
