"""Render prompts as ordinary generation jobs and wait for their images.

What a prompt-session turn and the scoring of prompts (RL of the rewriter) draw with. The prompts are
submitted like any job, all in one transaction and queued together: stored before they are queued,
queued behind the jobs already waiting, batched by the executor with the queued jobs of their batching
key (a turn's renders share one, so they run as one batch, with other callers' jobs of the same key),
run by ``RunGeneration``, listed, cancellable and recovered after a crash. Then every job is awaited
and its images are read back from the image store.

A job that fails, is cancelled or is not finished in time fails the whole render with ``RenderFailed``;
the render's jobs that are still queued or running are then cancelled, so no worker spends time on
images nobody waits for.

A job takes its input images as uploads (``init_image`` is an upload id). ``KeepAsInput`` makes a result
image (a turn's chosen image, which an edit turn renders instruct edits of) one of its owner's uploads.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass

from app.domain.errors import GenerationFailed, LimitExceeded, RenderFailed
from app.domain.generation import GenerationParams
from app.domain.jobs import GenerationJob, JobStatus
from app.ports.generation import ImageCodec, ImageStore, RgbImage
from app.usecases.await_job import AwaitJob
from app.usecases.cancel_job import CancelJob
from app.usecases.submit_generation import SubmitGeneration

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Render:
    """A succeeded job and its images, in the order of ``job.images``."""

    job: GenerationJob
    images: list[RgbImage]

    @property
    def image_id(self) -> str:
        return self.job.images[0].id

    @property
    def image(self) -> RgbImage:
        return self.images[0]


class RenderPrompts:
    """``timeout``: the seconds to wait for each job, counted from when the wait for it begins (0: no limit).
    Without a worker to run the jobs (none in this process, none in another one sharing the database), the
    render fails with ``render_timeout`` once it has passed."""

    def __init__(
        self,
        submit: SubmitGeneration,
        await_job: AwaitJob,
        cancel: CancelJob,
        images: ImageStore,
        timeout: float = 0.0,
    ) -> None:
        self._submit, self._await_job, self._cancel, self._images = submit, await_job, cancel, images
        self._timeout = timeout

    def __call__(self, owner: str, params: Sequence[GenerationParams]) -> list[Render]:
        """One succeeded job per entry of ``params``, in order. Raises what ``SubmitGeneration`` raises
        (nothing of the render is left queued then) and ``RenderFailed``."""
        jobs: list[GenerationJob] = []
        finished: dict[str, GenerationJob] = {}
        try:
            try:  # all at once: a worker finds them together, so the jobs of one key run as one batch
                jobs.extend(self._submit.many(owner, params))
            except LimitExceeded:  # more than the owner's queue has room for: in parts, as room frees up
                for entry in params:
                    jobs.append(self._submit_when_room(owner, entry, jobs, finished))
            for job in jobs:
                if job.id not in finished:
                    finished[job.id] = self._finished(job.id, owner)
            renders = []
            for job in jobs:
                done = finished[job.id]
                renders.append(Render(done, [self._images.read(ref.id) for ref in done.images]))
            return renders
        except BaseException:
            self._cancel_unfinished([job.id for job in jobs if job.id not in finished], owner)
            raise

    def _submit_when_room(
        self, owner: str, params: GenerationParams, earlier: list[GenerationJob], finished: dict[str, GenerationJob]
    ) -> GenerationJob:
        """Submit; while the owner's queue is full with this render's own jobs, wait for the oldest of them
        first (a render larger than the per-owner queue limit runs in parts)."""
        while True:
            try:
                return self._submit(owner, params)
            except LimitExceeded:
                pending = [job.id for job in earlier if job.id not in finished]
                if not pending:
                    raise
                finished[pending[0]] = self._finished(pending[0], owner)

    def _finished(self, job_id: str, owner: str) -> GenerationJob:
        job = self._await_job(job_id, self._timeout or None, owner=owner)
        if job.status is JobStatus.SUCCEEDED:
            return job
        if job.status is JobStatus.FAILED:
            raise RenderFailed(
                job.error_message or f"Render job {job_id} failed.",
                code=job.error_code or GenerationFailed.code,
                job_id=job_id,
            )
        if job.status is JobStatus.CANCELLED:
            raise RenderFailed(f"Render job {job_id} was cancelled.", code="cancelled", job_id=job_id)
        raise RenderFailed(
            f"Render job {job_id} was still {job.status.value} after {self._timeout:g} s, so the render was "
            "cancelled. Rendering needs a running worker: the server's, or one started in this process.",
            code="render_timeout",
            job_id=job_id,
        )

    def _cancel_unfinished(self, job_ids: list[str], owner: str) -> None:
        for job_id in job_ids:
            try:
                self._cancel(job_id, owner)
            except Exception as error:  # finished meanwhile, or the database is gone: the first error stands
                log.debug("render job %s was not cancelled: %s", job_id, error)


class KeepAsInput:
    """A result image kept as one of ``owner``'s uploads, so a job can take it as its ``init_image``.

    Through the ports every upload takes (the pixels read, encoded as PNG, validated and kept by the image
    store), so the store needs no second kind of input. Uploads are addressed by owner and content: keeping
    the same image again (another edit turn from the same head) gives the same id and stores nothing new."""

    def __init__(self, images: ImageStore, codec: ImageCodec) -> None:
        self._images, self._codec = images, codec

    def __call__(self, image_id: str, owner: str) -> str:
        """The upload id; raises ``ImageNotFound`` when the result image is gone."""
        return self._images.put_input(self._codec.encode_png(self._images.read(image_id)), owner).id
