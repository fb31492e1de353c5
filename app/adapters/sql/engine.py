"""Engines for SQLite (embedded, WAL) and PostgreSQL (psycopg 3), and their sessions."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

from sqlalchemy import Engine, create_engine, event
from sqlalchemy.engine import make_url
from sqlalchemy.orm import Session, sessionmaker

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


class _SchemaFirst(sessionmaker[Session]):
    """Sessions that bring the schema to the newest revision before the first one is opened."""

    def __init__(self, engine: Engine, ensure_schema: Callable[[], None]) -> None:
        super().__init__(bind=engine, expire_on_commit=False)
        self._ensure_schema = ensure_schema

    def __call__(self, **local_kw: Any) -> Session:
        self._ensure_schema()
        return super().__call__(**local_kw)


def session_factory(engine: Engine, ensure_schema: Callable[[], None] | None = None) -> sessionmaker[Session]:
    """Sessions whose loaded rows stay readable after commit; with ``ensure_schema`` (``Schema.ensure``),
    the first session of the process migrates the database first."""
    if ensure_schema is None:
        return sessionmaker(bind=engine, expire_on_commit=False)
    return _SchemaFirst(engine, ensure_schema)
