"""Typed SQLAlchemy rows (generation jobs, knowledge queries, calibrations, model edits, prompt sessions) and the
job mappers."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from sqlalchemy import (
    JSON,
    Boolean,
    CheckConstraint,
    DateTime,
    Dialect,
    Float,
    ForeignKey,
    Index,
    Integer,
    MetaData,
    String,
    Text,
    text,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column
from sqlalchemy.types import TypeDecorator

from app.domain.edits import EditStatus
from app.domain.generation import GenerationParams
from app.domain.jobs import GenerationJob, ImageRef, JobStatus

NAMING_CONVENTION = {
    "ix": "ix_%(table_name)s_%(column_0_N_name)s",
    "uq": "uq_%(table_name)s_%(column_0_N_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}

metadata = MetaData(naming_convention=NAMING_CONVENTION)


def _to_utc(value: datetime) -> datetime:
    """Aware UTC (stored offsets would otherwise mix, and SQLite sorts text); naive means UTC."""
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


_STATUSES = ", ".join(f"'{status.value}'" for status in JobStatus)


class UtcDateTime(TypeDecorator[datetime]):
    """``DateTime(timezone=True)`` that stores UTC and always loads aware UTC datetimes.

    SQLite keeps no offset: without this, a loaded naive value never equals the entity's aware one,
    so every commit of an unchanged job would rewrite its timestamps and bump its version.
    Migrations render it as ``sa.DateTime(timezone=True)`` (see ``migrations/env.py``).
    """

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        return None if value is None else _to_utc(value)

    def process_result_value(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        return None if value is None else _to_utc(value)


class Base(DeclarativeBase):
    """Declarative base of every Atelier table (one MetaData, stable constraint names)."""

    metadata = metadata


class JobRow(Base):
    """One generation job. ``version`` is SQLAlchemy's optimistic-concurrency counter."""

    __tablename__ = "atelier_generation_jobs"

    id: Mapped[str] = mapped_column(String(32), primary_key=True)
    owner: Mapped[str] = mapped_column(String(128), index=True)
    status: Mapped[str] = mapped_column(String(16), index=True)
    model: Mapped[str] = mapped_column(String(64))
    prompt: Mapped[str] = mapped_column(Text)
    params: Mapped[dict[str, Any]] = mapped_column(JSON)
    progress: Mapped[float] = mapped_column(Float, default=0.0)
    images: Mapped[list[dict[str, Any]]] = mapped_column(JSON)
    error_code: Mapped[str | None] = mapped_column(String(64))
    error_message: Mapped[str | None] = mapped_column(Text)
    cancel_requested: Mapped[bool] = mapped_column(Boolean, default=False)
    created_at: Mapped[datetime] = mapped_column(UtcDateTime)
    updated_at: Mapped[datetime] = mapped_column(UtcDateTime)
    started_at: Mapped[datetime | None] = mapped_column(UtcDateTime)
    finished_at: Mapped[datetime | None] = mapped_column(UtcDateTime)
    version: Mapped[int] = mapped_column(Integer)
    worker_id: Mapped[str | None] = mapped_column(String(64))  # the process running it (atelier_workers)
    attempts: Mapped[int] = mapped_column(Integer, server_default="0")

    __table_args__ = (
        Index(None, "owner", "created_at"),
        CheckConstraint(f"status IN ({_STATUSES})", name="status"),
    )
    __mapper_args__ = {"version_id_col": version}  # noqa: RUF012 (SQLAlchemy reads it; mypy rejects ClassVar here)


def _opt_utc(value: datetime | None) -> datetime | None:
    return None if value is None else _to_utc(value)


def _image_to_dict(image: ImageRef) -> dict[str, Any]:
    return {"id": image.id, "seed": image.seed, "width": image.width, "height": image.height, "nsfw": image.nsfw}


def _image_from_dict(data: dict[str, Any]) -> ImageRef:
    return ImageRef(id=data["id"], seed=data["seed"], width=data["width"], height=data["height"], nsfw=data.get("nsfw"))


