"""Wait for a job to finish, wherever it runs: this process's executor, or a worker of another one
that shares the database."""

from __future__ import annotations

import time
from collections.abc import Callable

from app.domain.jobs import GenerationJob
from app.ports.generation import JobExecutor
from app.ports.persistence import JobReader

POLL_SECONDS = 0.1


class AwaitJob:
    def __init__(self, executor: JobExecutor, reader: JobReader) -> None:
        self._executor, self._reader = executor, reader

    def __call__(
        self,
        job_id: str,
        timeout: float | None = None,
        on_progress: Callable[[GenerationJob], None] | None = None,
        owner: str | None = None,
    ) -> GenerationJob:
        """The job once it has finished, or as it stands when ``timeout`` seconds have passed."""
        deadline = None if timeout is None else time.monotonic() + timeout
        while True:
            ran_here = self._executor.wait(job_id, timeout=POLL_SECONDS)  # at once when this process ran it
            job = self._reader.get(job_id, owner)
            if on_progress is not None:
                on_progress(job)
            if job.status.finished or (deadline is not None and time.monotonic() > deadline):
                return job
            if ran_here:
                time.sleep(POLL_SECONDS)  # queued or running in another process: poll the database
