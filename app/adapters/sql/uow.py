"""The SQL unit of work: one session per ``with`` block, rolled back unless committed."""

from __future__ import annotations

from types import TracebackType

from sqlalchemy.orm import Session, sessionmaker

from app.adapters.sql import notifications
from app.adapters.sql.errors import translate_errors
from app.adapters.sql.repository import SqlJobRepository
from app.adapters.sql.rows import JobRow
from app.ports.job_events import JobEvents
from app.ports.persistence import UnitOfWork


class SqlUnitOfWork(UnitOfWork):
    """A transaction over a fresh session; ``commit`` writes the jobs and checks their versions."""

    jobs: SqlJobRepository

    def __init__(self, sessions: sessionmaker[Session], events: JobEvents | None = None) -> None:
        self._sessions = sessions
        self._events = events
        self._session: Session | None = None

    def __enter__(self) -> SqlUnitOfWork:
        self._session = self._sessions()
        self.jobs = SqlJobRepository(self._session)
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        session, self._session = self._session, None
        if session is None:
            return
        self.jobs.forget()
        try:
            with translate_errors():
                session.rollback()
        except Exception:
            if exc is None:
                raise
            # The block's own error is the one worth reporting; a failed rollback must not mask it.
        finally:
            session.close()

    def commit(self) -> None:
        if self._session is None:
            raise RuntimeError("commit() outside of a 'with' block.")
        self.jobs.sync()
        session = self._session
        with translate_errors():
            changes = _changes(session) if self._events is not None else []
            if changes and session.get_bind().dialect.name == "postgresql":
                notifications.notify(session, changes)  # delivered to the other processes at commit
            session.commit()  # a failed commit leaves the rollback to __exit__
        self.jobs.forget()
        if changes and self._events is not None:
            self._events.announce(changes)


def _changes(session: Session) -> list[tuple[str, str]]:
    """(id, status) of the jobs this transaction adds, changes or deletes."""
    written = [row for row in (*session.new, *session.dirty) if isinstance(row, JobRow) and session.is_modified(row)]
    gone = [row for row in session.deleted if isinstance(row, JobRow)]
    return [(row.id, row.status) for row in written] + [(row.id, "deleted") for row in gone]


class SqlUnitOfWorkFactory:
    """Builds a new ``SqlUnitOfWork`` per use-case call."""

    def __init__(self, sessions: sessionmaker[Session], events: JobEvents | None = None) -> None:
        self._sessions = sessions
        self._events = events

    def __call__(self) -> SqlUnitOfWork:
        return SqlUnitOfWork(self._sessions, self._events)