def to_entity(row: JobRow) -> GenerationJob:
    """A fresh domain entity from a row; every timestamp comes back timezone-aware UTC."""
    return GenerationJob(
        id=row.id,
        owner=row.owner,
        params=GenerationParams.from_dict(dict(row.params)),
        created_at=_to_utc(row.created_at),
        updated_at=_to_utc(row.updated_at),
        status=JobStatus(row.status),
        progress=row.progress,
        started_at=_opt_utc(row.started_at),
        finished_at=_opt_utc(row.finished_at),
        images=[_image_from_dict(image) for image in row.images],
        error_code=row.error_code,
        error_message=row.error_message,
        cancel_requested=row.cancel_requested,
        worker_id=row.worker_id,
        attempts=row.attempts or 0,
    )


def from_entity(job: GenerationJob, row: JobRow | None = None) -> JobRow:
    """Copy a job into ``row`` (updated in place, so its version is kept) or into a new row."""
    if row is None:
        row = JobRow(id=job.id)
    elif row.id != job.id:
        raise ValueError(f"Row {row.id} cannot hold job {job.id}.")
    row.owner = job.owner
    row.status = job.status.value
    row.model = job.params.model
    row.prompt = job.params.prompt
    row.params = job.params.to_dict()
    row.progress = job.progress
    row.images = [_image_to_dict(image) for image in job.images]
    row.error_code = job.error_code
    row.error_message = job.error_message
    row.cancel_requested = job.cancel_requested
    row.created_at = _to_utc(job.created_at)
    row.updated_at = _to_utc(job.updated_at)
    row.started_at = _opt_utc(job.started_at)
    row.finished_at = _opt_utc(job.finished_at)
    row.worker_id = job.worker_id
    row.attempts = job.attempts
    return row


class KnowledgeQueryRow(Base):
    """One answered knowledge query (written once)."""

    __tablename__ = "atelier_knowledge_queries"

    id: Mapped[str] = mapped_column(String(32), primary_key=True)
    owner: Mapped[str] = mapped_column(String(128), index=True)
    question: Mapped[str] = mapped_column(Text)
    answer: Mapped[str] = mapped_column(Text)
    parametric_answer: Mapped[str] = mapped_column(Text)
    decision: Mapped[str] = mapped_column(String(16))
    model: Mapped[str] = mapped_column(String(128))
    signals: Mapped[dict[str, Any]] = mapped_column(JSON)
    passages: Mapped[list[dict[str, Any]]] = mapped_column(JSON)
    timings: Mapped[dict[str, float]] = mapped_column(JSON)
    created_at: Mapped[datetime] = mapped_column(UtcDateTime)

    __table_args__ = (
        Index(None, "owner", "created_at"),
        CheckConstraint("decision IN ('parametric', 'retrieved')", name="decision"),
    )


class CalibrationRow(Base):
    """A long-tail detector calibration of one language model."""

    __tablename__ = "atelier_knowledge_calibrations"

    id: Mapped[str] = mapped_column(String(32), primary_key=True)
    model: Mapped[str] = mapped_column(String(128), index=True)
    embedder: Mapped[str] = mapped_column(String(128))
    dataset: Mapped[str] = mapped_column(Text)
    n: Mapped[int] = mapped_column(Integer)
    threshold_gece: Mapped[float] = mapped_column(Float)
    decision_threshold: Mapped[float] = mapped_column(Float)
    features: Mapped[list[str]] = mapped_column(JSON)
    detector: Mapped[dict[str, Any]] = mapped_column(JSON)
    mean_gradient: Mapped[list[float]] = mapped_column(JSON)
    neighbours: Mapped[list[Any]] = mapped_column(JSON)
    stats: Mapped[dict[str, float]] = mapped_column(JSON)
    created_at: Mapped[datetime] = mapped_column(UtcDateTime)
    early_features: Mapped[list[str]] = mapped_column(JSON, default=list)
    early_detector: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    early_threshold: Mapped[float | None] = mapped_column(Float)
    abort_min_prob: Mapped[float | None] = mapped_column(Float)
    probe: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    gate: Mapped[str] = mapped_column(String(16), default="detector", server_default="detector")
    gate_threshold: Mapped[float | None] = mapped_column(Float)

    __table_args__ = (Index(None, "model", "created_at"),)


