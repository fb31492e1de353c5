"""The read side: job lookups and listings, each in its own short session."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import func, select, text
from sqlalchemy.orm import Session, sessionmaker

from app.adapters.sql.errors import translate_errors
from app.adapters.sql.rows import JobRow, to_entity
from app.domain.errors import JobNotFound
from app.domain.jobs import GenerationJob, JobStatus
from app.ports.persistence import JobPage, JobReader, QueuedModel


class SqlJobReader(JobReader):
    """Queries for listings and status polls; no transaction is kept between calls."""

    def __init__(self, sessions: sessionmaker[Session]) -> None:
        self._sessions = sessions

    def get(self, job_id: str, owner: str | None = None) -> GenerationJob:
        with translate_errors(), self._sessions() as session:
            row = session.get(JobRow, job_id)
            if row is None or (owner is not None and row.owner != owner):
                raise JobNotFound(f"No job {job_id}.")
            return to_entity(row)

    def list(
        self, owner: str | None = None, status: JobStatus | None = None, limit: int = 20, offset: int = 0
    ) -> JobPage:
        conditions: list[Any] = []
        if owner is not None:
            conditions.append(JobRow.owner == owner)
        if status is not None:
            conditions.append(JobRow.status == status.value)
        page = (
            select(JobRow)
            .where(*conditions)
            .order_by(JobRow.created_at.desc(), JobRow.id.desc())
            .limit(limit)
            .offset(offset)
        )
        count = select(func.count()).select_from(JobRow).where(*conditions)
        with translate_errors(), self._sessions() as session:
            total = session.scalar(count) or 0
            items = [to_entity(row) for row in session.scalars(page)]
        return JobPage(items=items, total=total, limit=limit, offset=offset)

    def queue(self) -> Sequence[QueuedModel]:
        query = (
            select(JobRow.model, func.count(), func.min(JobRow.created_at))
            .where(JobRow.status == JobStatus.QUEUED.value)
            .group_by(JobRow.model)
            .order_by(JobRow.model)
        )
        with translate_errors(), self._sessions() as session:
            rows = session.execute(query).all()
        return [QueuedModel(model, int(count), _utc(oldest)) for model, count, oldest in rows]

    def status_counts(self) -> dict[JobStatus, int]:
        query = select(JobRow.status, func.count()).group_by(JobRow.status)
        with translate_errors(), self._sessions() as session:
            return {JobStatus(status): int(count) for status, count in session.execute(query).all()}

    def ping(self, write: bool = False) -> None:
        with translate_errors(), self._sessions() as session:
            session.execute(text("SELECT 1"))
            if write:  # takes the write lock (SQLite) or needs a writable transaction (PostgreSQL); changes nothing
                session.execute(text("UPDATE atelier_generation_jobs SET id = id WHERE 1 = 0"))
                session.rollback()


def _utc(value: Any) -> datetime:
    """An aggregate's timestamp: SQLite returns ``min()`` of the stored text, PostgreSQL an aware datetime."""
    moment = value if isinstance(value, datetime) else datetime.fromisoformat(str(value))
    return moment if moment.tzinfo is not None else moment.replace(tzinfo=UTC)
