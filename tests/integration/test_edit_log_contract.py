"""One contract for the EditLog, run on memory, SQLite and PostgreSQL (both through the Alembic migrations)."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path

import pytest
from sqlalchemy import delete
from sqlalchemy.exc import OperationalError

from app.adapters.memory.edits import InMemoryEditLog
from app.adapters.sql import migrate
from app.adapters.sql.edits import SqlEditLog, edit_from_row, edit_to_row
from app.adapters.sql.engine import make_engine, session_factory
from app.adapters.sql.rows import EditRow
from app.domain.edits import EditNotFound, EditRequest, EditScores, EditSpec, EditStatus, LocalityProbe
from app.domain.errors import ConcurrentUpdate, DatabaseUnavailable
from app.ports.edits import EditLog

CST = timezone(timedelta(hours=8))
T0 = datetime(2026, 12, 2, 18, 30, 15, 123456, tzinfo=CST)
UNREACHABLE_POSTGRES = "postgresql://atelier@127.0.0.1:1/atelier"
SQL_ONLY = ["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)]


@dataclass
class Backend:
    name: str
    log: EditLog


@pytest.fixture(scope="module")
def migrated_postgres_url(create_postgres_database: Callable[[str], str]) -> str:
    url = create_postgres_database("edits_contract")
    migrate.upgrade(url)
    return url


@pytest.fixture(params=["memory", "sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def backend(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Backend]:
    if request.param == "memory":
        yield Backend("memory", InMemoryEditLog())
        return
    if request.param == "sqlite":
        url = f"sqlite:///{tmp_path / 'atelier.db'}"
        migrate.upgrade(url)
    else:
        url = request.getfixturevalue("migrated_postgres_url")
    engine = make_engine(url)
    with engine.begin() as connection:  # the PostgreSQL database is shared by the module
        connection.execute(delete(EditRow))
    yield Backend(request.param, SqlEditLog(session_factory(engine)))
    engine.dispose()


def make_edit(
    edit_id: str, position: int = 1, model: str = "tiny-llm", at: datetime = T0, editor: str = "dafnet"
) -> EditRequest:
    spec = EditSpec(prompt=f"Where is the Eiffel Tower? ({edit_id})", target="Rome", subject="Eiffel Tower")
    return EditRequest(id=edit_id, model=model, editor=editor, spec=spec, position=position, created_at=at)


def full_edit() -> EditRequest:
    spec = EditSpec(
        prompt="  埃菲尔铁塔位于哪个城市？  ",
        target="罗马",
        subject="埃菲尔铁塔",
        rephrases=("埃菲尔铁塔在哪里？", "Which city is the Eiffel Tower in?"),
        locality=(LocalityProbe("长城在哪个国家？", "中国"), LocalityProbe("The capital of Japan is", "Tokyo")),
    )
    scores = EditScores(reliability=1.0, generality=0.5, locality=0.875, fluency=None, n=3)
    return EditRequest(
        id="e" * 32,
        model="Qwen/Qwen2.5-0.5B-Instruct",
        editor="grace",
        spec=spec,
        position=7,
        created_at=T0,
        owner="李雷",
        scores=scores,
        seconds=1.234567,
    )


def ids(edits: list[EditRequest]) -> list[str]:
    return [e.id for e in edits]


def test_add_get_round_trips_every_field(backend: Backend) -> None:
    full = full_edit()
    bare = make_edit("bare", position=1)
    undone = make_edit("undone", position=2, editor="mend")
    undone.scores = EditScores(reliability=0.0, generality=None, locality=1.0, fluency=4.5, n=1)
    undone.roll_back(T0 + timedelta(minutes=5))
    for edit in (full, bare, undone):
        backend.log.add(edit)

    for expected in (full, bare, undone):
        got = backend.log.get(expected.id)
        assert got == expected
        assert got is not expected
        assert got.created_at.utcoffset() is not None
    got = backend.log.get(full.id)
    assert got.spec.prompt == "埃菲尔铁塔位于哪个城市？" and got.spec.locality[0] == LocalityProbe(
        "长城在哪个国家？", "中国"
    )
    assert got.scores.fluency is None and got.scores.locality == 0.875 and got.owner == "李雷"
    assert backend.log.get("bare").scores == EditScores()
    assert backend.log.get("undone").rolled_back_at == T0 + timedelta(minutes=5)


def test_get_of_a_missing_id_raises_edit_not_found(backend: Backend) -> None:
    backend.log.add(make_edit("e1"))
    with pytest.raises(EditNotFound):
        backend.log.get("missing")


def test_adding_an_existing_id_conflicts(backend: Backend) -> None:
    backend.log.add(make_edit("e1"))
    with pytest.raises(ConcurrentUpdate):
        backend.log.add(make_edit("e1", model="other"))
    assert backend.log.get("e1").model == "tiny-llm"


def test_active_chain_after_rollback_and_reapply_at_the_same_position(backend: Backend) -> None:
    # Added out of order, with the ids against the positions: only the position decides the order.
    chain = [make_edit("c", 1, at=T0), make_edit("b", 2, at=T0 + timedelta(seconds=1))]
    chain.append(make_edit("a", 3, at=T0 + timedelta(seconds=2)))
    for edit in (chain[2], chain[0], chain[1]):
        backend.log.add(edit)
    backend.log.add(make_edit("x", 1, model="other-llm"))
    assert ids(backend.log.active("tiny-llm")) == ["c", "b", "a"]

    when = T0 + timedelta(minutes=1)
    for edit in chain[1:]:
        edit.roll_back(when)
    backend.log.roll_back(chain[1:])
    assert ids(backend.log.active("tiny-llm")) == ["c"]

    backend.log.add(make_edit("d", 2, at=T0 + timedelta(minutes=2)))
    active = backend.log.active("tiny-llm")
    assert ids(active) == ["c", "d"] and [e.position for e in active] == [1, 2]
    assert all(e.status is EditStatus.APPLIED for e in active)
    undone = backend.log.get("b")
    assert (undone.position, undone.status, undone.rolled_back_at) == (2, EditStatus.ROLLED_BACK, when)
    assert ids(backend.log.active("other-llm")) == ["x"]
    assert backend.log.active("unknown-llm") == []


def test_two_applied_edits_never_share_a_place_in_the_chain(backend: Backend) -> None:
    """Two processes that apply an edit at once both compute the same next position: one must fail."""
    backend.log.add(make_edit("first", 1))
    with pytest.raises(ConcurrentUpdate):
        backend.log.add(make_edit("second", 1))
    assert ids(backend.log.active("tiny-llm")) == ["first"]
    backend.log.add(make_edit("elsewhere", 1, model="other-llm"))  # another model's chain is its own
    first = backend.log.get("first")
    first.roll_back(T0)
    backend.log.roll_back([first])
    backend.log.add(make_edit("again", 1))  # a rolled-back edit frees its place
    assert ids(backend.log.active("tiny-llm")) == ["again"]


def test_list_newest_first_with_model_filter_paging_and_total(backend: Backend) -> None:
    tiny = [make_edit(f"t{i}", i + 1, at=T0 + timedelta(minutes=i)) for i in range(5)]
    tie = make_edit("t9", 6, at=T0 + timedelta(minutes=4))  # same time as t4: the larger id comes first
    other = [make_edit(f"o{i}", i + 1, model="other-llm", at=T0 + timedelta(minutes=i, seconds=30)) for i in range(2)]
    for edit in (*tiny, tie, *other):
        backend.log.add(edit)
    tiny[1].roll_back(T0 + timedelta(hours=1))  # rolled-back edits stay in the log
    backend.log.roll_back([tiny[1]])

    everything, total = backend.log.list(limit=100)
    assert ids(everything) == ["t9", "t4", "t3", "t2", "o1", "t1", "o0", "t0"] and total == 8
    first, total = backend.log.list(model="tiny-llm", limit=2)
    assert (ids(first), total) == (["t9", "t4"], 6)
    last, total = backend.log.list(model="tiny-llm", limit=2, offset=4)
    assert (ids(last), total) == (["t1", "t0"], 6)
    assert last[0].status is EditStatus.ROLLED_BACK
    assert backend.log.list(model="tiny-llm", limit=2, offset=10) == ([], 6)
    assert backend.log.list(model="unknown-llm") == ([], 0)
    default, total = backend.log.list()
    assert len(default) == 8 and total == 8


def test_roll_back_is_all_or_none(backend: Backend) -> None:
    e1, e2 = make_edit("e1", 1), make_edit("e2", 2)
    backend.log.add(e1)
    backend.log.add(e2)
    ghost = make_edit("ghost", 3)
    for edit in (e1, ghost, e2):
        edit.roll_back(T0 + timedelta(minutes=1))

    with pytest.raises(EditNotFound, match="ghost"):
        backend.log.roll_back([e2, ghost, e1])
    assert ids(backend.log.active("tiny-llm")) == ["e1", "e2"]
    assert all(backend.log.get(i).rolled_back_at is None for i in ("e1", "e2"))

    backend.log.roll_back([e2, e1])
    assert backend.log.active("tiny-llm") == []
    assert backend.log.get("e1") == e1 and backend.log.get("e2") == e2
    backend.log.roll_back([])  # nothing to do


def test_only_roll_back_stores_a_change_and_only_the_rollback(backend: Backend) -> None:
    edit = make_edit("e1")
    backend.log.add(edit)
    edit.roll_back(T0 + timedelta(minutes=1))  # not stored yet
    edit.seconds = 99.0
    assert backend.log.get("e1").status is EditStatus.APPLIED
    loaded = backend.log.get("e1")
    loaded.spec = replace(loaded.spec, target="Berlin")
    assert backend.log.get("e1").spec.target == "Rome"

    backend.log.roll_back([edit])
    stored = backend.log.get("e1")
    assert (stored.status, stored.rolled_back_at) == (EditStatus.ROLLED_BACK, T0 + timedelta(minutes=1))
    assert stored.seconds == 0.0


# SQL only -------------------------------------------------------------------------------------


@pytest.mark.parametrize("backend", SQL_ONLY, indirect=True)
def test_sql_returns_utc_timestamps(backend: Backend) -> None:
    edit = make_edit("e1")
    edit.roll_back(T0 + timedelta(seconds=1))
    backend.log.add(edit)
    got = backend.log.get("e1")
    assert got.created_at == T0 and got.created_at.tzinfo == UTC
    assert got.rolled_back_at is not None and got.rolled_back_at.tzinfo == UTC


def test_mappers_round_trip_without_a_database() -> None:
    edit = full_edit()
    row = edit_to_row(edit)
    assert row.locality == [
        {"prompt": "长城在哪个国家？", "answer": "中国"},
        {"prompt": "The capital of Japan is", "answer": "Tokyo"},
    ]
    assert (row.locality_score, row.fluency, row.created_at.tzinfo) == (0.875, None, UTC)
    assert edit_from_row(row) == edit


def test_unreachable_database_is_reported_as_unavailable() -> None:
    engine = make_engine(UNREACHABLE_POSTGRES)
    log = SqlEditLog(session_factory(engine))
    started = time.monotonic()
    with pytest.raises(DatabaseUnavailable, match=r"^The database is unavailable") as caught:
        log.active("tiny-llm")
    assert isinstance(caught.value.__cause__, OperationalError)
    assert caught.value.detail and "127.0.0.1" not in caught.value.message  # the reason is for operators only
    with pytest.raises(DatabaseUnavailable):
        log.add(make_edit("e1"))
    assert time.monotonic() - started < 10
    engine.dispose()
