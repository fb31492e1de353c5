"""What the three compatible APIs share: reading the JSON body a client sent without trusting it, waiting for a
job without holding a worker thread, reading result images, result-image URLs and the sentences of their errors.

The synchronous compatible routes are ``async``: blocking calls (validation and submission, database reads, file
reads) go through the thread pool one short call at a time, and the wait for a job is ``asyncio.sleep`` between
polls. Many waiting clients therefore hold no threads, and ``/healthz`` or the native API stay answerable.
"""

from __future__ import annotations

import asyncio
import base64
import json
from pathlib import Path
from typing import Any

from fastapi import Request
from starlette.concurrency import run_in_threadpool

from app.domain.errors import (
    AtelierError,
    BackendUnavailable,
    ConcurrentUpdate,
    InvalidParameters,
    StorageUnavailable,
)
from app.domain.jobs import GenerationJob, JobStatus
from app.domain.text import MAX_DEPTH, check_document
from app.entrypoints.library import Atelier

MAX_DIGITS = 64  # digits of one JSON integer (Python would parse 4300, slowly, into a number no field accepts)
FIRST_POLL, LAST_POLL, BACKOFF = 0.05, 0.5, 1.5
INTERNAL = "Internal error; the server log has the details."
UNAVAILABLE = "A backend service is unavailable right now; try again shortly."
# Job failures whose stored message may hold library exception text or server paths: answered with a fixed sentence.
_INTERNAL_FAILURES = frozenset(
    {
        "generation_failed",
        "model_unavailable",
        "backend_unavailable",
        "database_unavailable",
        "index_unavailable",
        "concurrent_update",
        "atelier_error",
        "internal_error",
        "storage_unavailable",
    }
)


class _BadNumber(ValueError):
    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


def _finite(text: str) -> float:
    value = float(text)
    if value in (float("inf"), float("-inf")):
        raise _BadNumber(f"The number {text[:20]} is out of range.")
    return value


def _integer(text: str) -> int:
    if len(text.lstrip("-")) > MAX_DIGITS:
        raise _BadNumber(f"A number in the request body has more than {MAX_DIGITS} digits.")
    return int(text)


def _constant(text: str) -> Any:
    raise _BadNumber(f"{text} is not a JSON number; send a finite number.")


def parse_object(raw: bytes) -> dict[str, Any]:
    """The request body as a JSON object, or ``InvalidParameters`` naming what is wrong: not JSON, not an
    object, nested deeper than ``MAX_DEPTH``, NaN/Infinity or an overlong number, or text holding a lone UTF-16
    surrogate in any key or string (the error names the field: ``prompt``, ``override_settings.sd_vae``).

    The body guard refuses most of these before routing; this holds wherever the body comes from."""
    try:
        data = json.loads(raw, parse_float=_finite, parse_int=_integer, parse_constant=_constant)
    except RecursionError:
        raise InvalidParameters(f"The request body nests deeper than {MAX_DEPTH} levels.", code="too_deep") from None
    except _BadNumber as error:
        raise InvalidParameters(error.message, code="invalid_json") from None
    except ValueError:  # JSONDecodeError, UnicodeDecodeError
        raise InvalidParameters("The request body is not valid JSON.", code="invalid_json") from None
    if not isinstance(data, dict):
        raise InvalidParameters("The request body must be a JSON object.", code="invalid_json")
    check_document(data)
    return data


def public_message(error: AtelierError) -> str:
    """What a client may read of an error: backend failures carry library text (a database's reason, a model's
    path), so they answer a fixed sentence."""
    if isinstance(error, BackendUnavailable):
        return UNAVAILABLE
    if isinstance(error, ConcurrentUpdate):
        return "The record changed meanwhile; try again."
    if isinstance(error, StorageUnavailable):
        return StorageUnavailable.default_message
    return error.message


def failure_message(job: GenerationJob) -> str:
    """Why a finished job has no images, as a client may read it (its stored message when Atelier wrote it for
    the client, else a fixed sentence naming the job)."""
    code = job.error_code or "generation_failed"
    if job.error_message and code not in _INTERNAL_FAILURES:
        return job.error_message
    if job.status is JobStatus.CANCELLED:
        return f"Job {job.id} was cancelled."
    return f"Job {job.id} failed ({code}); the server log has the details."


def timeout_message(job_id: str, seconds: float) -> str:
    return f"Job {job_id} did not finish within {seconds:g} s; it keeps running: follow it at /v1/jobs/{job_id}."


async def finished_job(request: Request, atelier: Atelier, job_id: str) -> GenerationJob | None:
    """The job once it has finished; ``None`` when ``compat_wait_seconds`` passed first (or the client left).

    Polls the job store through the thread pool, sleeping on the event loop between polls (50 ms at first,
    growing to 0.5 s), so a waiting request holds no thread. ``compat_wait_seconds = 0`` looks once."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + atelier.settings.compat_wait_seconds
    delay = FIRST_POLL
    while True:
        job: GenerationJob = await run_in_threadpool(atelier.job, job_id)
        if job.status.finished:
            return job
        left = deadline - loop.time()
        if left <= 0 or await request.is_disconnected():
            return None
        await asyncio.sleep(min(delay, left))
        delay = min(delay * BACKOFF, LAST_POLL)


def image_url(atelier: Atelier, image_id: str) -> str:
    """``public_base_url`` + ``/v1/images/{id}``, or the relative path: never built from the request's Host."""
    base = atelier.settings.public_base_url
    return f"{base.rstrip('/')}/v1/images/{image_id}" if base else f"/v1/images/{image_id}"


def _read_base64(atelier: Atelier, job: GenerationJob, owner: str) -> list[str]:
    paths = [atelier.image_path(image.id, owner) for image in job.images]
    return [base64.b64encode(Path(path).read_bytes()).decode() for path in paths]


async def images_base64(atelier: Atelier, job: GenerationJob, owner: str) -> list[str]:
    """The job's PNG files as base64, read in the thread pool."""
    images: list[str] = await run_in_threadpool(_read_base64, atelier, job, owner)
    return images
