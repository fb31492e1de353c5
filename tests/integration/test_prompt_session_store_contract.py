"""One contract for the PromptSessionStore, run on memory, SQLite and PostgreSQL (through the migrations)."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path

import pytest
from sqlalchemy import delete

from app.adapters.memory.prompt_sessions import InMemoryPromptSessionStore
from app.adapters.sql import migrate
from app.adapters.sql.engine import make_engine, session_factory
from app.adapters.sql.prompt_sessions import SqlPromptSessionStore
from app.adapters.sql.rows import PromptSessionRow, PromptTurnRow
from app.domain.errors import ConcurrentUpdate
from app.domain.prompt_sessions import Candidate, PromptSession, PromptSessionNotFound, TurnSettings
from app.ports.prompt_sessions import PromptSessionStore

CST = timezone(timedelta(hours=8))
T0 = datetime(2026, 12, 2, 18, 30, 15, 123456, tzinfo=CST)


@dataclass
class Backend:
    name: str
    store: PromptSessionStore


@pytest.fixture(scope="module")
def migrated_postgres_url(create_postgres_database: Callable[[str], str]) -> str:
    url = create_postgres_database("prompt_sessions_contract")
    migrate.upgrade(url)
    return url


@pytest.fixture(params=["memory", "sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def backend(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Backend]:
    if request.param == "memory":
        yield Backend("memory", InMemoryPromptSessionStore())
        return
    if request.param == "sqlite":
        url = f"sqlite:///{tmp_path / 'atelier.db'}"
        migrate.upgrade(url)
    else:
        url = request.getfixturevalue("migrated_postgres_url")
    engine = make_engine(url)
    with engine.begin() as connection:  # the PostgreSQL database is shared by the module
        connection.execute(delete(PromptTurnRow))
        connection.execute(delete(PromptSessionRow))
    yield Backend(request.param, SqlPromptSessionStore(session_factory(engine)))
    engine.dispose()


def _session(owner: str = "alice", at: datetime = T0) -> PromptSession:
    return PromptSession.start(owner, "demo", "一个红色的圆形在左上角，白色背景", at)


def _candidates() -> list[Candidate]:
    return [
        Candidate(
            "一个蓝色的圆形在左上，白色背景",
            "rewriter",
            {"integrity": 1.0, "aesthetic": 0.25},
            0.8,
            0.12,
            False,
            "a" * 32 + "-0",
        ),
        Candidate("左上角是一个蓝色的圆圈", "rewriter", {"integrity": 0.5}, 0.5, 0.61, False, "a" * 32 + "-1"),
    ]


def test_round_trip_keeps_every_field_and_the_tree(backend: Backend) -> None:
    s = _session()
    backend.store.add(s)
    settings = TurnSettings(seed=2**32 - 1, steps=4, width=64, height=64, guidance_scale=3.0, negative_prompt="模糊")
    s.add_turn("把圆形换成蓝色", _candidates(), settings, T0 + timedelta(seconds=1))
    s.add_turn("加一个小三角形", _candidates()[:1], settings, T0 + timedelta(seconds=2), rewrite=False, note="kept")
    s.undo(T0 + timedelta(seconds=3))
    s.choose(1, T0 + timedelta(seconds=4), index=1)
    backend.store.save(s)
    back = backend.store.get(s.id, "alice")
    assert back.turns == s.turns
    assert (back.head, back.anchor, back.model, back.owner, back.version) == (1, s.anchor, "demo", "alice", s.version)
    assert back.updated_at == s.updated_at and back.created_at == s.created_at
    assert back.turns[0].settings.seed == 2**32 - 1 and back.turns[1].note == "kept" and not back.turns[1].rewrite
    assert back.current_prompt == "左上角是一个蓝色的圆圈"
    # A user-written choice is stored too.
    back.choose(2, T0 + timedelta(seconds=5), prompt="我写的提示词")
    backend.store.save(back)
    again = backend.store.get(s.id)
    assert again.turn(2).chosen == "我写的提示词" and again.turn(2).chosen_index is None and again.head == 2


def test_unknown_or_foreign_sessions_are_not_found(backend: Backend) -> None:
    s = _session()
    backend.store.add(s)
    with pytest.raises(PromptSessionNotFound):
        backend.store.get("ps-missing")
    with pytest.raises(PromptSessionNotFound):
        backend.store.get(s.id, owner="bob")
    ghost = _session()
    with pytest.raises(PromptSessionNotFound):
        backend.store.save(ghost)


def test_delete_removes_the_session_and_its_turns_for_its_owner_only(backend: Backend) -> None:
    kept, doomed = _session(), _session()
    for s in (kept, doomed):
        backend.store.add(s)
        settings = TurnSettings(seed=1, steps=4, width=64, height=64, guidance_scale=3.0, negative_prompt="")
        s.add_turn("把圆形换成蓝色", _candidates(), settings, T0 + timedelta(seconds=1))
        backend.store.save(s)
    with pytest.raises(PromptSessionNotFound):
        backend.store.delete(doomed.id, owner="bob")
    backend.store.delete(doomed.id, owner="alice")
    with pytest.raises(PromptSessionNotFound):
        backend.store.get(doomed.id)
    with pytest.raises(PromptSessionNotFound):
        backend.store.delete(doomed.id)
    assert len(backend.store.get(kept.id).turns) == len(kept.turns)  # the other session keeps its turns
    assert [s.id for s in backend.store.list("alice")[0]] == [kept.id]


def test_a_stale_save_is_refused_and_writes_nothing(backend: Backend) -> None:
    s = _session()
    backend.store.add(s)
    a, b = backend.store.get(s.id), backend.store.get(s.id)
    a.add_turn("把圆形换成蓝色", _candidates(), TurnSettings(seed=1), T0)
    backend.store.save(a)
    b.add_turn("背景改成黑色", _candidates()[:1], TurnSettings(seed=1), T0)
    with pytest.raises(ConcurrentUpdate):
        backend.store.save(b)
    stored = backend.store.get(s.id)
    assert [t.instruction for t in stored.turns] == ["把圆形换成蓝色"]


def test_list_is_newest_first_per_owner_with_a_total(backend: Backend) -> None:
    made = [_session("alice" if i < 3 else "bob", T0 + timedelta(minutes=i)) for i in range(4)]
    for s in made:
        backend.store.add(s)
    items, total = backend.store.list("alice", limit=2)
    assert total == 3 and [s.id for s in items] == [made[2].id, made[1].id]
    items, total = backend.store.list(limit=10, offset=3)
    assert total == 4 and [s.id for s in items] == [made[0].id]
    assert backend.store.list("carol") == ([], 0)
    assert items[0].updated_at.astimezone(UTC) == T0.astimezone(UTC)
