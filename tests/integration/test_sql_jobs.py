"""One contract for JobRepository / UnitOfWork / JobReader, run on memory, SQLite and PostgreSQL."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path

import pytest
from sqlalchemy import delete, select
from sqlalchemy.exc import OperationalError

from app.adapters.memory.job_reader import InMemoryJobReader
from app.adapters.memory.jobs import InMemoryJobStore, InMemoryUnitOfWorkFactory
from app.adapters.sql import migrate
from app.adapters.sql.engine import make_engine, normalize_url, session_factory
from app.adapters.sql.reader import SqlJobReader
from app.adapters.sql.rows import JobRow, from_entity
from app.adapters.sql.uow import SqlUnitOfWorkFactory
from app.domain.errors import ConcurrentUpdate, DatabaseUnavailable, JobNotFound
from app.domain.generation import MAX_SEED, GenerationParams
from app.domain.jobs import GenerationJob, ImageRef, JobStatus
from app.ports.persistence import JobReader, UnitOfWorkFactory

CST = timezone(timedelta(hours=8))
T0 = datetime(2026, 11, 25, 18, 30, 15, 123456, tzinfo=CST)
UNREACHABLE_POSTGRES = "postgresql://atelier@127.0.0.1:1/atelier"
SQL_ONLY = ["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)]


@dataclass
class Backend:
    name: str
    uow: UnitOfWorkFactory
    reader: JobReader
    url: str = ""


@pytest.fixture(scope="module")
def migrated_postgres_url(create_postgres_database: Callable[[str], str]) -> str:
    url = create_postgres_database("jobs_contract")
    migrate.upgrade(url)
    return url


@pytest.fixture(params=["memory", "sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def backend(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Backend]:
    if request.param == "memory":
        store = InMemoryJobStore()
        yield Backend("memory", InMemoryUnitOfWorkFactory(store), InMemoryJobReader(store))
        return
    if request.param == "sqlite":
        url = f"sqlite:///{tmp_path / 'atelier.db'}"
        migrate.upgrade(url)
    else:
        url = request.getfixturevalue("migrated_postgres_url")
    engine = make_engine(url)
    with engine.begin() as connection:  # the PostgreSQL database is shared by the module
        connection.execute(delete(JobRow))
    sessions = session_factory(engine)
    yield Backend(request.param, SqlUnitOfWorkFactory(sessions), SqlJobReader(sessions), url)
    engine.dispose()


def make_job(job_id: str, owner: str = "alice", at: datetime = T0, seed: int = 42) -> GenerationJob:
    params = GenerationParams(
        prompt="一只猫在草地上, watercolor",
        model="tiny-sd",
        negative_prompt="blurry",
        width=64,
        height=96,
        steps=4,
        guidance_scale=6.5,
        seed=seed,
        num_images=2,
        scheduler="DPM++ 2M Karras",
    )
    return GenerationJob.create(owner, params, at, job_id=job_id)


def store(backend: Backend, *jobs: GenerationJob) -> None:
    with backend.uow() as uow:
        for job in jobs:
            uow.jobs.add(job)
        uow.commit()


def test_add_commit_get_round_trips_every_field(backend: Backend) -> None:
    failed = make_job("failed", seed=MAX_SEED)
    failed.start(T0 + timedelta(seconds=1))
    failed.report_progress(0.37, T0 + timedelta(seconds=2))
    failed.cancel(T0 + timedelta(seconds=3))  # running: only marked
    failed.fail("out_of_memory", "显存不足 (CUDA out of memory)", T0 + timedelta(seconds=4))
    done = make_job("done", owner="bob")
    done.start(T0 + timedelta(minutes=1), "gpu-node-1-4242-1f0c9a2b")
    images = [ImageRef("img1", 42, 64, 96, nsfw=False), ImageRef("img2", 43, 64, 96, nsfw=None)]
    done.succeed(images, T0 + timedelta(minutes=2))
    store(backend, failed, done)

    with backend.uow() as uow:
        loaded = [uow.jobs.get("failed"), uow.jobs.get("done")]
    read = [backend.reader.get("failed"), backend.reader.get("done", owner="bob")]
    for expected, got in [(failed, loaded[0]), (done, loaded[1]), (failed, read[0]), (done, read[1])]:
        assert got == expected
        assert got is not expected
        for stamp in (got.created_at, got.updated_at, got.started_at, got.finished_at):
            assert stamp is not None and stamp.utcoffset() is not None
    assert loaded[0].cancel_requested and loaded[0].error_code == "out_of_memory" and loaded[0].seed == MAX_SEED
    assert loaded[1].images == images and loaded[1].progress == 1.0
    assert (loaded[1].worker_id, loaded[1].attempts, loaded[0].worker_id) == ("gpu-node-1-4242-1f0c9a2b", 1, None)


def test_exit_without_commit_rolls_back(backend: Backend) -> None:
    with backend.uow() as uow:
        uow.jobs.add(make_job("never"))
    store(backend, make_job("kept"))
    with pytest.raises(RuntimeError), backend.uow() as uow:
        job = uow.jobs.get("kept")
        job.start(T0 + timedelta(seconds=5))
        uow.jobs.save(job)
        raise RuntimeError("the block failed")

    with backend.uow() as uow, pytest.raises(JobNotFound):
        uow.jobs.get("never")
    assert backend.reader.get("kept").status is JobStatus.QUEUED
    assert backend.reader.list().total == 1


def test_saved_changes_commit_one_unit_of_work_after_another(backend: Backend) -> None:
    store(backend, make_job("j1"))
    for step, action in enumerate(["start", "progress", "cancel", "cancelled"], start=1):
        now = T0 + timedelta(seconds=step)
        with backend.uow() as uow:
            job = uow.jobs.get("j1")
            if action == "start":
                job.start(now)
            elif action == "progress":
                job.report_progress(0.5, now)
            elif action == "cancel":
                job.cancel(now)
            else:
                job.mark_cancelled(now)
            uow.jobs.save(job)
            uow.commit()
    job = backend.reader.get("j1")
    assert (job.status, job.progress, job.cancel_requested) == (JobStatus.CANCELLED, 0.5, True)
    assert job.finished_at == T0 + timedelta(seconds=4)


def test_concurrent_change_makes_the_second_commit_fail(backend: Backend) -> None:
    store(backend, make_job("j1"))
    first, second = backend.uow(), backend.uow()
    with first, second:
        mine, theirs = first.jobs.get("j1"), second.jobs.get("j1")
        mine.start(T0 + timedelta(seconds=1))
        first.jobs.save(mine)
        first.commit()
        theirs.cancel(T0 + timedelta(seconds=2))
        second.jobs.save(theirs)
        with pytest.raises(ConcurrentUpdate):
            second.commit()
    assert backend.reader.get("j1").status is JobStatus.RUNNING
    with backend.uow() as uow:  # reload and retry works
        job = uow.jobs.get("j1")
        job.cancel(T0 + timedelta(seconds=3))
        uow.jobs.save(job)
        uow.commit()
    assert backend.reader.get("j1").cancel_requested


def test_adding_an_existing_id_conflicts(backend: Backend) -> None:
    store(backend, make_job("j1"))
    with backend.uow() as uow:
        uow.jobs.add(make_job("j1", owner="mallory"))
        with pytest.raises(ConcurrentUpdate):
            uow.commit()
    assert backend.reader.get("j1").owner == "alice"


def test_unknown_ids_raise_job_not_found(backend: Backend) -> None:
    store(backend, make_job("j1"))
    with backend.uow() as uow:
        with pytest.raises(JobNotFound):
            uow.jobs.get("missing")
        with pytest.raises(JobNotFound):  # save needs a job loaded in this unit of work
            uow.jobs.save(make_job("j2"))
    with pytest.raises(JobNotFound):
        backend.reader.get("missing")


def test_ids_with_status_oldest_first(backend: Backend) -> None:
    minutes = {"c": 3, "a": 1, "d": 4, "b": 2, "e": 0}
    store(backend, *(make_job(job_id, at=T0 + timedelta(minutes=m)) for job_id, m in minutes.items()))
    with backend.uow() as uow:
        job = uow.jobs.get("d")
        job.start(T0 + timedelta(minutes=9))
        uow.jobs.save(job)
        uow.commit()
    with backend.uow() as uow:
        assert uow.jobs.ids_with_status(JobStatus.QUEUED) == ["e", "a", "b", "c"]
        assert uow.jobs.ids_with_status(JobStatus.RUNNING) == ["d"]
        assert uow.jobs.ids_with_status(JobStatus.FAILED) == []


def test_reader_reports_the_queue_per_model_and_the_jobs_per_status(backend: Backend) -> None:
    jobs = [make_job(job_id, at=T0 + timedelta(minutes=m)) for job_id, m in (("a", 2), ("b", 1), ("c", 5), ("d", 0))]
    other = GenerationJob.create("bob", replace(jobs[0].params, model="other-model"), T0 + timedelta(minutes=7))
    store(backend, *jobs, other)
    with backend.uow() as uow:
        running = uow.jobs.get("d")
        running.start(T0 + timedelta(minutes=9))
        uow.jobs.save(running)
        uow.commit()
    queue = backend.reader.queue()
    assert [(q.model, q.queued) for q in queue] == [("other-model", 1), ("tiny-sd", 3)]
    assert queue[1].oldest == T0 + timedelta(minutes=1) and queue[1].oldest.tzinfo is not None
    assert backend.reader.status_counts() == {JobStatus.QUEUED: 4, JobStatus.RUNNING: 1}


def test_delete_removes_the_job_at_commit_unless_it_changed_meanwhile(backend: Backend) -> None:
    store(backend, make_job("a"), make_job("b"))
    with backend.uow() as uow:
        uow.jobs.delete(uow.jobs.get("a"))
        assert backend.reader.get("a").id == "a"  # not before the commit
        uow.commit()
    with pytest.raises(JobNotFound):
        backend.reader.get("a")
    with backend.uow() as first, backend.uow() as second:
        doomed = first.jobs.get("b")
        started = second.jobs.get("b")
        started.start(T0 + timedelta(minutes=1))
        second.jobs.save(started)
        second.commit()
        first.jobs.delete(doomed)
        with pytest.raises(ConcurrentUpdate):
            first.commit()
    assert backend.reader.get("b").status is JobStatus.RUNNING


def test_finished_before_lists_only_jobs_that_ended_before_the_moment(backend: Backend) -> None:
    jobs = {job_id: make_job(job_id) for job_id in "abcd"}
    for job_id, minutes in (("a", 5), ("b", 1), ("c", 30)):
        jobs[job_id].start(T0)
        jobs[job_id].fail("x", "failed", T0 + timedelta(minutes=minutes))
    store(backend, *jobs.values())  # d stays queued
    with backend.uow() as uow:
        assert uow.jobs.finished_before(T0 + timedelta(minutes=10)) == ["b", "a"]
        assert uow.jobs.finished_before(T0 + timedelta(minutes=10), limit=1) == ["b"]
        assert uow.jobs.finished_before(T0) == []


def test_reader_lists_newest_first_with_filters_and_paging(backend: Backend) -> None:
    alice = [make_job(f"a{i}", at=T0 + timedelta(minutes=i)) for i in range(5)]
    tie = make_job("a9", at=T0 + timedelta(minutes=4))  # same time as a4: the larger id comes first
    bob = [make_job(f"b{i}", owner="bob", at=T0 + timedelta(minutes=i, seconds=30)) for i in range(2)]
    alice[1].start(T0 + timedelta(hours=1))
    store(backend, *alice, tie, *bob)

    everything = backend.reader.list(limit=100)
    assert [j.id for j in everything.items] == ["a9", "a4", "a3", "a2", "b1", "a1", "b0", "a0"]
    assert everything.total == 8
    first = backend.reader.list(owner="alice", limit=2)
    assert ([j.id for j in first.items], first.total, first.limit, first.offset) == (["a9", "a4"], 6, 2, 0)
    last = backend.reader.list(owner="alice", limit=2, offset=4)
    assert [j.id for j in last.items] == ["a1", "a0"]
    beyond = backend.reader.list(owner="alice", limit=2, offset=10)
    assert (beyond.items, beyond.total) == ([], 6)
    running = backend.reader.list(status=JobStatus.RUNNING)
    assert ([j.id for j in running.items], running.total) == (["a1"], 1)
    queued_bob = backend.reader.list(owner="bob", status=JobStatus.QUEUED)
    assert ([j.id for j in queued_bob.items], queued_bob.total) == (["b1", "b0"], 2)
    assert backend.reader.list(owner="carol").total == 0


def test_reader_get_hides_another_owners_job(backend: Backend) -> None:
    store(backend, make_job("j1", owner="alice"))
    assert backend.reader.get("j1", owner="alice").id == "j1"
    assert backend.reader.get("j1").owner == "alice"
    with pytest.raises(JobNotFound):
        backend.reader.get("j1", owner="bob")
    backend.reader.ping()


# SQL only -------------------------------------------------------------------------------------


@pytest.mark.parametrize("backend", SQL_ONLY, indirect=True)
def test_sql_returns_utc_timestamps(backend: Backend) -> None:
    store(backend, make_job("j1"))
    job = backend.reader.get("j1")
    assert job.created_at == T0 and job.created_at.tzinfo == UTC
    with backend.uow() as uow:
        assert uow.jobs.get("j1").updated_at.tzinfo == UTC


@pytest.mark.parametrize("backend", SQL_ONLY, indirect=True)
def test_sql_commit_of_an_unchanged_job_writes_nothing(backend: Backend) -> None:
    store(backend, make_job("j1"))
    with backend.uow() as uow:
        uow.jobs.save(uow.jobs.get("j1"))
        uow.commit()
    engine = make_engine(backend.url)
    with engine.connect() as connection:
        version = connection.execute(select(JobRow.version).where(JobRow.id == "j1")).scalar_one()
    engine.dispose()
    assert version == 1  # an UPDATE (e.g. naive vs aware timestamps on SQLite) would have made it 2


def test_unreachable_database_is_reported_as_unavailable() -> None:
    engine = make_engine(UNREACHABLE_POSTGRES)
    sessions = session_factory(engine)
    started = time.monotonic()
    with pytest.raises(DatabaseUnavailable, match=r"^The database is unavailable") as caught:
        SqlJobReader(sessions).ping()
    assert isinstance(caught.value.__cause__, OperationalError)
    assert caught.value.detail and "127.0.0.1" not in caught.value.message  # the reason is for operators only
    with pytest.raises(DatabaseUnavailable), SqlUnitOfWorkFactory(sessions)() as uow:
        uow.jobs.get("j1")
    assert time.monotonic() - started < 10
    engine.dispose()


def test_sqlite_engine_creates_its_folder_and_sets_pragmas(tmp_path: Path) -> None:
    engine = make_engine(f"sqlite:///{tmp_path / 'new' / 'folder' / 'atelier.db'}")
    with engine.connect() as connection:
        pragma = {
            name: connection.exec_driver_sql(f"PRAGMA {name}").scalar()
            for name in ("journal_mode", "synchronous", "foreign_keys", "busy_timeout")
        }
    engine.dispose()
    assert pragma == {"journal_mode": "wal", "synchronous": 1, "foreign_keys": 1, "busy_timeout": 5000}
    assert (tmp_path / "new" / "folder" / "atelier.db").exists()


@pytest.mark.parametrize(
    ("given", "expected"),
    [
        ("postgres://u:p@h:5432/db", "postgresql+psycopg://u:p@h:5432/db"),
        ("postgresql://u@h/db?sslmode=require", "postgresql+psycopg://u@h/db?sslmode=require"),
        ("postgresql+psycopg://u@h/db", "postgresql+psycopg://u@h/db"),
        ("sqlite:///data/atelier.db", "sqlite:///data/atelier.db"),
    ],
)
def test_postgres_urls_use_psycopg(given: str, expected: str) -> None:
    assert normalize_url(given) == expected
    assert make_engine(given).url.render_as_string(hide_password=False) == expected


def test_from_entity_updates_the_row_in_place() -> None:
    job = make_job("j1")
    row = from_entity(job)
    row.version = 7
    job.start(T0 + timedelta(seconds=1))
    assert from_entity(job, row) is row
    assert (row.status, row.version, row.started_at) == ("running", 7, T0 + timedelta(seconds=1))
    assert row.created_at.tzinfo == UTC
    with pytest.raises(ValueError):
        from_entity(make_job("j2"), row)
