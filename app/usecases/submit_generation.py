"""Accept a generation request: the job is committed before anyone hears of it."""

from __future__ import annotations

from app.domain.generation import GenerationParams
from app.domain.jobs import GenerationJob
from app.ports.clock import Clock
from app.ports.generation import JobExecutor, ModelCatalog
from app.ports.persistence import UnitOfWorkFactory


class SubmitGeneration:
    """Resolve the open parameters, persist a queued job, then hand its id to the executor."""

    def __init__(self, uow: UnitOfWorkFactory, catalog: ModelCatalog, executor: JobExecutor, clock: Clock) -> None:
        self._uow = uow
        self._catalog = catalog
        self._executor = executor
        self._clock = clock

    def __call__(self, owner: str, params: GenerationParams) -> GenerationJob:
        model = self._catalog.get(params.model)
        resolved = params.resolved(default_size=model.default_size)
        job = GenerationJob.create(owner, resolved, self._clock.now())
        with self._uow() as uow:
            uow.jobs.add(job)
            uow.commit()
        self._executor.enqueue(job.id)
        return job
