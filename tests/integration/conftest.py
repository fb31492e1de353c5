"""Shared fixtures for integration tests: a real PostgreSQL (pgserver) and fresh database URLs."""

from __future__ import annotations

import os
import shutil
import signal
import tempfile
import uuid
import warnings
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from sqlalchemy import create_engine
from sqlalchemy.engine import make_url
from sqlalchemy.pool import NullPool

from app.adapters.sql.engine import normalize_url

# A PostgreSQL server URL to use instead of starting one with pgserver (any database on it;
# the tests create and drop their own databases next to it).
POSTGRES_URL_ENV = "ATELIER_TEST_POSTGRES_URL"


@pytest.fixture(scope="session")
def postgres_server_url() -> Iterator[str]:
    """URL of a running PostgreSQL server: ``$ATELIER_TEST_POSTGRES_URL``, else one started by pgserver.

    pgserver starts a real PostgreSQL in a temporary directory. As root it runs the server as a
    ``pgserver`` system user (created with ``useradd``) and opens the directory's parents to it;
    so the data lives in its own ``mkdtemp`` folder, not under pytest's ``tmp_path``, whose root
    every pytest session resets to mode 0700. Tests that need PostgreSQL are skipped, with the
    reason, only when it cannot start.
    """
    given = os.environ.get(POSTGRES_URL_ENV)
    if given:
        yield normalize_url(given)
        return
    folder = Path(tempfile.mkdtemp(prefix="atelier-pg-"))
    try:
        with warnings.catch_warnings():  # platformdirs warns when XDG_RUNTIME_DIR is unset
            warnings.simplefilter("ignore")
            import pgserver

        server = pgserver.get_server(folder / "data", cleanup_mode="stop")  # type: ignore[attr-defined]
    except Exception as error:  # ImportError, a failed initdb/pg_ctl, no useradd, ...
        shutil.rmtree(folder, ignore_errors=True)
        pytest.skip(f"PostgreSQL could not be started with pgserver: {error!r}")
    try:
        yield normalize_url(server.get_uri())
    finally:
        _stop_immediately(server.get_pid())
        server.cleanup()  # stops it the normal way if it is still running
        shutil.rmtree(folder, ignore_errors=True)


def _stop_immediately(pid: int | None) -> None:
    """SIGQUIT is PostgreSQL's immediate shutdown: the data is thrown away, so skip the shutdown
    checkpoint, whose fsyncs took ~10 s on a busy disk."""
    if pid is None:
        return
    import psutil  # installed with pgserver

    try:
        os.kill(pid, signal.SIGQUIT)
        psutil.Process(pid).wait(timeout=10)
    except (OSError, psutil.Error):
        pass


@pytest.fixture(scope="session")
def create_postgres_database(postgres_server_url: str) -> Iterator[Callable[[str], str]]:
    """A function that creates an empty database (unique name from a prefix) and returns its URL."""
    admin = create_engine(postgres_server_url, isolation_level="AUTOCOMMIT", poolclass=NullPool)
    created: list[str] = []

    def create(prefix: str) -> str:
        name = f"atelier_{prefix}_{uuid.uuid4().hex[:8]}"
        with admin.connect() as connection:
            connection.exec_driver_sql(f'CREATE DATABASE "{name}"')
        created.append(name)
        return make_url(postgres_server_url).set(database=name).render_as_string(hide_password=False)

    yield create
    if os.environ.get(POSTGRES_URL_ENV):  # a server of pgserver's is thrown away whole
        with admin.connect() as connection:
            for name in created:
                connection.exec_driver_sql(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    admin.dispose()


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def database_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """The URL of a fresh, empty (not migrated) database: a SQLite file, then a PostgreSQL database."""
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'data' / 'atelier.db'}"
    create: Callable[[str], str] = request.getfixturevalue("create_postgres_database")
    return create(request.node.name.split("[")[0].removeprefix("test_")[:30])
