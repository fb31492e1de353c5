"""Use cases against fakes: assert end state, not call order."""

from __future__ import annotations

from dataclasses import dataclass, field

import pytest

from app.domain.errors import JobCancelled, JobNotCancellable, JobNotFound, ModelUnavailable, UnknownModel
from app.domain.generation import GenerationParams
from app.domain.jobs import JobStatus
from app.ports.generation import GeneratedImage, GenerationRequest, ProgressSink
from app.usecases.cancel_job import CancelJob
from app.usecases.recover_jobs import RecoverJobs
from app.usecases.run_generation import RunGeneration
from app.usecases.submit_generation import SubmitGeneration
from tests.fakes import (
    FakeClock,
    InMemoryImageStore,
    InMemoryJobReader,
    InMemoryJobStore,
    InMemoryUnitOfWorkFactory,
    ManualExecutor,
    PatternImageGenerator,
    demo_catalog,
)


@dataclass
class World:
    store: InMemoryJobStore = field(default_factory=InMemoryJobStore)
    executor: ManualExecutor = field(default_factory=ManualExecutor)
    generator: PatternImageGenerator = field(default_factory=PatternImageGenerator)
    images: InMemoryImageStore = field(default_factory=InMemoryImageStore)
    clock: FakeClock = field(default_factory=FakeClock)

    def __post_init__(self) -> None:
        self.uow = InMemoryUnitOfWorkFactory(self.store)
        self.reader = InMemoryJobReader(self.store)
        self.catalog = demo_catalog()
        self.submit = SubmitGeneration(self.uow, self.catalog, self.images, self.executor, self.clock)
        self.run = RunGeneration(self.uow, self.catalog, self.generator, self.images, self.clock, progress_interval=0)
        self.cancel = CancelJob(self.uow, self.executor, self.clock)
        self.executor.start(self.run)


def params(**values: object) -> GenerationParams:
    return GenerationParams(**{"prompt": "一只红色的圆形", "model": "demo", "steps": 4, **values})  # type: ignore[arg-type]


def test_submit_commits_a_queued_job_before_enqueueing() -> None:
    w = World()
    job = w.submit("local", params())
    stored = w.reader.get(job.id)
    assert stored.status is JobStatus.QUEUED
    assert (stored.params.width, stored.params.height) == (64, 64)  # the model's native size
    assert stored.params.seed is not None and stored.seed == job.seed
    assert w.executor.queued == [job.id]


def test_submit_unknown_model_stores_nothing() -> None:
    w = World()
    with pytest.raises(UnknownModel):
        w.submit("local", params(model="nope"))
    assert w.reader.list().total == 0 and w.executor.queued == []


def test_run_generates_stores_images_and_succeeds() -> None:
    w = World()
    job = w.submit("local", params(num_images=2, seed=41))
    w.executor.run_all()
    done = w.reader.get(job.id)
    assert done.status is JobStatus.SUCCEEDED and done.progress == 1.0
    assert [i.seed for i in done.images] == [41, 42]
    image, text = w.images.images[done.images[1].id]
    assert (image.width, image.height, image.seed) == (64, 64, 42)
    assert "Seed: 42" in text and text.startswith("一只红色的圆形")


def test_running_twice_does_not_rerun_a_finished_job() -> None:
    w = World()
    job = w.submit("local", params())
    w.executor.run_all()
    w.run(job.id, lambda: False)
    assert len(w.generator.calls) == 1


def test_cancel_queued_job_never_runs() -> None:
    w = World()
    job = w.submit("local", params())
    assert w.cancel(job.id).status is JobStatus.CANCELLED
    w.executor.run_all()
    assert w.reader.get(job.id).status is JobStatus.CANCELLED and w.generator.calls == []


def test_cancel_signal_stops_a_running_job_within_one_step() -> None:
    w = World()
    steps_seen: list[int] = []

    class Recording(PatternImageGenerator):
        def generate(self, request: GenerationRequest, progress: ProgressSink) -> list[GeneratedImage]:
            p = request.params
            for step in range(p.steps):
                steps_seen.append(step + 1)
                if step == 1:
                    w.cancel(job.id)  # arrives while step 2 runs
                progress.step(step + 1, p.steps)
            raise AssertionError("should have been cancelled")

    w.run = RunGeneration(w.uow, w.catalog, Recording(), w.images, w.clock, progress_interval=0)
    w.executor.start(w.run)
    job = w.submit("local", params(steps=10))
    w.executor.run_all()
    assert steps_seen == [1, 2]
    assert w.reader.get(job.id).status is JobStatus.CANCELLED


