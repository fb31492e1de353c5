"""The SQL unit of work: one session per ``with`` block, rolled back unless committed."""

from __future__ import annotations

from types import TracebackType

from sqlalchemy.orm import Session, sessionmaker

from app.adapters.sql.errors import translate_errors
from app.adapters.sql.repository import SqlJobRepository
from app.ports.persistence import UnitOfWork


class SqlUnitOfWork(UnitOfWork):
    """A transaction over a fresh session; ``commit`` writes the jobs and checks their versions."""

    jobs: SqlJobRepository

    def __init__(self, sessions: sessionmaker[Session]) -> None:
        self._sessions = sessions
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
        with translate_errors():
            self._session.commit()  # a failed commit leaves the rollback to __exit__
        self.jobs.forget()


class SqlUnitOfWorkFactory:
    """Builds a new ``SqlUnitOfWork`` per use-case call."""

    def __init__(self, sessions: sessionmaker[Session]) -> None:
        self._sessions = sessions

    def __call__(self) -> SqlUnitOfWork:
        return SqlUnitOfWork(self._sessions)