_EDIT_STATUSES = ", ".join(f"'{status.value}'" for status in EditStatus)


class EditRow(Base):
    """One edit in a model's edit log; only ``status`` and ``rolled_back_at`` ever change."""

    __tablename__ = "atelier_model_edits"

    id: Mapped[str] = mapped_column(String(32), primary_key=True)
    model: Mapped[str] = mapped_column(String(128), index=True)
    editor: Mapped[str] = mapped_column(String(32))
    owner: Mapped[str] = mapped_column(String(128))
    position: Mapped[int] = mapped_column(Integer)
    status: Mapped[str] = mapped_column(String(16))
    prompt: Mapped[str] = mapped_column(Text)
    target: Mapped[str] = mapped_column(Text)
    subject: Mapped[str] = mapped_column(Text)
    rephrases: Mapped[list[str]] = mapped_column(JSON)
    locality: Mapped[list[dict[str, str]]] = mapped_column(JSON)
    reliability: Mapped[float | None] = mapped_column(Float)
    generality: Mapped[float | None] = mapped_column(Float)
    locality_score: Mapped[float | None] = mapped_column(Float)
    fluency: Mapped[float | None] = mapped_column(Float)
    n: Mapped[int] = mapped_column(Integer)
    seconds: Mapped[float] = mapped_column(Float)
    created_at: Mapped[datetime] = mapped_column(UtcDateTime)
    rolled_back_at: Mapped[datetime | None] = mapped_column(UtcDateTime)

    __table_args__ = (
        Index(None, "model", "status", "position"),  # the active chain of a model, in order
        # Two processes applying an edit at once must not both take the same place in the chain.
        Index(
            "uq_atelier_model_edits_active_position",
            "model",
            "position",
            unique=True,
            sqlite_where=text("status = 'applied'"),
            postgresql_where=text("status = 'applied'"),
        ),
        CheckConstraint(f"status IN ({_EDIT_STATUSES})", name="status"),
    )


class PromptSessionRow(Base):
    """A prompt session; ``head`` and ``version`` change with each turn, choice, undo or branch."""

    __tablename__ = "atelier_prompt_sessions"

    id: Mapped[str] = mapped_column(String(32), primary_key=True)
    owner: Mapped[str] = mapped_column(String(128))
    model: Mapped[str] = mapped_column(String(128))
    anchor: Mapped[str] = mapped_column(Text)
    head: Mapped[int | None] = mapped_column(Integer)
    version: Mapped[int] = mapped_column(Integer)
    created_at: Mapped[datetime] = mapped_column(UtcDateTime)
    updated_at: Mapped[datetime] = mapped_column(UtcDateTime)
    edit_model: Mapped[str | None] = mapped_column(String(128))  # the edit turns' default model (migration 0008)

    __table_args__ = (Index(None, "owner", "updated_at"),)


class PromptTurnRow(Base):
    """One turn of a session; only ``chosen``, ``chosen_index`` and ``picked`` ever change."""

    __tablename__ = "atelier_prompt_turns"

    session_id: Mapped[str] = mapped_column(
        String(32), ForeignKey("atelier_prompt_sessions.id", ondelete="CASCADE"), primary_key=True
    )
    number: Mapped[int] = mapped_column(Integer, primary_key=True)
    parent: Mapped[int | None] = mapped_column(Integer)
    instruction: Mapped[str] = mapped_column(Text)
    prompt_before: Mapped[str] = mapped_column(Text)
    candidates: Mapped[list[dict[str, Any]]] = mapped_column(JSON)
    chosen: Mapped[str] = mapped_column(Text)
    chosen_index: Mapped[int | None] = mapped_column(Integer)
    settings: Mapped[dict[str, Any]] = mapped_column(JSON)
    rewrite: Mapped[bool] = mapped_column(Boolean)
    note: Mapped[str | None] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(UtcDateTime)
    picked: Mapped[bool] = mapped_column(Boolean)
    # How the candidates were made (rewrite, edit, both) and the edits' model (migration 0008); a candidate's
    # kind, seed and edited image live in its dict in ``candidates``.
    strategy: Mapped[str] = mapped_column(String(16), default="rewrite")
    edit_model: Mapped[str | None] = mapped_column(String(128))


