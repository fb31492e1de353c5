"""The TrainingJobStore contract, against SQL (SQLite and PostgreSQL, through the migrations) and the in-memory
fake: jobs round-trip, a change is one transaction that loses to a concurrent one, a claim takes each queued job
once, pages and events keep their order."""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from sqlalchemy import delete

from app.adapters.memory.training import InMemoryTrainingJobStore
from app.adapters.sql import migrate
from app.adapters.sql.engine import make_engine, session_factory
from app.adapters.sql.rows import TrainingEventRow, TrainingJobRow
from app.adapters.sql.training import SqlTrainingJobStore
from app.domain.errors import ConcurrentUpdate, IllegalTransition, InvalidParameters
from app.domain.jobs import JobStatus
from app.domain.training import EventKind, TrainingJob, TrainingJobNotFound, TrainingKind, TrainingSpec
from app.ports.training import TrainingJobStore

T0 = datetime(2026, 12, 7, 12, 0, tzinfo=UTC)


def spec(**changes: object) -> TrainingSpec:
    fields: dict[str, object] = {
        "kind": TrainingKind.LLM_FINETUNE,
        "base_model": "smollm2",
        "result_name": "facts",
        "training_file": "file-0123",
        "extra": {"max_length": 256},
    }
    return TrainingSpec(**{**fields, **changes})  # type: ignore[arg-type]


@pytest.fixture(scope="module")
def migrated_postgres_url(create_postgres_database: Callable[[str], str]) -> str:
    url = create_postgres_database("training_contract")
    migrate.upgrade(url)
    return url


@pytest.fixture(params=["memory", "sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[TrainingJobStore]:
    if request.param == "memory":
        yield InMemoryTrainingJobStore()
        return
    if request.param == "sqlite":
        url = f"sqlite:///{tmp_path / 'atelier.db'}"
        migrate.upgrade(url)
    else:
        url = request.getfixturevalue("migrated_postgres_url")
    engine = make_engine(url)
    with engine.begin() as connection:  # the PostgreSQL database is shared by the module
        connection.execute(delete(TrainingEventRow))
        connection.execute(delete(TrainingJobRow))
    yield SqlTrainingJobStore(session_factory(engine))
    engine.dispose()


def test_a_job_round_trips_and_is_found_by_its_owner_only(store: TrainingJobStore) -> None:
    job = TrainingJob.create("alice", spec(), T0)
    store.add(job)
    assert store.get(job.id) == job and store.get(job.id, owner="alice") == job
    with pytest.raises(TrainingJobNotFound):
        store.get(job.id, owner="bob")
    with pytest.raises(TrainingJobNotFound):
        store.get("0" * 32)


def test_claims_take_the_oldest_once_and_changes_are_transactions(store: TrainingJobStore) -> None:
    first, second = (TrainingJob.create("alice", spec(), T0 + timedelta(seconds=i)) for i in range(2))
    store.add(second)
    store.add(first)
    claimed = store.claim("worker-a", T0)
    assert claimed is not None and claimed.id == first.id and claimed.status is JobStatus.RUNNING
    assert claimed.worker_id == "worker-a" and claimed.attempts == 1
    again = store.claim("worker-b", T0)
    assert again is not None and again.id == second.id and store.claim("worker-c", T0) is None
    assert {j.id for j in store.running()} == {first.id, second.id}
    store.update(first.id, lambda j: j.report(3, 10, 1.25, T0))
    done = store.update(first.id, lambda j: j.succeed("smollm2:facts", T0))
    assert done.status is JobStatus.SUCCEEDED and store.get(first.id).result_model == "smollm2:facts"
    assert store.get(first.id).loss == 1.25 and store.get(first.id).progress == 1.0
    with pytest.raises(IllegalTransition):
        store.update(first.id, lambda j: j.fail("x", "y", T0))
    assert store.get(first.id).status is JobStatus.SUCCEEDED  # the refused change wrote nothing


def test_concurrent_claims_take_each_job_once(store: TrainingJobStore) -> None:
    jobs = [TrainingJob.create("alice", spec(), T0 + timedelta(seconds=i)) for i in range(6)]
    for job in jobs:
        store.add(job)
    taken: list[str] = []

    def claim(worker: str) -> None:
        for _ in range(6):
            try:
                job = store.claim(worker, T0)
            except ConcurrentUpdate:  # SQLite: the versioned write of a racing claim fails; try again
                continue
            if job is not None:
                taken.append(job.id)

    threads = [threading.Thread(target=claim, args=(f"w{i}",)) for i in range(3)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)
    assert sorted(taken) == sorted(j.id for j in jobs)


def test_pages_and_events(store: TrainingJobStore) -> None:
    jobs = [TrainingJob.create("alice" if i % 2 else "bob", spec(), T0 + timedelta(seconds=i)) for i in range(5)]
    for job in jobs:
        store.add(job)
    page = store.page("alice", limit=1, offset=1)
    assert page.total == 2 and [j.id for j in page.items] == [jobs[1].id]  # newest first
    assert store.page(None).total == 5
    job = jobs[0]
    store.add_event(job.id, EventKind.MESSAGE, "started", T0)
    store.add_event(job.id, EventKind.METRICS, "step 1", T0, step=1, loss=2.5)
    store.add_event(job.id, EventKind.METRICS, "step 2", T0, step=2, loss=2.0, validation_loss=2.2)
    events = store.events(job.id)
    assert [e.seq for e in events] == [1, 2, 3] and events[2].validation_loss == 2.2
    assert [e.step for e in store.events(job.id, after=1)] == [1, 2]
    sample = store.add_event(job.id, EventKind.SAMPLE, "step 2: 1 sample image", T0, step=2, images=("s-2.png",))
    assert store.events(job.id, after=3) == [sample] and sample.images == ("s-2.png",)
    with pytest.raises(TrainingJobNotFound):
        store.add_event("f" * 32, EventKind.MESSAGE, "x", T0)


def test_the_spec_refuses_bad_values() -> None:
    for changes, field in (
        ({"epochs": 0}, "epochs"),
        ({"learning_rate": 0.0}, "learning_rate"),
        ({"lora_rank": 0, "kind": TrainingKind.IMAGE_LORA}, "lora_rank"),
        ({"result_name": "bad name"}, "result_name"),
        ({"base_model": "smollm2@base"}, "base_model"),  # a variant of a served model, not a model
        ({"training_file": ""}, "training_file"),
    ):
        with pytest.raises(InvalidParameters) as refused:
            spec(**changes)
        assert refused.value.field == field, changes
