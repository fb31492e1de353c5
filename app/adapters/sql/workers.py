"""The worker registry in SQL: one row per process that runs jobs."""

from __future__ import annotations

from sqlalchemy import delete, select
from sqlalchemy.orm import Session, sessionmaker

from app.adapters.sql.errors import translate_errors
from app.adapters.sql.rows import WorkerRow
from app.domain.errors import ConcurrentUpdate
from app.domain.workers import WorkerInfo
from app.ports.workers import WorkerRegistry


class SqlWorkerRegistry(WorkerRegistry):
    def __init__(self, sessions: sessionmaker[Session]) -> None:
        self._sessions = sessions

    def beat(self, worker: WorkerInfo) -> None:
        try:
            self._write(worker)
        except ConcurrentUpdate:  # its first row was inserted meanwhile (a second beat raced the first)
            self._write(worker)

    def _write(self, worker: WorkerInfo) -> None:
        with translate_errors(), self._sessions() as db, db.begin():
            row = db.get(WorkerRow, worker.id)
            if row is None:
                row = WorkerRow(id=worker.id)
                db.add(row)
            row.host, row.pid, row.threads, row.models = worker.host, worker.pid, worker.threads, list(worker.models)
            row.started_at, row.heartbeat_at = worker.started_at, worker.heartbeat_at

    def remove(self, worker_id: str) -> None:
        with translate_errors(), self._sessions() as db, db.begin():
            db.execute(delete(WorkerRow).where(WorkerRow.id == worker_id))

    def workers(self) -> list[WorkerInfo]:
        query = select(WorkerRow).order_by(WorkerRow.heartbeat_at.desc(), WorkerRow.id)
        with translate_errors(), self._sessions() as db:
            return [
                WorkerInfo(r.id, r.host, r.pid, r.threads, tuple(r.models), r.started_at, r.heartbeat_at)
                for r in db.scalars(query)
            ]
