"""Generation jobs: submit, read, follow, cancel; and their images."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator
from typing import Annotated

from fastapi import APIRouter, Depends, Query, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import FileResponse, Response, StreamingResponse

from app.composition import Container
from app.domain.jobs import JobStatus
from app.entrypoints.http import deps
from app.entrypoints.http.openapi import errors
from app.entrypoints.http.schemas import JobOut, JobPageOut, JobRequest
from app.entrypoints.library import Atelier

KEEP_ALIVE_SECONDS = 15.0  # a comment line on a quiet stream, so proxies keep it open
EVENTS_FALLBACK_POLL = 1.0  # seconds between reads of the job when no change was announced

router = APIRouter(tags=["jobs"])
AtelierDep = Annotated[Atelier, Depends(deps.atelier)]
OwnerDep = Annotated[str, Depends(deps.owner)]
UseCases = Annotated[Container, Depends(deps.container)]


@router.post(
    "/v1/jobs",
    status_code=202,
    response_model=JobOut,
    summary="Queue a text-to-image job",
    responses=errors(404, 503, 507, codes={404: ["unknown_model", "image_not_found"]}),
)
def submit(body: JobRequest, use: UseCases, owner: OwnerDep) -> JobOut:
    """The job is stored before the reply; follow it with `GET /v1/jobs/{id}` or `/events`."""
    return JobOut.of(use.accept_generation()(body.params(), owner))


@router.get("/v1/jobs", response_model=JobPageOut, summary="List your jobs, newest first", responses=errors(503))
def list_jobs(
    use: UseCases,
    owner: OwnerDep,
    status: JobStatus | None = None,
    limit: Annotated[int, Query(ge=1, le=100)] = 20,
    offset: Annotated[int, Query(ge=0, le=deps.MAX_OFFSET)] = 0,
) -> JobPageOut:
    page = use.job_reader().list(owner=owner, status=status, limit=limit, offset=offset)
    return JobPageOut(items=[JobOut.of(j) for j in page.items], total=page.total, limit=page.limit, offset=page.offset)


@router.get(
    "/v1/jobs/{job_id}",
    response_model=JobOut,
    summary="One job with its progress and images",
    responses=errors(404, 503, codes={404: ["job_not_found"]}),
)
def get_job(job_id: str, use: UseCases, owner: OwnerDep) -> JobOut:
    return JobOut.of(use.job_reader().get(job_id, owner))


@router.delete(
    "/v1/jobs/{job_id}",
    status_code=204,
    response_class=Response,
    summary="Delete a queued or finished job and its images",
    responses={
        204: {"description": "Deleted: the job is gone from the database and its images from the disk."},
        **errors(404, 409, 503, codes={404: ["job_not_found"], 409: ["job_running", "concurrent_update"]}),
    },
)
def delete_job(job_id: str, use: UseCases, owner: OwnerDep) -> Response:
    """A running job is refused with 409 `job_running`: cancel it, and delete it once it has stopped. Its image
    URLs answer 404 afterwards. `ATELIER_JOB_RETENTION_DAYS` deletes finished jobs by age."""
    use.delete_job()(job_id, owner)
    return Response(status_code=204)


@router.post(
    "/v1/jobs/{job_id}/cancel",
    response_model=JobOut,
    summary="Cancel a queued or running job",
    responses=errors(404, 409, 503, codes={404: ["job_not_found"], 409: ["job_finished", "concurrent_update"]}),
)
def cancel(job_id: str, use: UseCases, owner: OwnerDep) -> JobOut:
    """A queued job is cancelled at once; a running one stops within one denoising step. 409 if finished."""
    return JobOut.of(use.cancel_job()(job_id, owner))


@router.get(
    "/v1/jobs/{job_id}/events",
    summary="Server-sent progress events",
    response_class=StreamingResponse,
    responses={
        200: {
            "content": {"text/event-stream": {}},
            "description": "Events `progress` and, last, `done`; the data of each is the job (`JobOut`) as JSON.",
        },
        **errors(404, 503, codes={404: ["job_not_found"]}),
    },
)
async def events(job_id: str, request: Request, atelier: AtelierDep, owner: OwnerDep) -> StreamingResponse:
    """`event: progress` whenever status or progress changes, then one `event: done` with the finished job.
    The stream wakes on the job's own changes (announced across processes on PostgreSQL), not by polling."""
    first = await run_in_threadpool(atelier.job, job_id, owner)  # 404 before the stream starts

    async def stream() -> AsyncIterator[str]:
        job, last, quiet_since = first, None, time.monotonic()
        watch = atelier.watch_job(job_id)  # woken by each committed change of the job, from any process
        try:
            while True:
                state = (job.status, round(job.progress, 4))
                if state != last:
                    last, quiet_since = state, time.monotonic()
                    payload = JobOut.of(job).model_dump_json()
                    yield f"event: {'done' if job.status.finished else 'progress'}\ndata: {payload}\n\n"
                if job.status.finished or await request.is_disconnected():
                    return
                if time.monotonic() - quiet_since >= KEEP_ALIVE_SECONDS:
                    quiet_since = time.monotonic()
                    yield ": keep-alive\n\n"
                await watch.wait_async(EVENTS_FALLBACK_POLL)  # an announcement, or a look after a second anyway
                job = await run_in_threadpool(atelier.job, job_id, owner)
        finally:
            watch.close()

    headers = {"Cache-Control": "no-cache", "X-Accel-Buffering": "no"}
    return StreamingResponse(stream(), media_type="text/event-stream", headers=headers)


@router.get(
    "/v1/images/{image_id}",
    summary="A result image (PNG with its generation parameters)",
    response_class=FileResponse,
    responses={
        200: {"content": {"image/png": {"schema": {"type": "string", "format": "binary"}}}},
        **errors(404, 503, codes={404: ["image_not_found"]}),
    },
)
def image(image_id: str, atelier: AtelierDep, owner: OwnerDep) -> FileResponse:
    return FileResponse(atelier.image_path(image_id, owner), media_type="image/png", filename=f"{image_id}.png")
