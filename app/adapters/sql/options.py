"""Per-owner options in SQL: one row per owner holding a JSON object."""

from __future__ import annotations

from typing import Any

from sqlalchemy.orm import Session, sessionmaker

from app.adapters.sql.errors import translate_errors
from app.adapters.sql.rows import OwnerOptionsRow
from app.domain.errors import ConcurrentUpdate
from app.ports.clock import Clock
from app.ports.options import OwnerOptions


class SqlOwnerOptions(OwnerOptions):
    """Each call is one session and at most one transaction; the last ``set`` wins."""

    def __init__(self, sessions: sessionmaker[Session], clock: Clock) -> None:
        self._sessions = sessions
        self._clock = clock

    def get(self, owner: str) -> dict[str, Any]:
        with translate_errors(), self._sessions() as db:
            row = db.get(OwnerOptionsRow, owner)
            return dict(row.options) if row is not None else {}

    def set(self, owner: str, options: dict[str, Any]) -> None:
        try:
            self._write(owner, options)
        except ConcurrentUpdate:  # another request inserted the owner's first row meanwhile: update it
            self._write(owner, options)

    def _write(self, owner: str, options: dict[str, Any]) -> None:
        with translate_errors(), self._sessions() as db, db.begin():
            row = db.get(OwnerOptionsRow, owner)
            if row is None:
                db.add(OwnerOptionsRow(owner=owner, options=dict(options), updated_at=self._clock.now()))
            else:
                row.options, row.updated_at = dict(options), self._clock.now()
