"""A job's worker is recorded when it starts: only that worker writes its outcome, and a job whose worker went
silent is requeued (by any live process) or fails after three starts; a live worker's job is left alone."""

from __future__ import annotations

import os
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path

import pytest

from app.adapters.memory.generation import PatternImageGenerator
from app.adapters.memory.jobs import InMemoryJobStore, InMemoryUnitOfWorkFactory
from app.adapters.memory.workers import InMemoryWorkerRegistry
from app.adapters.sql import migrate
from app.adapters.sql.engine import make_engine, session_factory
from app.adapters.sql.uow import SqlUnitOfWorkFactory
from app.adapters.sql.workers import SqlWorkerRegistry
from app.domain.generation import GenerationParams
from app.domain.jobs import GenerationJob, JobStatus, new_job_id
from app.domain.workers import WorkerInfo
from app.ports.generation import GeneratedImage, GenerationRequest, ProgressSink
from app.ports.persistence import UnitOfWorkFactory
from app.ports.workers import WorkerRegistry
from app.usecases.recover_jobs import RecoverJobs
from app.usecases.run_generation import RunGeneration
from tests.fakes import FakeClock, InMemoryImageStore, demo_catalog


@pytest.fixture(params=["memory", "sqlite"])
def stores(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[tuple[UnitOfWorkFactory, WorkerRegistry]]:
    if request.param == "memory":
        yield InMemoryUnitOfWorkFactory(InMemoryJobStore()), InMemoryWorkerRegistry()
        return
    url = f"sqlite:///{tmp_path / 'atelier.db'}"
    migrate.upgrade(url)
    engine = make_engine(url)
    sessions = session_factory(engine)
    yield SqlUnitOfWorkFactory(sessions), SqlWorkerRegistry(sessions)
    engine.dispose()


def running(uow: UnitOfWorkFactory, clock: FakeClock, job_id: str, worker: str | None, attempts: int = 1) -> None:
    params = GenerationParams(prompt="猫", model="demo", width=64, height=64, steps=2, seed=1)
    job = GenerationJob.create("alice", params, clock.now(), job_id=job_id)
    job.attempts = attempts - 1
    job.start(clock.now(), worker)
    with uow() as unit:
        unit.jobs.add(job)
        unit.commit()


def test_the_jobs_of_silent_workers_are_requeued_or_failed_and_live_ones_are_left(
    stores: tuple[UnitOfWorkFactory, WorkerRegistry],
) -> None:
    uow, registry = stores
    clock = FakeClock()
    now = clock.now()
    registry.beat(WorkerInfo("live", "h", 1, 1, (), now, now))
    registry.beat(WorkerInfo("silent", "h", 2, 1, (), now - timedelta(minutes=5), now - timedelta(minutes=5)))
    for job_id, worker, attempts in (("a", "live", 1), ("b", "silent", 1), ("c", None, 1), ("d", "silent", 3)):
        running(uow, clock, job_id, worker, attempts)
    recover = RecoverJobs(uow, clock, registry, heartbeat=10)
    assert recover.reap() == ["b"]  # a: its worker is alive; c: no worker recorded, only start-up takes it
    with uow() as unit:
        statuses = {job_id: unit.jobs.get(job_id) for job_id in "abcd"}
    assert statuses["a"].status is JobStatus.RUNNING and statuses["a"].worker_id == "live"
    assert statuses["b"].status is JobStatus.QUEUED and statuses["b"].worker_id is None
    assert statuses["c"].status is JobStatus.RUNNING
    assert (statuses["d"].status, statuses["d"].error_code) == (JobStatus.FAILED, "worker_lost")
    assert recover() == ["b", "c"]  # start-up also takes the jobs of no worker; every queued id, oldest first


class _TakenOverDuringTheRun(PatternImageGenerator):
    """Another worker takes the job over while this one generates."""

    def __init__(self, uow: UnitOfWorkFactory, clock: FakeClock) -> None:
        super().__init__()
        self._uow, self._clock = uow, clock

    def generate(self, request: GenerationRequest, progress: ProgressSink) -> list[GeneratedImage]:
        with self._uow() as unit:
            job = unit.jobs.get(request.params.prompt)  # the prompt carries the job id here
            job.requeue(self._clock.now())
            job.start(self._clock.now(), "other-worker")
            unit.jobs.save(job)
            unit.commit()
        return super().generate(request, progress)


def test_a_run_whose_job_was_taken_over_writes_nothing(stores: tuple[UnitOfWorkFactory, WorkerRegistry]) -> None:
    uow, _ = stores
    clock, images = FakeClock(), InMemoryImageStore()
    params = GenerationParams(prompt="job-1", model="demo", width=64, height=64, steps=2, seed=1)
    with uow() as unit:
        unit.jobs.add(GenerationJob.create("alice", params, clock.now(), job_id="job-1"))
        unit.commit()
    run = RunGeneration(uow, demo_catalog(), _TakenOverDuringTheRun(uow, clock), images, clock, worker_id="me")
    run("job-1", lambda: False)
    with uow() as unit:
        job = unit.jobs.get("job-1")
    assert (job.status, job.worker_id, job.attempts) == (JobStatus.RUNNING, "other-worker", 2)
    assert images.images == {}  # the other run's images will be the job's


def test_a_run_records_its_worker_and_counts_its_starts(stores: tuple[UnitOfWorkFactory, WorkerRegistry]) -> None:
    uow, _ = stores
    clock = FakeClock()
    params = GenerationParams(prompt="猫", model="demo", width=64, height=64, steps=2, seed=1)
    job_id = new_job_id()
    with uow() as unit:
        unit.jobs.add(GenerationJob.create("alice", params, clock.now(), job_id=job_id))
        unit.commit()
    RunGeneration(uow, demo_catalog(), PatternImageGenerator(), InMemoryImageStore(), clock, worker_id="me")(
        job_id, lambda: False
    )
    with uow() as unit:
        job = unit.jobs.get(job_id)
    assert (job.status, job.worker_id, job.attempts) == (JobStatus.SUCCEEDED, "me", 1)


def test_a_worker_of_this_host_whose_process_has_exited_loses_its_jobs_at_once(tmp_path: Path) -> None:
    import socket
    import subprocess
    import sys

    from app.adapters.system import process_gone

    uow, registry, clock = InMemoryUnitOfWorkFactory(InMemoryJobStore()), InMemoryWorkerRegistry(), FakeClock()
    exited = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    dead_pid, now = int(exited.stdout), clock.now()
    registry.beat(WorkerInfo("dead", socket.gethostname(), dead_pid, 1, (), now, now))  # heard from just now
    registry.beat(WorkerInfo("elsewhere", "another-host", dead_pid, 1, (), now, now))
    running(uow, clock, "a", "dead")
    running(uow, clock, "b", "elsewhere")
    assert RecoverJobs(uow, clock, registry, heartbeat=10, gone=process_gone).reap() == ["a"]
    assert not process_gone(WorkerInfo("me", socket.gethostname(), os.getpid(), 1, (), now, now))
