"""One change to one of an owner's jobs, read again and retried while a worker writes to it meanwhile."""

from __future__ import annotations

from collections.abc import Callable

from app.domain.errors import ConcurrentUpdate, JobNotFound
from app.domain.jobs import GenerationJob
from app.ports.persistence import UnitOfWork, UnitOfWorkFactory

RETRIES = 5


def change_owned_job(
    uow: UnitOfWorkFactory,
    job_id: str,
    owner: str | None,
    change: Callable[[UnitOfWork, GenerationJob], None],
    what: str,
) -> GenerationJob:
    """Apply ``change`` to the job in one unit of work and commit; ``JobNotFound`` for another owner's job (with
    ``owner``); ``ConcurrentUpdate`` when the job kept changing (``what`` names the operation to try again)."""
    for _attempt in range(RETRIES):
        try:
            with uow() as unit:
                job = unit.jobs.get(job_id)
                if owner is not None and job.owner != owner:
                    raise JobNotFound(f"No job {job_id}.")
                change(unit, job)
                unit.commit()
                return job
        except ConcurrentUpdate:
            continue  # a worker claimed it or wrote progress meanwhile: read it again
    raise ConcurrentUpdate(f"Job {job_id} kept changing; try to {what} again.")
