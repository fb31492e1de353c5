"""What every log line of the current request or job carries: its request id and job id.

Context variables, so the values follow a request through the thread pool and a job through the executor,
which runs each job in the context it was submitted in (the request's id reaches the worker's lines too).
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from contextvars import ContextVar

request_id: ContextVar[str | None] = ContextVar("atelier_request_id", default=None)
job_id: ContextVar[str | None] = ContextVar("atelier_job_id", default=None)


@contextlib.contextmanager
def job(value: str) -> Iterator[None]:
    """Log lines inside carry ``job_id=value``."""
    token = job_id.set(value)
    try:
        yield
    finally:
        job_id.reset(token)
