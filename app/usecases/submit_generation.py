"""Accept a generation request: the job is committed before anyone hears of it."""

from __future__ import annotations

from app.domain.generation import GenerationParams, batch_key
from app.domain.jobs import GenerationJob
from app.ports.clock import Clock
from app.ports.generation import ImageStore, JobExecutor, ModelCatalog
from app.ports.persistence import UnitOfWorkFactory
from app.usecases.generation_inputs import prepare


class SubmitGeneration:
    """Resolve the open parameters, persist a queued job, then hand its id to the executor."""

    def __init__(
        self, uow: UnitOfWorkFactory, catalog: ModelCatalog, images: ImageStore, executor: JobExecutor, clock: Clock
    ) -> None:
        self._uow = uow
        self._catalog = catalog
        self._images = images
        self._executor = executor
        self._clock = clock

    def __call__(self, owner: str, params: GenerationParams) -> GenerationJob:
        job = GenerationJob.create(owner, prepare(params, self._catalog, self._images), self._clock.now())
        with self._uow() as uow:
            uow.jobs.add(job)
            uow.commit()
        self._executor.enqueue(job.id, batch_key(job.params))
        return job
