"""The jobs table as the queue of many workers, on SQLite and PostgreSQL: racing claims take each job once, and on
PostgreSQL a claim skips the rows another transaction holds instead of waiting for it."""

from __future__ import annotations

import threading
from collections import Counter
from collections.abc import Iterator

import pytest
from sqlalchemy.orm import Session, sessionmaker

from app.adapters.sql import migrate
from app.adapters.sql.engine import make_engine, session_factory
from app.adapters.sql.reader import SqlJobReader
from app.adapters.sql.uow import SqlUnitOfWorkFactory
from app.adapters.sql.workers import SqlWorkerRegistry
from app.domain.generation import GenerationParams
from app.domain.jobs import GenerationJob, JobStatus
from app.usecases.claim_jobs import ClaimJobs
from tests.fakes import FakeClock


@pytest.fixture
def sessions(database_url: str) -> Iterator[sessionmaker[Session]]:
    migrate.upgrade(database_url)
    engine = make_engine(database_url)
    yield session_factory(engine)
    engine.dispose()


def submit(uow: SqlUnitOfWorkFactory, clock: FakeClock, model: str, count: int) -> list[str]:
    jobs = [
        GenerationJob.create(
            "alice", GenerationParams(prompt=f"猫 {i}", model=model, width=64, height=64, steps=2, seed=i), clock.now()
        )
        for i in range(count)
    ]
    with uow() as unit:
        for job in jobs:
            unit.jobs.add(job)
        unit.commit()
    return [job.id for job in jobs]


def claimer(sessions: sessionmaker[Session], clock: FakeClock, worker_id: str) -> ClaimJobs:
    uow, reader, registry = SqlUnitOfWorkFactory(sessions), SqlJobReader(sessions), SqlWorkerRegistry(sessions)
    return ClaimJobs(uow, reader, clock, registry, 10.0, worker_id)


def test_racing_workers_claim_every_job_exactly_once(sessions: sessionmaker[Session]) -> None:
    clock = FakeClock()
    uow = SqlUnitOfWorkFactory(sessions)
    ids = submit(uow, clock, "model-a", 24) + submit(uow, clock, "model-b", 24)
    taken: list[tuple[str, str]] = []
    lock = threading.Lock()

    def work(worker_id: str) -> None:
        claim = claimer(sessions, clock, worker_id)
        misses = 0
        while misses < 3:  # a claim that lost every race returns nothing: the queue may still hold jobs
            jobs = claim(loaded=(), limit=4)
            misses = 0 if jobs else misses + 1
            with lock:
                taken.extend((job.id, worker_id) for job in jobs)

    threads = [threading.Thread(target=work, args=(f"w{i}",)) for i in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    assert Counter(job_id for job_id, _ in taken) == Counter(ids)  # every job once
    with uow() as unit:
        jobs = [unit.jobs.get(job_id) for job_id in ids]
    owners = dict(taken)
    assert all(job.status is JobStatus.RUNNING and job.attempts == 1 for job in jobs)
    assert all(job.worker_id == owners[job.id] for job in jobs)  # the row names the worker that got it


@pytest.mark.postgres
def test_a_claim_skips_the_rows_another_claim_holds(create_postgres_database: object) -> None:
    url = create_postgres_database("skip_locked")  # type: ignore[operator]
    migrate.upgrade(url)
    engine = make_engine(url)
    sessions = session_factory(engine)
    try:
        clock = FakeClock()
        uow = SqlUnitOfWorkFactory(sessions)
        ids = submit(uow, clock, "model-a", 6)
        holding, release = threading.Event(), threading.Event()

        def hold_first_three() -> None:
            with uow() as unit:  # a claim in progress: three rows locked, not yet committed
                held = unit.jobs.claimable("model-a", 3)
                assert [job.id for job in held] == ids[:3]
                holding.set()
                release.wait(30)

        holder = threading.Thread(target=hold_first_three)
        holder.start()
        assert holding.wait(30)
        result: list[list[str]] = []
        other = threading.Thread(target=lambda: result.append([j.id for j in claimer(sessions, clock, "w2")((), 8)]))
        other.start()
        other.join(20)  # with FOR UPDATE alone it would wait for the holder, which waits for the release
        finished = not other.is_alive()
        release.set()
        holder.join(30)
        other.join(30)
        assert finished, "the second claim waited for the rows the first one held"
        assert result == [ids[3:]]
    finally:
        engine.dispose()