class WorkerRow(Base):
    """A process that runs jobs, refreshed by its heartbeat."""

    __tablename__ = "atelier_workers"

    id: Mapped[str] = mapped_column(String(64), primary_key=True)
    host: Mapped[str] = mapped_column(String(255))
    pid: Mapped[int] = mapped_column(Integer)
    threads: Mapped[int] = mapped_column(Integer)
    models: Mapped[list[str]] = mapped_column(JSON)
    started_at: Mapped[datetime] = mapped_column(UtcDateTime)
    heartbeat_at: Mapped[datetime] = mapped_column(UtcDateTime, index=True)


class OwnerOptionsRow(Base):
    """The A1111 options of one owner (``/sdapi/v1/options``)."""

    __tablename__ = "atelier_a1111_options"

    owner: Mapped[str] = mapped_column(String(128), primary_key=True)
    options: Mapped[dict[str, Any]] = mapped_column(JSON)
    updated_at: Mapped[datetime] = mapped_column(UtcDateTime)


class TrainingJobRow(Base):
    """One training job (fine-tuning a language model, training an image LoRA); versioned as generation jobs are."""

    __tablename__ = "atelier_training_jobs"

    id: Mapped[str] = mapped_column(String(32), primary_key=True)
    owner: Mapped[str] = mapped_column(String(128), index=True)
    kind: Mapped[str] = mapped_column(String(32))
    status: Mapped[str] = mapped_column(String(16), index=True)
    base_model: Mapped[str] = mapped_column(String(64))
    result_name: Mapped[str] = mapped_column(String(64))
    spec: Mapped[dict[str, Any]] = mapped_column(JSON)
    step: Mapped[int] = mapped_column(Integer, default=0)
    total_steps: Mapped[int | None] = mapped_column(Integer)
    loss: Mapped[float | None] = mapped_column(Float)
    result_model: Mapped[str | None] = mapped_column(String(64))
    error_code: Mapped[str | None] = mapped_column(String(64))
    error_message: Mapped[str | None] = mapped_column(Text)
    cancel_requested: Mapped[bool] = mapped_column(Boolean, default=False)
    created_at: Mapped[datetime] = mapped_column(UtcDateTime)
    updated_at: Mapped[datetime] = mapped_column(UtcDateTime)
    started_at: Mapped[datetime | None] = mapped_column(UtcDateTime)
    finished_at: Mapped[datetime | None] = mapped_column(UtcDateTime)
    worker_id: Mapped[str | None] = mapped_column(String(64))
    attempts: Mapped[int] = mapped_column(Integer, server_default="0")
    version: Mapped[int] = mapped_column(Integer)

    __table_args__ = (
        Index(None, "owner", "created_at"),
        CheckConstraint(f"status IN ({_STATUSES})", name="status"),
        CheckConstraint("kind IN ('llm-finetune', 'image-lora')", name="kind"),
    )
    __mapper_args__ = {"version_id_col": version}  # noqa: RUF012 (SQLAlchemy reads it; mypy rejects ClassVar here)


class TrainingEventRow(Base):
    """One event of a training job: a step's losses, or a message (written once, in the job's order)."""

    __tablename__ = "atelier_training_events"

    job_id: Mapped[str] = mapped_column(
        String(32), ForeignKey("atelier_training_jobs.id", ondelete="CASCADE"), primary_key=True
    )
    seq: Mapped[int] = mapped_column(Integer, primary_key=True)
    created_at: Mapped[datetime] = mapped_column(UtcDateTime)
    kind: Mapped[str] = mapped_column(String(16))
    message: Mapped[str] = mapped_column(Text)
    step: Mapped[int | None] = mapped_column(Integer)
    loss: Mapped[float | None] = mapped_column(Float)
    validation_loss: Mapped[float | None] = mapped_column(Float)
    images: Mapped[list[str] | None] = mapped_column(JSON)  # a sample event's image file names

    __table_args__ = (CheckConstraint("kind IN ('metrics', 'message', 'sample')", name="kind"),)
