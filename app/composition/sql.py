"""The database: one engine per container, sessions that migrate the schema first, and the SQL stores."""

from __future__ import annotations

from collections.abc import Iterator
from typing import TYPE_CHECKING

from app.ports.clock import Clock
from app.ports.edits import EditLog
from app.ports.job_events import JobEvents
from app.ports.knowledge import CalibrationStore, KnowledgeQueryStore
from app.ports.options import OwnerOptions
from app.ports.persistence import JobReader, Schema, UnitOfWorkFactory
from app.ports.prompt_sessions import PromptSessionStore
from app.ports.workers import WorkerRegistry

if TYPE_CHECKING:
    from sqlalchemy import Engine
    from sqlalchemy.orm import Session, sessionmaker


def engine(url: str) -> Iterator[Engine]:
    from app.adapters.sql.engine import make_engine

    made = make_engine(url)
    yield made
    made.dispose()


def schema(url: str) -> Schema:
    from app.adapters.sql.migrate import AlembicSchema

    return AlembicSchema(url)


def sessions(bound: Engine, migrated: Schema) -> sessionmaker[Session]:
    from app.adapters.sql.engine import session_factory

    return session_factory(bound, migrated.ensure)


def unit_of_work(made: sessionmaker[Session], events: JobEvents | None = None) -> UnitOfWorkFactory:
    from app.adapters.sql.uow import SqlUnitOfWorkFactory

    return SqlUnitOfWorkFactory(made, events)


def job_events(url: str) -> Iterator[JobEvents]:
    """Announcements of job changes: across processes on PostgreSQL (LISTEN/NOTIFY), within this one elsewhere."""
    from sqlalchemy.engine import make_url

    if make_url(url).get_backend_name() != "postgresql":
        from app.adapters.events import LocalJobEvents

        yield LocalJobEvents()
        return
    from app.adapters.sql.notifications import PostgresJobEvents

    events = PostgresJobEvents(url)
    yield events
    events.close()


def job_reader(made: sessionmaker[Session]) -> JobReader:
    from app.adapters.sql.reader import SqlJobReader

    return SqlJobReader(made)


def query_store(made: sessionmaker[Session]) -> KnowledgeQueryStore:
    from app.adapters.sql.knowledge import SqlKnowledgeQueryStore

    return SqlKnowledgeQueryStore(made)


def calibration_store(made: sessionmaker[Session]) -> CalibrationStore:
    from app.adapters.sql.knowledge import SqlCalibrationStore

    return SqlCalibrationStore(made)


def edit_log(made: sessionmaker[Session]) -> EditLog:
    from app.adapters.sql.edits import SqlEditLog

    return SqlEditLog(made)


def prompt_sessions(made: sessionmaker[Session]) -> PromptSessionStore:
    from app.adapters.sql.prompt_sessions import SqlPromptSessionStore

    return SqlPromptSessionStore(made)


def owner_options(made: sessionmaker[Session], clock: Clock) -> OwnerOptions:
    from app.adapters.sql.options import SqlOwnerOptions

    return SqlOwnerOptions(made, clock)


def worker_registry(made: sessionmaker[Session]) -> WorkerRegistry:
    from app.adapters.sql.workers import SqlWorkerRegistry

    return SqlWorkerRegistry(made)
