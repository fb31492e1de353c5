"""The model-edit log in SQL, with explicit mappers to the domain entity."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.orm import Session, sessionmaker

from app.adapters.sql.errors import translate_errors
from app.adapters.sql.rows import EditRow
from app.domain.edits import EditNotFound, EditRequest, EditScores, EditSpec, EditStatus, LocalityProbe
from app.ports.edits import EditLog


def _utc(value: datetime) -> datetime:
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


def _opt_utc(value: datetime | None) -> datetime | None:
    return None if value is None else _utc(value)


def edit_to_row(edit: EditRequest) -> EditRow:
    return EditRow(
        id=edit.id,
        model=edit.model,
        editor=edit.editor,
        owner=edit.owner,
        position=edit.position,
        status=edit.status.value,
        prompt=edit.spec.prompt,
        target=edit.spec.target,
        subject=edit.spec.subject,
        rephrases=list(edit.spec.rephrases),
        locality=[{"prompt": probe.prompt, "answer": probe.answer} for probe in edit.spec.locality],
        reliability=edit.scores.reliability,
        generality=edit.scores.generality,
        locality_score=edit.scores.locality,
        fluency=edit.scores.fluency,
        n=edit.scores.n,
        seconds=edit.seconds,
        created_at=_utc(edit.created_at),
        rolled_back_at=_opt_utc(edit.rolled_back_at),
    )


def edit_from_row(row: EditRow) -> EditRequest:
    spec = EditSpec(
        prompt=row.prompt,
        target=row.target,
        subject=row.subject,
        rephrases=tuple(row.rephrases),
        locality=tuple(LocalityProbe(prompt=p["prompt"], answer=p["answer"]) for p in row.locality),
    )
    scores = EditScores(
        reliability=row.reliability,
        generality=row.generality,
        locality=row.locality_score,
        fluency=row.fluency,
        n=row.n,
    )
    return EditRequest(
        id=row.id,
        model=row.model,
        editor=row.editor,
        spec=spec,
        position=row.position,
        created_at=_utc(row.created_at),
        owner=row.owner,
        status=EditStatus(row.status),
        scores=scores,
        seconds=row.seconds,
        rolled_back_at=_opt_utc(row.rolled_back_at),
    )


class SqlEditLog(EditLog):
    """Each call is one session and at most one transaction; an existing id on ``add`` is a
    ``ConcurrentUpdate``."""

    def __init__(self, sessions: sessionmaker[Session]) -> None:
        self._sessions = sessions

    def add(self, edit: EditRequest) -> None:
        with translate_errors(), self._sessions() as session, session.begin():
            session.add(edit_to_row(edit))

    def get(self, edit_id: str) -> EditRequest:
        with translate_errors(), self._sessions() as session:
            row = session.get(EditRow, edit_id)
            if row is None:
                raise EditNotFound(f"No such edit: {edit_id}.")
            return edit_from_row(row)

    def active(self, model: str) -> list[EditRequest]:
        chain = (
            select(EditRow)
            .where(EditRow.model == model, EditRow.status == EditStatus.APPLIED.value)
            .order_by(EditRow.position, EditRow.id)
        )
        with translate_errors(), self._sessions() as session:
            return [edit_from_row(row) for row in session.scalars(chain)]

    def roll_back(self, edits: Sequence[EditRequest]) -> None:
        by_id = {edit.id: edit for edit in edits}
        if not by_id:
            return
        with translate_errors(), self._sessions() as session, session.begin():
            rows = {row.id: row for row in session.scalars(select(EditRow).where(EditRow.id.in_(list(by_id))))}
            missing = sorted(by_id.keys() - rows.keys())
            if missing:  # raising inside the transaction rolls it back: nothing is written
                raise EditNotFound(f"No edit {', '.join(missing)}.")
            for edit_id, edit in by_id.items():
                rows[edit_id].status = edit.status.value
                rows[edit_id].rolled_back_at = _opt_utc(edit.rolled_back_at)

    def list(self, model: str | None = None, limit: int = 50, offset: int = 0) -> tuple[list[EditRequest], int]:
        conditions: list[Any] = [] if model is None else [EditRow.model == model]
        page = (
            select(EditRow)
            .where(*conditions)
            .order_by(EditRow.created_at.desc(), EditRow.id.desc())
            .limit(limit)
            .offset(offset)
        )
        count = select(func.count()).select_from(EditRow).where(*conditions)
        with translate_errors(), self._sessions() as session:
            total = session.scalar(count) or 0
            items = [edit_from_row(row) for row in session.scalars(page)]
        return items, total