def test_cancel_recorded_by_another_process_is_seen_at_the_next_progress_write() -> None:
    w = World()
    job = w.submit("local", params(steps=10))

    class CancelsInDatabase(PatternImageGenerator):
        def generate(self, request: GenerationRequest, progress: ProgressSink) -> list[GeneratedImage]:
            p = request.params
            progress.step(1, p.steps)
            CancelJob(w.uow, ManualExecutor(), w.clock)(job.id)  # another process: no local signal
            with pytest.raises(JobCancelled):
                progress.step(2, p.steps)
            raise JobCancelled()

    RunGeneration(w.uow, w.catalog, CancelsInDatabase(), w.images, w.clock, progress_interval=0)(job.id, lambda: False)
    assert w.reader.get(job.id).status is JobStatus.CANCELLED


def test_cancel_finished_job_conflicts_and_unknown_job_is_not_found() -> None:
    w = World()
    job = w.submit("local", params())
    w.executor.run_all()
    with pytest.raises(JobNotCancellable):
        w.cancel(job.id)
    with pytest.raises(JobNotFound):
        w.cancel("0" * 32)
    with pytest.raises(JobNotFound):
        w.cancel(job.id, owner="someone-else")


def test_generator_errors_fail_the_job_with_their_code() -> None:
    w = World()

    class Broken(PatternImageGenerator):
        def generate(self, request: GenerationRequest, progress: ProgressSink) -> list[GeneratedImage]:
            raise ModelUnavailable("weights missing")

    class Buggy(PatternImageGenerator):
        def generate(self, request: GenerationRequest, progress: ProgressSink) -> list[GeneratedImage]:
            raise ZeroDivisionError("boom")

    for generator, code in [(Broken(), "model_unavailable"), (Buggy(), "generation_failed")]:
        job = w.submit("local", params())
        w.executor.queued.clear()
        RunGeneration(w.uow, w.catalog, generator, w.images, w.clock)(job.id, lambda: False)
        failed = w.reader.get(job.id)
        assert (failed.status, failed.error_code) == (JobStatus.FAILED, code)
        assert failed.error_message


def test_recover_requeues_running_jobs_and_returns_the_queue_oldest_first() -> None:
    w = World()
    first = w.submit("local", params())
    second = w.submit("local", params())
    w.run._claim(first.id)  # a worker claimed it, then the process died
    assert w.reader.get(first.id).status is JobStatus.RUNNING
    assert RecoverJobs(w.uow, w.clock)() == [first.id, second.id]
    assert w.reader.get(first.id).status is JobStatus.QUEUED
    w.executor.queued = [first.id, second.id]
    w.executor.run_all()
    assert {w.reader.get(j.id).status for j in (first, second)} == {JobStatus.SUCCEEDED}


def test_two_workers_racing_for_one_job_run_it_once() -> None:
    w = World()
    job = w.submit("local", params())
    assert w.run._claim(job.id) is not None
    assert w.run._claim(job.id) is None


def test_a_batch_records_each_jobs_own_outcome() -> None:
    w = World()
    jobs = [w.submit("local", params(prompt=f"第{i}只猫", seed=10 * i, num_images=i + 1)) for i in range(3)]
    assert len({w.executor.keys[j.id] for j in jobs}) == 1  # text-to-image, same settings: one batching key
    w.executor.queued.clear()
    w.run.run_batch([j.id for j in jobs], lambda job_id: job_id == jobs[1].id)
    done = [w.reader.get(j.id) for j in jobs]
    assert [j.status for j in done] == [JobStatus.SUCCEEDED, JobStatus.CANCELLED, JobStatus.SUCCEEDED]
    assert [i.seed for i in done[2].images] == [20, 21, 22] and done[1].images == []
    assert w.generator.batches == [3]


def test_jobs_with_different_settings_or_inputs_get_different_or_no_keys() -> None:
    w = World()
    upload = w.images.put_input(b"64x64").id
    plain = w.submit("local", params())
    other_steps = w.submit("local", params(steps=5))
    img2img = w.submit("local", params(init_image=upload))
    keys = w.executor.keys
    assert keys[plain.id] != keys[other_steps.id] and keys[img2img.id] is None
