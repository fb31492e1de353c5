"""The worker registry on SQLite, PostgreSQL and in memory: heartbeats insert and refresh a row, stopping
removes it, and liveness is three heartbeats."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from app.adapters.memory.workers import InMemoryWorkerRegistry
from app.adapters.sql import migrate
from app.adapters.sql.engine import make_engine, session_factory
from app.adapters.sql.workers import SqlWorkerRegistry
from app.domain.workers import WorkerInfo
from app.ports.workers import WorkerRegistry

T0 = datetime(2026, 12, 7, 9, 0, tzinfo=UTC)


@pytest.fixture(params=["memory", "sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def registry(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[WorkerRegistry]:
    if request.param == "memory":
        yield InMemoryWorkerRegistry()
        return
    if request.param == "sqlite":
        url = f"sqlite:///{tmp_path / 'atelier.db'}"
    else:
        create: Callable[[str], str] = request.getfixturevalue("create_postgres_database")
        url = create("workers")
    migrate.upgrade(url)
    engine = make_engine(url)
    yield SqlWorkerRegistry(session_factory(engine))
    engine.dispose()


def worker(worker_id: str, seen: datetime, models: tuple[str, ...] = ()) -> WorkerInfo:
    return WorkerInfo(worker_id, "gpu-node-1", 4242, 2, models, T0, seen)


def test_beats_insert_then_refresh_and_remove_takes_the_row_away(registry: WorkerRegistry) -> None:
    registry.beat(worker("a", T0))
    registry.beat(worker("b", T0 + timedelta(seconds=5)))
    registry.beat(worker("a", T0 + timedelta(seconds=10), models=("sdxl", "demo")))
    found = registry.workers()
    assert [w.id for w in found] == ["a", "b"]  # the most recent heartbeat first
    assert found[0] == worker("a", T0 + timedelta(seconds=10), models=("sdxl", "demo"))
    registry.remove("a")
    registry.remove("a")  # already gone: nothing happens
    assert [w.id for w in registry.workers()] == ["b"]


def test_a_worker_is_live_for_three_heartbeats() -> None:
    seen = worker("a", T0)
    assert seen.live(T0 + timedelta(seconds=30), interval=10)
    assert not seen.live(T0 + timedelta(seconds=30.1), interval=10)
