"""Engines for SQLite (embedded, WAL) and PostgreSQL (psycopg 3), sessions, and error translation."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from sqlalchemy import Engine, create_engine, event
from sqlalchemy.engine import make_url
from sqlalchemy.exc import DBAPIError, IntegrityError, InterfaceError, OperationalError
from sqlalchemy.orm import Session, sessionmaker
from sqlalchemy.orm.exc import StaleDataError

from app.domain.errors import ConcurrentUpdate, DatabaseUnavailable

CONNECT_TIMEOUT_S = 5
SQLITE_PRAGMAS = ("journal_mode=WAL", "synchronous=NORMAL", "foreign_keys=ON", "busy_timeout=5000")
_POSTGRES_PREFIXES = ("postgres://", "postgresql://")


def normalize_url(url: str) -> str:
    """Point bare PostgreSQL URLs (``postgres://``, ``postgresql://``) at the psycopg 3 driver."""
    for prefix in _POSTGRES_PREFIXES:
        if url.startswith(prefix):
            return "postgresql+psycopg://" + url[len(prefix) :]
    return url


def _set_sqlite_pragmas(dbapi_connection: Any, _record: Any) -> None:
    cursor = dbapi_connection.cursor()
    try:
        for pragma in SQLITE_PRAGMAS:
            cursor.execute(f"PRAGMA {pragma}")
    finally:
        cursor.close()


def make_engine(url: str) -> Engine:
    """An engine for ``url``; nothing connects until first use."""
    parsed = make_url(normalize_url(url))
    if parsed.get_backend_name() == "sqlite":
        database = parsed.database or ""
        if database and database != ":memory:" and not database.startswith("file:"):
            Path(database).expanduser().parent.mkdir(parents=True, exist_ok=True)
        engine = create_engine(parsed, connect_args={"check_same_thread": False})
        event.listen(engine, "connect", _set_sqlite_pragmas)
        return engine
    if parsed.get_backend_name() == "postgresql":
        return create_engine(parsed, pool_pre_ping=True, connect_args={"connect_timeout": CONNECT_TIMEOUT_S})
    return create_engine(parsed, pool_pre_ping=True)


def session_factory(engine: Engine) -> sessionmaker[Session]:
    """Sessions whose loaded rows stay readable after commit."""
    return sessionmaker(bind=engine, expire_on_commit=False)


def _short_reason(error: DBAPIError) -> str:
    text = str(error.orig if error.orig is not None else error).strip()
    first = text.splitlines()[0].strip() if text else type(error).__name__
    return first if len(first) <= 200 else first[:197] + "..."


UNAVAILABLE = "The database is unavailable; try again shortly."


@contextmanager
def translate_errors() -> Iterator[None]:
    """Turn SQLAlchemy failures into domain errors (``raise ... from`` the original).

    A stale versioned update or a duplicate key means someone else wrote the record first
    (``ConcurrentUpdate``); a lost or refused connection means ``DatabaseUnavailable``.
    Other errors (programming mistakes) pass through untouched.
    """
    try:
        yield
    except StaleDataError as error:
        raise ConcurrentUpdate("The job was changed by someone else; reload it and try again.") from error
    except IntegrityError as error:
        raise ConcurrentUpdate("The record conflicts with a stored one.", detail=_short_reason(error)) from error
    except (OperationalError, InterfaceError) as error:
        raise DatabaseUnavailable(UNAVAILABLE, detail=_short_reason(error)) from error
    except DBAPIError as error:
        if error.connection_invalidated:
            raise DatabaseUnavailable(UNAVAILABLE, detail=_short_reason(error)) from error
        raise
