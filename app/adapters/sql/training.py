"""Training jobs and their events in SQL: one transaction per change, rows versioned as generation jobs are (the
timestamp columns store and load aware UTC)."""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.orm import Session, sessionmaker

from app.adapters.sql.errors import translate_errors
from app.adapters.sql.rows import TrainingEventRow, TrainingJobRow
from app.domain.jobs import JobStatus
from app.domain.training import EventKind, TrainingEvent, TrainingJob, TrainingJobNotFound, TrainingKind, TrainingSpec
from app.ports.training import TrainingJobStore, TrainingPage


def _spec_to_dict(spec: TrainingSpec) -> dict[str, Any]:
    return {
        "kind": spec.kind.value,
        "base_model": spec.base_model,
        "result_name": spec.result_name,
        "training_file": spec.training_file,
        "validation_file": spec.validation_file,
        "epochs": spec.epochs,
        "learning_rate": spec.learning_rate,
        "batch_size": spec.batch_size,
        "lora_rank": spec.lora_rank,
        "seed": spec.seed,
        "extra": dict(spec.extra),
    }


def _spec_from_dict(data: dict[str, Any]) -> TrainingSpec:
    return TrainingSpec(**{**data, "kind": TrainingKind(data["kind"]), "extra": dict(data.get("extra") or {})})


def _entity(row: TrainingJobRow) -> TrainingJob:
    return TrainingJob(
        id=row.id,
        owner=row.owner,
        spec=_spec_from_dict(dict(row.spec)),
        created_at=row.created_at,
        updated_at=row.updated_at,
        status=JobStatus(row.status),
        step=row.step or 0,
        total_steps=row.total_steps,
        loss=row.loss,
        started_at=row.started_at,
        finished_at=row.finished_at,
        error_code=row.error_code,
        error_message=row.error_message,
        cancel_requested=row.cancel_requested,
        worker_id=row.worker_id,
        attempts=row.attempts or 0,
        result_model=row.result_model,
    )


def _write(job: TrainingJob, row: TrainingJobRow) -> TrainingJobRow:
    row.owner, row.kind, row.status = job.owner, job.spec.kind.value, job.status.value
    row.base_model, row.result_name, row.spec = job.spec.base_model, job.spec.result_name, _spec_to_dict(job.spec)
    row.step, row.total_steps, row.loss, row.result_model = job.step, job.total_steps, job.loss, job.result_model
    row.error_code, row.error_message, row.cancel_requested = job.error_code, job.error_message, job.cancel_requested
    row.created_at, row.updated_at = job.created_at, job.updated_at
    row.started_at, row.finished_at = job.started_at, job.finished_at
    row.worker_id, row.attempts = job.worker_id, job.attempts
    return row


def _event(row: TrainingEventRow) -> TrainingEvent:
    return TrainingEvent(
        job_id=row.job_id,
        seq=row.seq,
        created_at=row.created_at,
        kind=EventKind(row.kind),
        message=row.message,
        step=row.step,
        loss=row.loss,
        validation_loss=row.validation_loss,
        images=tuple(row.images or ()),
    )


class SqlTrainingJobStore(TrainingJobStore):
    def __init__(self, sessions: sessionmaker[Session]) -> None:
        self._sessions = sessions

    def add(self, job: TrainingJob) -> None:
        with translate_errors(), self._sessions.begin() as session:
            session.add(_write(job, TrainingJobRow(id=job.id)))

    def get(self, job_id: str, owner: str | None = None) -> TrainingJob:
        with translate_errors(), self._sessions() as session:
            row = session.get(TrainingJobRow, job_id)
            if row is None or (owner is not None and row.owner != owner):
                raise TrainingJobNotFound(f"No training job {job_id}.")
            return _entity(row)

    def update(self, job_id: str, change: Callable[[TrainingJob], None]) -> TrainingJob:
        with translate_errors(), self._sessions.begin() as session:
            row = session.get(TrainingJobRow, job_id, populate_existing=True)
            if row is None:
                raise TrainingJobNotFound(f"No training job {job_id}.")
            job = _entity(row)
            change(job)
            _write(job, row)  # versioned: the commit fails if the row changed since it was read
        return job

    def claim(self, worker_id: str, now: datetime) -> TrainingJob | None:
        query = (
            select(TrainingJobRow)
            .where(TrainingJobRow.status == JobStatus.QUEUED.value)
            .order_by(TrainingJobRow.created_at, TrainingJobRow.id)
            .limit(1)
            .with_for_update(skip_locked=True)  # PostgreSQL: another worker's claim skips this row
        )
        with translate_errors(), self._sessions.begin() as session:
            row = session.scalars(query.execution_options(populate_existing=True)).first()
            if row is None:
                return None
            job = _entity(row)
            job.start(now, worker_id)
            _write(job, row)
        return job

    def page(self, owner: str | None = None, limit: int = 20, offset: int = 0) -> TrainingPage:
        query = select(TrainingJobRow)
        count = select(func.count()).select_from(TrainingJobRow)
        if owner is not None:
            query, count = query.where(TrainingJobRow.owner == owner), count.where(TrainingJobRow.owner == owner)
        query = query.order_by(TrainingJobRow.created_at.desc(), TrainingJobRow.id).limit(limit).offset(offset)
        with translate_errors(), self._sessions() as session:
            items = [_entity(row) for row in session.scalars(query)]
            total = int(session.scalar(count) or 0)
        return TrainingPage(items, total, limit, offset)

    def running(self) -> list[TrainingJob]:
        query = select(TrainingJobRow).where(TrainingJobRow.status == JobStatus.RUNNING.value)
        with translate_errors(), self._sessions() as session:
            return [_entity(row) for row in session.scalars(query.order_by(TrainingJobRow.created_at))]

    def add_event(
        self,
        job_id: str,
        kind: EventKind,
        message: str,
        now: datetime,
        step: int | None = None,
        loss: float | None = None,
        validation_loss: float | None = None,
        images: tuple[str, ...] = (),
    ) -> TrainingEvent:
        last = select(func.max(TrainingEventRow.seq)).where(TrainingEventRow.job_id == job_id)
        with translate_errors(), self._sessions.begin() as session:
            if session.get(TrainingJobRow, job_id) is None:
                raise TrainingJobNotFound(f"No training job {job_id}.")
            # One writer per job (its worker): the next number is free; the primary key catches a second writer.
            row = TrainingEventRow(
                job_id=job_id,
                seq=int(session.scalar(last) or 0) + 1,
                created_at=now,
                kind=kind.value,
                message=message,
                step=step,
                loss=loss,
                validation_loss=validation_loss,
                images=list(images) or None,
            )
            session.add(row)
            session.flush()
            return _event(row)

    def events(self, job_id: str, after: int = 0, limit: int = 1000) -> list[TrainingEvent]:
        query = (
            select(TrainingEventRow)
            .where(TrainingEventRow.job_id == job_id, TrainingEventRow.seq > after)
            .order_by(TrainingEventRow.seq)
            .limit(limit)
        )
        with translate_errors(), self._sessions() as session:
            return [_event(row) for row in session.scalars(query)]
