"""Knowledge queries and detector calibrations in SQL, with explicit mappers to the domain entities."""

from __future__ import annotations

from dataclasses import asdict
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.orm import Session, sessionmaker

from app.adapters.sql.errors import translate_errors
from app.adapters.sql.rows import CalibrationRow, KnowledgeQueryRow
from app.domain.knowledge import Calibration, Decision, KnowledgeQuery, KnowledgeQueryNotFound, Passage, Signals
from app.ports.knowledge import CalibrationStore, KnowledgeQueryStore, QueryPage


def _utc(value: datetime) -> datetime:
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


def query_to_row(query: KnowledgeQuery) -> KnowledgeQueryRow:
    return KnowledgeQueryRow(
        id=query.id,
        owner=query.owner,
        question=query.question,
        answer=query.answer,
        parametric_answer=query.parametric_answer,
        decision=query.decision.value,
        model=query.model,
        signals=asdict(query.signals),
        passages=[asdict(p) for p in query.passages],
        timings=dict(query.timings),
        created_at=_utc(query.created_at),
    )


def query_from_row(row: KnowledgeQueryRow) -> KnowledgeQuery:
    return KnowledgeQuery(
        id=row.id,
        owner=row.owner,
        question=row.question,
        created_at=_utc(row.created_at),
        answer=row.answer,
        decision=Decision(row.decision),
        parametric_answer=row.parametric_answer,
        signals=Signals(**row.signals),
        passages=[Passage(**p) for p in row.passages],
        timings={k: float(v) for k, v in row.timings.items()},
        model=row.model,
    )


class SqlKnowledgeQueryStore(KnowledgeQueryStore):
    def __init__(self, sessions: sessionmaker[Session]) -> None:
        self._sessions = sessions

    def add(self, query: KnowledgeQuery) -> None:
        with translate_errors(), self._sessions() as session, session.begin():
            session.add(query_to_row(query))

    def get(self, query_id: str, owner: str | None = None) -> KnowledgeQuery:
        with translate_errors(), self._sessions() as session:
            row = session.get(KnowledgeQueryRow, query_id)
            if row is None or (owner is not None and row.owner != owner):
                raise KnowledgeQueryNotFound(f"No knowledge query {query_id}.")
            return query_from_row(row)

    def list(self, owner: str | None = None, limit: int = 20, offset: int = 0) -> QueryPage:
        conditions: list[Any] = [] if owner is None else [KnowledgeQueryRow.owner == owner]
        page = (
            select(KnowledgeQueryRow)
            .where(*conditions)
            .order_by(KnowledgeQueryRow.created_at.desc(), KnowledgeQueryRow.id.desc())
            .limit(limit)
            .offset(offset)
        )
        count = select(func.count()).select_from(KnowledgeQueryRow).where(*conditions)
        with translate_errors(), self._sessions() as session:
            total = session.scalar(count) or 0
            items = [query_from_row(row) for row in session.scalars(page)]
        return QueryPage(items=items, total=total, limit=limit, offset=offset)


class SqlCalibrationStore(CalibrationStore):
    """Calibrations are written once and never changed, so ``latest`` looks up only the newest id per
    query and parses a calibration (its mean gradient and neighbour embeddings) once per id; the
    object returned is shared, for reading."""

    def __init__(self, sessions: sessionmaker[Session]) -> None:
        self._sessions = sessions
        self._parsed: dict[str, Calibration] = {}

    def save(self, calibration: Calibration) -> None:
        row = CalibrationRow(
            id=calibration.id,
            model=calibration.model,
            embedder=calibration.embedder,
            dataset=calibration.dataset,
            n=calibration.n,
            threshold_gece=calibration.threshold_gece,
            decision_threshold=calibration.decision_threshold,
            features=list(calibration.features),
            detector=dict(calibration.detector),
            mean_gradient=list(calibration.mean_gradient),
            neighbours=[[list(v), g] for v, g in calibration.neighbours],
            stats=dict(calibration.stats),
            created_at=_utc(calibration.created_at),
            early_features=list(calibration.early_features),
            early_detector=dict(calibration.early_detector),
            early_threshold=calibration.early_threshold,
            abort_min_prob=calibration.abort_min_prob,
            probe=dict(calibration.probe),
            gate=calibration.gate,
            gate_threshold=calibration.gate_threshold,
        )
        with translate_errors(), self._sessions() as session, session.begin():
            session.add(row)

    def latest(self, model: str) -> Calibration | None:
        newest = (
            select(CalibrationRow.id)
            .where(CalibrationRow.model == model)
            .order_by(CalibrationRow.created_at.desc(), CalibrationRow.id.desc())
            .limit(1)
        )
        with translate_errors(), self._sessions() as session:
            found = session.scalar(newest)
            if found is None:
                return None
            if found not in self._parsed:
                row = session.get(CalibrationRow, found)
                assert row is not None
                self._parsed = {found: _calibration(row)}  # only the newest is ever asked for again
            return self._parsed[found]


def _calibration(row: CalibrationRow) -> Calibration:
    return Calibration(
        id=row.id,
        model=row.model,
        embedder=row.embedder,
        dataset=row.dataset,
        created_at=_utc(row.created_at),
        n=row.n,
        mean_gradient=[float(x) for x in row.mean_gradient],
        threshold_gece=row.threshold_gece,
        features=list(row.features),
        detector=dict(row.detector),
        decision_threshold=row.decision_threshold,
        neighbours=[([float(x) for x in v], float(g)) for v, g in row.neighbours],
        stats={k: float(v) for k, v in row.stats.items()},
        early_features=list(row.early_features or []),
        early_detector=dict(row.early_detector or {}),
        early_threshold=row.early_threshold,
        abort_min_prob=row.abort_min_prob,
        probe=dict(row.probe or {}),
        gate=row.gate or "detector",
        gate_threshold=row.gate_threshold,
    )
