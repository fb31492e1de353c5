"""Run one queued job: claim it, generate outside any transaction, record the outcome."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable

from app.domain.errors import (
    AtelierError,
    ConcurrentUpdate,
    JobCancelled,
    JobNotFound,
    JobTakenOver,
    TimeBudgetExceeded,
    UnknownModel,
)
from app.domain.generation import GenerationParams, infotext
from app.domain.jobs import GenerationJob, JobStatus
from app.domain.models import ModelKind
from app.ports import log_context
from app.ports.clock import Clock
from app.ports.generation import GeneratedImage, ImageGenerator, ImageStore, ModelCatalog, ProgressSink
from app.ports.metrics import JobMetrics
from app.ports.persistence import UnitOfWorkFactory
from app.ports.webhooks import JobCallbacks
from app.usecases.generation_inputs import build_request

log = logging.getLogger(__name__)
_RETRIES = 5


class RunGeneration:
    """The executor's job handler.

    Three short transactions: claim (``queued -> running``), throttled progress writes
    (which double as the check for a cancel recorded by another process), and the outcome.
    Optimistic versioning makes the claim safe when two workers race for one job.
    """

    def __init__(
        self,
        uow: UnitOfWorkFactory,
        catalog: ModelCatalog,
        generator: ImageGenerator,
        images: ImageStore,
        clock: Clock,
        progress_interval: float = 0.25,
        time_budget: float = 0.0,
        metrics: JobMetrics | None = None,
        callbacks: JobCallbacks | None = None,
        worker_id: str | None = None,
    ) -> None:
        self._uow = uow
        self._catalog = catalog
        self._generator = generator
        self._images = images
        self._clock = clock
        self.progress_interval = progress_interval
        self.time_budget = time_budget  # seconds a job may run (0: no limit)
        self._metrics = metrics
        self._callbacks = callbacks
        self._worker_id = worker_id  # recorded on the jobs this process runs; only it may write their outcome

    def __call__(self, job_id: str, cancel_signal: Callable[[], bool]) -> None:
        with log_context.job(job_id):
            self._run(job_id, cancel_signal)

    def _run(self, job_id: str, cancel_signal: Callable[[], bool]) -> None:
        job = self._claim(job_id)
        if job is not None:
            self._execute([job], lambda _job_id: cancel_signal())

    def run_batch(self, job_ids: list[str], cancel_signal: Callable[[str], bool]) -> None:
        """Jobs with one batching key, run as one generator call; each keeps its own outcome."""
        self._execute([job for job in (self._claim(job_id) for job_id in job_ids) if job is not None], cancel_signal)

    def run_claimed(self, job_ids: list[str], cancel_signal: Callable[[str], bool]) -> None:
        """Jobs this worker claimed from the shared queue (``ClaimJobs``): already running under its id."""
        jobs = []
        for job_id in job_ids:
            try:
                with self._uow() as uow:
                    job = uow.jobs.get(job_id)
                self._fence(job)
            except (JobNotFound, JobTakenOver):
                continue  # deleted, or reaped and taken by another worker since the claim
            if job.status is JobStatus.RUNNING:
                jobs.append(job)
        if len(jobs) == 1:
            with log_context.job(jobs[0].id):
                self._execute(jobs, cancel_signal)
        else:
            self._execute(jobs, cancel_signal)

    def _execute(self, jobs: list[GenerationJob], cancel_signal: Callable[[str], bool]) -> None:
        """One generator call for the jobs (one batching key); each keeps its own outcome."""
        requests, ready = [], []
        for job in jobs:
            try:
                requests.append(build_request(job.params, self._catalog, self._images))
                ready.append(job)
            except Exception as error:
                self._record(job, error)
        if not ready:
            return
        sinks: list[ProgressSink] = [_JobProgress(self, job.id, _bound(cancel_signal, job.id)) for job in ready]
        if self._metrics is not None:
            self._metrics.batch_ran(len(ready))
        outcomes: list[list[GeneratedImage] | Exception]
        try:
            if len(ready) == 1:
                outcomes = [self._generator.generate(requests[0], sinks[0])]
            else:
                outcomes = list(self._generator.generate_batch(requests, sinks))
        except Exception as error:
            outcomes = [error] * len(ready)
        for job, outcome in zip(ready, outcomes, strict=True):
            self._record(job, outcome)

    def _record(self, job: GenerationJob, outcome: list[GeneratedImage] | Exception) -> None:
        """Store the images and the final status (one short transaction), then report the outcome."""
        with log_context.job(job.id):
            try:
                finished = self._store_outcome(job, outcome)
            except JobTakenOver:  # taken over between the check and the write: the other run's outcome stands
                log.warning("job %s was taken over by another worker; this run's outcome is dropped", job.id)
                return
            started, ended = finished.started_at, finished.finished_at
            ran = started is not None and ended is not None
            seconds = (ended - started).total_seconds() if started is not None and ended is not None else 0.0
            extra: dict[str, object] = {"event": "job_finished", "job_id": job.id, "status": finished.status.value}
            extra |= {"seconds": round(seconds, 3), "error_code": finished.error_code}
            log.info("job %s %s", job.id, finished.status.value, extra=extra)
            if self._callbacks is not None:
                self._callbacks.job_ended(finished)
        if self._metrics is not None and ran:
            try:
                family = self._catalog.get(job.params.model, ModelKind.BASE).family.value
            except UnknownModel:
                family = "unknown"
            self._metrics.job_finished(str(job.params.mode), family, finished.status.value, seconds)

    def _fence(self, job: GenerationJob) -> None:
        """Only the worker that started this run writes to the job (its id is on the job while it runs)."""
        if self._worker_id is not None and job.worker_id != self._worker_id:
            raise JobTakenOver(f"Job {job.id} was taken over by another worker.")

    def _store_outcome(self, job: GenerationJob, outcome: list[GeneratedImage] | Exception) -> GenerationJob:
        job_id = job.id
        try:
            self._update(job_id, self._fence)  # taken over meanwhile: the other run's images and outcome stand
        except JobTakenOver:
            log.warning("job %s was taken over by another worker; this run's outcome is dropped", job_id)
            with self._uow() as uow:
                return uow.jobs.get(job_id)
        try:
            if isinstance(outcome, Exception):
                raise outcome
            self._images.delete_job(job_id)
            refs = [
                self._images.save(job_id, i, image, image_infotext(job.params, image, self._catalog))
                for i, image in enumerate(outcome)
            ]
        except TimeBudgetExceeded as over:
            code, text = over.code, f"{over.message} (the budget is {self.time_budget:g} s)"
            return self._final(job_id, lambda j: j.fail(code, text, self._clock.now()))
        except JobCancelled:
            return self._final(job_id, lambda j: j.mark_cancelled(self._clock.now()))
        except AtelierError as error:
            code, text = error.code, error.message
            return self._final(job_id, lambda j: j.fail(code, text, self._clock.now()))
        except Exception as e:  # a bug or an unexpected library error: keep the worker alive
            log.error("job %s failed", job_id, exc_info=e)
            message = "Image generation failed unexpectedly; the server log has the details."
            return self._final(job_id, lambda j: j.fail("generation_failed", message, self._clock.now()))
        return self._final(job_id, lambda j: j.succeed(refs, self._clock.now()))

    def _claim(self, job_id: str) -> GenerationJob | None:
        try:
            with self._uow() as uow:
                job = uow.jobs.get(job_id)
                if job.status is not JobStatus.QUEUED:
                    return None
                job.start(self._clock.now(), self._worker_id)
                uow.jobs.save(job)
                uow.commit()
            extra = {"event": "job_started", "job_id": job_id, "model": job.params.model, "mode": str(job.params.mode)}
            log.info("job %s started", job_id, extra=extra)
            return job
        except (ConcurrentUpdate, JobNotFound):
            return None  # another worker claimed it, it was cancelled meanwhile, or deleted while queued

    def _final(self, job_id: str, change: Callable[[GenerationJob], None]) -> GenerationJob:
        """The outcome's write, fenced: a run whose job was taken over meanwhile writes nothing."""

        def fenced(job: GenerationJob) -> None:
            self._fence(job)
            change(job)

        return self._update(job_id, fenced)

    def _update(self, job_id: str, change: Callable[[GenerationJob], None]) -> GenerationJob:
        for _attempt in range(_RETRIES):
            try:
                with self._uow() as uow:
                    job = uow.jobs.get(job_id)
                    change(job)
                    uow.jobs.save(job)
                    uow.commit()
                    return job
            except ConcurrentUpdate:
                continue
        raise ConcurrentUpdate(f"Job {job_id} kept changing while its outcome was recorded.")

    def record_progress(self, job_id: str, fraction: float) -> None:
        """Write progress; raise ``JobCancelled`` when a cancel was recorded meanwhile."""

        def change(job: GenerationJob) -> None:
            self._fence(job)
            if job.cancel_requested:
                raise JobCancelled()
            job.report_progress(fraction, self._clock.now())

        self._update(job_id, change)


