"""Alembic migrations on SQLite and PostgreSQL: stairway, own version table, no drift, fast failure."""

from __future__ import annotations

import io
import time

import pytest
from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import inspect, text

from app.adapters.sql import migrate
from app.adapters.sql.engine import make_engine
from app.adapters.sql.rows import metadata
from app.domain.errors import DatabaseUnavailable

JOBS = "atelier_generation_jobs"
KNOWLEDGE = {"atelier_knowledge_queries", "atelier_knowledge_calibrations"}
EDITS = "atelier_model_edits"
PROMPT_SESSIONS = ("atelier_prompt_sessions", "atelier_prompt_turns")
OPTIONS = "atelier_a1111_options"
WORKERS = "atelier_workers"
TRAINING = ("atelier_training_jobs", "atelier_training_events")


def revisions(url: str) -> list[tuple[str, str]]:
    """(revision, the revision below it) from base to head."""
    script = ScriptDirectory.from_config(migrate.alembic_config(url))
    steps = [(rev.revision, rev.down_revision or "base") for rev in script.walk_revisions("base", "heads")]
    assert all(isinstance(down, str) for _, down in steps), "merge revisions need their own stairway step"
    return list(reversed(steps))  # type: ignore[arg-type]


def tables(url: str) -> set[str]:
    engine = make_engine(url)
    try:
        return set(inspect(engine).get_table_names())
    finally:
        engine.dispose()


def test_stairway_upgrade_downgrade_upgrade_every_revision(database_url: str) -> None:
    steps = revisions(database_url)
    assert steps[0] == ("0001", "base")
    for revision, below in steps:
        migrate.upgrade(database_url, revision)
        migrate.downgrade(database_url, below)
        assert migrate.current(database_url) == (None if below == "base" else below)
        migrate.upgrade(database_url, revision)
        assert migrate.current(database_url) == revision
    migrate.downgrade(database_url, "base")
    assert tables(database_url) == {migrate.VERSION_TABLE}
    assert migrate.current(database_url) is None


def test_own_version_table_leaves_a_host_alembic_alone(database_url: str) -> None:
    migrate.upgrade(database_url)
    assert tables(database_url) == {
        migrate.VERSION_TABLE,
        JOBS,
        *KNOWLEDGE,
        EDITS,
        *PROMPT_SESSIONS,
        OPTIONS,
        WORKERS,
        *TRAINING,
    }
    engine = make_engine(database_url)
    with engine.begin() as connection:
        connection.execute(text("CREATE TABLE alembic_version (version_num VARCHAR(32) NOT NULL)"))
        connection.execute(text("INSERT INTO alembic_version VALUES ('host0042')"))
    migrate.downgrade(database_url, "base")
    migrate.upgrade(database_url)
    with engine.connect() as connection:
        assert connection.execute(text("SELECT version_num FROM alembic_version")).scalars().all() == ["host0042"]
        own = connection.execute(text(f"SELECT version_num FROM {migrate.VERSION_TABLE}")).scalars().all()
    engine.dispose()
    assert own == [revisions(database_url)[-1][0]]


def test_upgrading_a_migrated_database_changes_nothing(database_url: str) -> None:
    migrate.upgrade(database_url)
    engine = make_engine(database_url)
    with engine.begin() as connection:
        connection.execute(
            text(
                f"INSERT INTO {JOBS} (id, owner, status, model, prompt, params, progress, images, "
                "cancel_requested, created_at, updated_at, version) VALUES ('j1', 'alice', "
                "'queued', 'tiny', 'cat', '{}', 0, '[]', false, '2026-11-25 10:00:00+00:00', "
                "'2026-11-25 10:00:00+00:00', 1)"
            )
        )
    before = migrate.current(database_url)
    migrate.upgrade(database_url)
    migrate.upgrade(database_url, "head")
    with engine.connect() as connection:
        assert connection.execute(text(f"SELECT id FROM {JOBS}")).scalars().all() == ["j1"]
    engine.dispose()
    assert migrate.current(database_url) == before == revisions(database_url)[-1][0]


def test_migrated_schema_matches_the_metadata(database_url: str) -> None:
    migrate.upgrade(database_url)
    engine = make_engine(database_url)
    with engine.connect() as connection:
        context = MigrationContext.configure(
            connection, opts={"version_table": migrate.VERSION_TABLE, "compare_type": True}
        )
        assert compare_metadata(context, metadata) == []
    engine.dispose()


def test_unreachable_postgres_raises_database_unavailable_quickly() -> None:
    url = "postgresql://atelier@127.0.0.1:1/atelier"
    started = time.monotonic()
    with pytest.raises(DatabaseUnavailable, match="unavailable"):
        migrate.upgrade(url)
    with pytest.raises(DatabaseUnavailable):
        migrate.current(url)
    assert time.monotonic() - started < 10


def test_offline_sql_uses_the_own_version_table() -> None:
    config = migrate.alembic_config("postgresql://atelier@db.invalid/atelier")
    config.output_buffer = io.StringIO()
    command.upgrade(config, "head", sql=True)
    script = config.output_buffer.getvalue()
    assert f"CREATE TABLE {migrate.VERSION_TABLE}" in script
    assert f"CREATE TABLE {JOBS}" in script and "CONSTRAINT pk_atelier_generation_jobs PRIMARY KEY" in script
    assert "alembic_version " not in script.replace(migrate.VERSION_TABLE, "")
