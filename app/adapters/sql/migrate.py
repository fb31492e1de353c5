"""Run Atelier's Alembic migrations from code (no alembic.ini), with their own version table."""

from __future__ import annotations

import threading
from pathlib import Path

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext

from app.adapters.sql.engine import make_engine, normalize_url
from app.adapters.sql.errors import translate_errors

VERSION_TABLE = "atelier_alembic_version"


def script_location() -> Path:
    """The folder of the ``migrations`` package, shipped inside the wheel."""
    import migrations

    return Path(migrations.__file__).resolve().parent


def alembic_config(url: str) -> Config:
    """An Alembic config for ``url``, built in code; ``env.py`` reads the URL and version table from it."""
    config = Config()
    config.set_main_option("script_location", str(script_location()))
    config.set_main_option("path_separator", "os")
    config.set_main_option("file_template", "%%(year)d%%(month).2d%%(day).2d_%%(rev)s_%%(slug)s")
    # Config values go through ConfigParser interpolation: a '%' in a password must be doubled.
    config.set_main_option("sqlalchemy.url", normalize_url(url).replace("%", "%%"))
    config.attributes["version_table"] = VERSION_TABLE
    return config


def upgrade(url: str, revision: str = "head") -> None:
    """Migrate the database up to ``revision``; a database already there is left as it is."""
    with translate_errors():
        command.upgrade(alembic_config(url), revision)


def downgrade(url: str, revision: str) -> None:
    """Migrate the database down to ``revision`` (``"base"`` drops every Atelier table)."""
    with translate_errors():
        command.downgrade(alembic_config(url), revision)


def current(url: str) -> str | None:
    """The revision the database is at, or ``None`` for a database Atelier never migrated."""
    engine = make_engine(url)
    try:
        with translate_errors(), engine.connect() as connection:
            context = MigrationContext.configure(connection, opts={"version_table": VERSION_TABLE})
            return context.get_current_revision()
    finally:
        engine.dispose()


class AlembicSchema:
    """``Schema`` for one database URL: ``ensure`` migrates once per process, under a lock, and tries again
    after a failure (a database that was down at start-up is migrated when it comes back)."""

    def __init__(self, url: str) -> None:
        self._url = url
        self._ready = False
        self._lock = threading.Lock()

    def upgrade(self) -> None:
        with self._lock:
            upgrade(self._url)
            self._ready = True

    def ensure(self) -> None:
        if self._ready:
            return
        with self._lock:
            if not self._ready:
                upgrade(self._url)
                self._ready = True
