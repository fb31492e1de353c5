"""Prompt sessions in SQL (a session row and one row per turn), with explicit mappers to the entities."""

from __future__ import annotations

from typing import Any

from sqlalchemy import delete, func, select, update
from sqlalchemy.orm import Session, sessionmaker

from app.adapters.sql.errors import translate_errors
from app.adapters.sql.rows import PromptSessionRow, PromptTurnRow
from app.domain.errors import ConcurrentUpdate
from app.domain.prompt_sessions import (
    Candidate,
    PromptSession,
    PromptSessionNotFound,
    Turn,
    TurnSettings,
    TurnStrategy,
)
from app.ports.prompt_sessions import PromptSessionStore


def turn_to_row(session_id: str, turn: Turn) -> PromptTurnRow:
    assert turn.created_at is not None
    return PromptTurnRow(
        session_id=session_id,
        number=turn.number,
        parent=turn.parent,
        instruction=turn.instruction,
        prompt_before=turn.prompt_before,
        candidates=[c.to_dict() for c in turn.candidates],
        chosen=turn.chosen,
        chosen_index=turn.chosen_index,
        settings=turn.settings.to_dict(),
        rewrite=turn.rewrite,
        note=turn.note,
        created_at=turn.created_at,
        picked=turn.picked,
        strategy=turn.strategy.value,
        edit_model=turn.edit_model,
    )


def turn_from_row(row: PromptTurnRow) -> Turn:
    return Turn(
        number=row.number,
        parent=row.parent,
        instruction=row.instruction,
        prompt_before=row.prompt_before,
        candidates=[Candidate.from_dict(c) for c in row.candidates],
        chosen=row.chosen,
        chosen_index=row.chosen_index,
        settings=TurnSettings.from_dict(row.settings),
        rewrite=row.rewrite,
        note=row.note,
        created_at=row.created_at,
        picked=row.picked,
        strategy=TurnStrategy(row.strategy or TurnStrategy.REWRITE),
        edit_model=row.edit_model,
    )


def session_from_rows(row: PromptSessionRow, turns: list[PromptTurnRow]) -> PromptSession:
    return PromptSession(
        id=row.id,
        owner=row.owner,
        model=row.model,
        anchor=row.anchor,
        created_at=row.created_at,
        updated_at=row.updated_at,
        turns=[turn_from_row(t) for t in sorted(turns, key=lambda t: t.number)],
        head=row.head,
        version=row.version,
        edit_model=row.edit_model,
    )


class SqlPromptSessionStore(PromptSessionStore):
    """Each call is one session and at most one transaction. ``save`` is an optimistic update: the
    session row changes only where its version is still the one read, else ``ConcurrentUpdate``."""

    def __init__(self, sessions: sessionmaker[Session]) -> None:
        self._sessions = sessions

    def add(self, session: PromptSession) -> None:
        with translate_errors(), self._sessions() as db, db.begin():
            db.add(
                PromptSessionRow(
                    id=session.id,
                    owner=session.owner,
                    model=session.model,
                    anchor=session.anchor,
                    head=session.head,
                    version=1,
                    created_at=session.created_at,
                    updated_at=session.updated_at,
                    edit_model=session.edit_model,
                )
            )
            db.add_all(turn_to_row(session.id, t) for t in session.turns)
        session.version = 1

    def get(self, session_id: str, owner: str | None = None) -> PromptSession:
        with translate_errors(), self._sessions() as db:
            row = db.get(PromptSessionRow, session_id)
            if row is None or (owner is not None and row.owner != owner):
                raise PromptSessionNotFound(f"No such prompt session: {session_id}.")
            turns = list(db.scalars(select(PromptTurnRow).where(PromptTurnRow.session_id == session_id)))
            return session_from_rows(row, turns)

    def delete(self, session_id: str, owner: str | None = None) -> None:
        with translate_errors(), self._sessions() as db, db.begin():
            row = db.get(PromptSessionRow, session_id)
            if row is None or (owner is not None and row.owner != owner):
                raise PromptSessionNotFound(f"No such prompt session: {session_id}.")
            db.execute(delete(PromptTurnRow).where(PromptTurnRow.session_id == session_id))
            db.delete(row)

    def save(self, session: PromptSession) -> None:
        with translate_errors(), self._sessions() as db, db.begin():
            changed = db.execute(
                update(PromptSessionRow)
                .where(PromptSessionRow.id == session.id, PromptSessionRow.version == session.version)
                .values(head=session.head, updated_at=session.updated_at, version=session.version + 1)
            )
            if getattr(changed, "rowcount", 0) != 1:
                if db.get(PromptSessionRow, session.id) is None:
                    raise PromptSessionNotFound(f"No such prompt session: {session.id}.")
                raise ConcurrentUpdate(f"Prompt session {session.id} changed meanwhile; read it again.")
            stored = {
                t.number: t for t in db.scalars(select(PromptTurnRow).where(PromptTurnRow.session_id == session.id))
            }
            for turn in session.turns:
                row = stored.get(turn.number)
                if row is None:
                    db.add(turn_to_row(session.id, turn))
                elif (row.chosen, row.chosen_index, row.picked) != (turn.chosen, turn.chosen_index, turn.picked):
                    row.chosen, row.chosen_index, row.picked = turn.chosen, turn.chosen_index, turn.picked
        session.version += 1

    def list(self, owner: str | None = None, limit: int = 50, offset: int = 0) -> tuple[list[PromptSession], int]:
        conditions: list[Any] = [] if owner is None else [PromptSessionRow.owner == owner]
        page = (
            select(PromptSessionRow)
            .where(*conditions)
            .order_by(PromptSessionRow.updated_at.desc(), PromptSessionRow.id.desc())
            .limit(limit)
            .offset(offset)
        )
        count = select(func.count()).select_from(PromptSessionRow).where(*conditions)
        with translate_errors(), self._sessions() as db:
            total = db.scalar(count) or 0
            rows = list(db.scalars(page))
            ids = [r.id for r in rows]
            turns: dict[str, list[PromptTurnRow]] = {i: [] for i in ids}
            if ids:
                for t in db.scalars(select(PromptTurnRow).where(PromptTurnRow.session_id.in_(ids))):
                    turns[t.session_id].append(t)
            return [session_from_rows(r, turns[r.id]) for r in rows], total