def _bound(signal: Callable[[str], bool], job_id: str) -> Callable[[], bool]:
    return lambda: signal(job_id)


class _JobProgress(ProgressSink):
    def __init__(self, runner: RunGeneration, job_id: str, cancel_signal: Callable[[], bool]) -> None:
        self._runner = runner
        self._job_id = job_id
        self._cancel_signal = cancel_signal
        self._last_write = time.monotonic()  # the claim just wrote the job
        budget = runner.time_budget
        self._deadline = self._last_write + budget if budget > 0 else None

    def step(self, done: int, total: int) -> None:
        if self._cancel_signal():
            raise JobCancelled()
        if self._deadline is not None and time.monotonic() > self._deadline:
            raise TimeBudgetExceeded()
        now = time.monotonic()
        # Throttled: short jobs write no progress at all; the outcome follows at once.
        if now - self._last_write >= self._runner.progress_interval and done < total:
            self._last_write = now
            self._runner.record_progress(self._job_id, done / max(total, 1))


def image_infotext(params: GenerationParams, image: GeneratedImage, catalog: ModelCatalog) -> str:
    """The A1111 parameters text of one image: the sampler that ran and the hashes of the LoRAs applied."""
    hashes = {}
    for lora in params.loras:
        try:
            found = catalog.get(lora.name, ModelKind.LORA).sha256
        except UnknownModel:  # removed from the registry since: the tag still names it
            continue
        if found:
            hashes[lora.name] = found
    return infotext(params, image.seed, sampler=image.sampler, lora_hashes=hashes)
