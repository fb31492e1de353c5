"""Run a claimed training job to its end: train (resuming from the job's checkpoint), report each step, register the
result as a model, and record how the job ended.

The job's folder (``work_root/<id>``) holds its checkpoint, so a job started again after its worker died resumes
where the checkpoint left it. Each step writes the job's step and loss and a ``metrics`` event; a cancel asked
for through the store stops the run after the step in progress (with a checkpoint). The result is registered
before the job is marked succeeded, so a client that sees ``succeeded`` can use the model at once: a language
model's adapter as ``BASE:NAME`` in a chat request, an image LoRA as ``<lora:NAME:w>``.
"""

from __future__ import annotations

import errno
import logging
from collections.abc import Callable
from pathlib import Path
from typing import Any

from app.domain.errors import AtelierError, NotFound
from app.domain.image_dataset import parse_image_archive
from app.domain.models import ModelKind
from app.domain.training import EventKind, TrainingJob, TrainingKind, parse_chat_records
from app.ports.clock import Clock
from app.ports.generation import ModelCatalog
from app.ports.training import FileStore, Trainer, TrainingJobStore
from app.usecases.submit_training import BaseModels

log = logging.getLogger(__name__)


class SampleNotFound(NotFound):
    code = "sample_not_found"
    default_message = "No such sample image."


class RunTraining:
    def __init__(
        self,
        store: TrainingJobStore,
        files: FileStore,
        catalog: ModelCatalog,
        base_models: BaseModels,
        trainer: Callable[[TrainingKind], Trainer],
        clock: Clock,
        work_root: str,
        results_root: str,
    ) -> None:
        self._store, self._files, self._catalog, self._base_models = store, files, catalog, base_models
        self._trainer, self._clock = trainer, clock
        self._work_root, self._results_root = Path(work_root), Path(results_root)

    def claim_and_run(self, worker_id: str) -> TrainingJob | None:
        """Run the oldest queued job, if any; returns it as it ended."""
        job = self._store.claim(worker_id, self._clock.now())
        return self.run(job) if job is not None else None

    def run(self, job: TrainingJob) -> TrainingJob:
        spec = job.spec
        work = self._work_root / job.id
        out = self._results_root / spec.result_name
        self._event(job, "resumed from its checkpoint" if job.attempts > 1 else "started")
        try:
            data = self._files.read(spec.training_file)
            records: list[Any]
            if spec.kind is TrainingKind.IMAGE_LORA:
                records = parse_image_archive(data, "training_file")
            else:
                records = parse_chat_records(data, "training_file")
            held = None
            if spec.validation_file:
                held = parse_chat_records(self._files.read(spec.validation_file), "validation_file")
            base = self._base_models(spec.kind, spec.base_model)
            outcome = self._trainer(spec.kind).train(
                spec,
                base,
                records,
                str(out),
                str(work),
                lambda *step: self._report(job, *step),
                self._cancelled(job),
                held,
                lambda step, names: self._samples(job, step, names),
            )
            if not outcome.finished:
                self._event(job, f"cancelled at step {outcome.steps}")
                return self._store.update(job.id, lambda j: j.mark_cancelled(self._clock.now()))
            name = self._register(job, str(out))
            self._event(job, f"succeeded: {name}")
            return self._store.update(job.id, lambda j: j.succeed(name, self._clock.now()))
        except AtelierError as e:
            return self._fail(job, e.code, e.message)
        except OSError as e:
            if e.errno == errno.ENOSPC:  # the checkpoint in progress was written aside: the last good one stays
                return self._fail(job, "disk_full", "The disk filled up; the last checkpoint is kept.")
            log.exception("training job %s failed", job.id)
            return self._fail(job, "training_failed", "Training failed unexpectedly; the server log has the details.")
        except Exception:
            log.exception("training job %s failed", job.id)
            return self._fail(job, "training_failed", "Training failed unexpectedly; the server log has the details.")

    def _register(self, job: TrainingJob, out: str) -> str:
        spec = job.spec
        if spec.kind is TrainingKind.IMAGE_LORA:
            self._catalog.add(spec.result_name, out, kind=ModelKind.LORA)
            return spec.result_name
        if spec.lora_rank == 0:  # every weight: a model of its own
            self._catalog.add(spec.result_name, out, kind=ModelKind.LLM)
            return spec.result_name
        self._catalog.add(spec.result_name, out, kind=ModelKind.LLM_LORA)
        return f"{spec.base_model}:{spec.result_name}"

    def _report(self, job: TrainingJob, step: int, total: int, loss: float, validation: float | None) -> None:
        now = self._clock.now()
        self._store.update(job.id, lambda j: j.report(step, total, loss, now))
        message = f"step {step}/{total}: loss {loss:.4f}" + (f", validation {validation:.4f}" if validation else "")
        self._store.add_event(job.id, EventKind.METRICS, message, now, step, loss, validation)

    def _samples(self, job: TrainingJob, step: int, names: list[str]) -> None:
        message = f"step {step}: {len(names)} sample image{'s' if len(names) != 1 else ''}"
        self._store.add_event(job.id, EventKind.SAMPLE, message, self._clock.now(), step, images=tuple(names))

    def sample(self, job_id: str, owner: str | None, name: str) -> bytes:
        """A sample image of the owner's job by the name its event gives; raises ``TrainingJobNotFound`` (also for
        another owner's job) or ``NotFound`` (no such sample)."""
        job = self._store.get(job_id, owner)
        known = {image for event in self._store.events(job.id) for image in event.images}
        path = self._work_root / job.id / "samples" / name
        if name not in known or not path.is_file():
            raise SampleNotFound(f"No sample {name!r} of training job {job_id}.")
        return path.read_bytes()

    def _cancelled(self, job: TrainingJob) -> Callable[[], bool]:
        return lambda: self._store.get(job.id).cancel_requested

    def _event(self, job: TrainingJob, message: str) -> None:
        self._store.add_event(job.id, EventKind.MESSAGE, message, self._clock.now())

    def _fail(self, job: TrainingJob, code: str, message: str) -> TrainingJob:
        self._event(job, f"failed: {message}")
        return self._store.update(job.id, lambda j: j.fail(code, message, self._clock.now()))
