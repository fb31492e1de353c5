"""Committed job changes are announced: within the process on every database, and on PostgreSQL to other
processes too (LISTEN/NOTIFY), never for a rolled-back change."""

from __future__ import annotations

from collections.abc import Callable

import pytest

from app.adapters.events import LocalJobEvents
from app.adapters.sql import migrate
from app.adapters.sql.engine import make_engine, session_factory
from app.adapters.sql.notifications import PostgresJobEvents
from app.adapters.sql.uow import SqlUnitOfWorkFactory
from app.domain.generation import GenerationParams
from app.domain.jobs import GenerationJob
from app.ports.job_events import QUEUE
from tests.fakes import FakeClock


def new_job(clock: FakeClock) -> GenerationJob:
    params = GenerationParams(prompt="猫", model="demo", width=64, height=64, steps=2, seed=1)
    return GenerationJob.create("alice", params, clock.now())


def test_a_commit_announces_its_job_changes_in_this_process(database_url: str) -> None:
    migrate.upgrade(database_url)
    engine = make_engine(database_url)
    events = LocalJobEvents()
    uow, clock = SqlUnitOfWorkFactory(session_factory(engine), events), FakeClock()
    try:
        queue = events.watch(QUEUE)
        job = new_job(clock)
        with uow() as unit:
            unit.jobs.add(job)
            unit.commit()
        assert queue.wait(1)
        watch = events.watch(job.id)
        with uow() as unit:
            unit.jobs.get(job.id)  # read, not changed: nothing to announce
            unit.commit()
        assert not watch.wait(0.05)
        with uow() as unit:
            unit.jobs.get(job.id).start(clock.now(), "w1")
            unit.commit()
        assert watch.wait(1) and not queue.wait(0.05)  # running is no news for idle workers
    finally:
        engine.dispose()


@pytest.mark.postgres
def test_other_processes_hear_committed_changes_and_never_rolled_back_ones(
    create_postgres_database: Callable[[str], str],
) -> None:
    url = create_postgres_database("announcements")
    migrate.upgrade(url)
    writer_engine = make_engine(url)
    writer = SqlUnitOfWorkFactory(session_factory(writer_engine), PostgresJobEvents(url))
    elsewhere = PostgresJobEvents(url)  # another process: its own LISTEN connection
    clock = FakeClock()
    try:
        queue = elsewhere.watch(QUEUE)
        assert elsewhere.listening.wait(10)
        queue.wait(0.5)  # the wake-up every new listener gets
        job = new_job(clock)
        with writer() as unit:
            unit.jobs.add(job)
            # no commit: rolled back
        assert not queue.wait(0.5)
        with writer() as unit:
            unit.jobs.add(job)
            unit.commit()
        assert queue.wait(5)
        watch = elsewhere.watch(job.id)
        with writer() as unit:
            unit.jobs.get(job.id).start(clock.now(), "w1")
            unit.commit()
        assert watch.wait(5)
    finally:
        elsewhere.close()
        writer_engine.dispose()
