"""Alembic environment for Atelier's own tables.

It never configures logging (a host application's logging stays as it was) and keeps its
revision in ``atelier_alembic_version``, so a host application's own Alembic is untouched.
A caller may lend a connection through ``config.attributes["connection"]`` (tests do).
"""

from __future__ import annotations

from typing import Any, Literal

from alembic import context
from alembic.autogenerate.api import AutogenContext
from sqlalchemy.engine import Connection

from app.adapters.sql.engine import make_engine
from app.adapters.sql.migrate import VERSION_TABLE
from app.adapters.sql.rows import UtcDateTime, metadata

config = context.config
target_metadata = metadata
version_table = config.attributes.get("version_table", VERSION_TABLE)

# Fail fast instead of queueing forever behind a lock another client holds.
POSTGRES_SESSION_SETTINGS = ("SET lock_timeout = '10s'", "SET statement_timeout = '300s'")


def render_item(kind: str, obj: Any, autogen_context: AutogenContext) -> str | Literal[False]:
    """Autogenerate writes the UTC column type as the plain type it stores, so revisions import only sqlalchemy."""
    if kind == "type" and isinstance(obj, UtcDateTime):
        return "sa.DateTime(timezone=True)"
    return False


def run_migrations_offline() -> None:
    context.configure(
        url=config.get_main_option("sqlalchemy.url"),
        target_metadata=target_metadata,
        literal_binds=True,
        dialect_opts={"paramstyle": "named"},
        render_as_batch=True,
        render_item=render_item,
        version_table=version_table,
    )
    with context.begin_transaction():
        context.run_migrations()


def _run(connection: Connection) -> None:
    context.configure(
        connection=connection,
        target_metadata=target_metadata,
        render_as_batch=True,
        render_item=render_item,
        version_table=version_table,
    )
    with context.begin_transaction():
        context.run_migrations()


def run_migrations_online() -> None:
    lent = config.attributes.get("connection")
    if lent is not None:
        _run(lent)
        return
    url = config.get_main_option("sqlalchemy.url")
    assert url, "sqlalchemy.url is not set"
    engine = make_engine(url)
    try:
        with engine.connect() as connection:
            if connection.dialect.name == "postgresql":
                for statement in POSTGRES_SESSION_SETTINGS:
                    connection.exec_driver_sql(statement)
                # Commit the SETs: Alembic would take an open transaction for the caller's and never commit it.
                connection.commit()
            _run(connection)
    finally:
        engine.dispose()


if context.is_offline_mode():
    run_migrations_offline()
else:
    run_migrations_online()
