"""The model-edit log in a dict (the ``test`` profile, and a fake in tests), behaving as the SQL one."""

from __future__ import annotations

import copy
import threading
from collections.abc import Sequence

from app.domain.edits import EditNotFound, EditRequest, EditStatus
from app.domain.errors import ConcurrentUpdate
from app.ports.edits import EditLog


class InMemoryEditLog(EditLog):
    """Stores and hands out copies: a caller's change to an entity is stored only through ``roll_back``."""

    def __init__(self) -> None:
        self._items: dict[str, EditRequest] = {}
        self._lock = threading.Lock()

    def add(self, edit: EditRequest) -> None:
        with self._lock:
            if edit.id in self._items:
                raise ConcurrentUpdate(f"The record conflicts with a stored one: edit {edit.id} exists.")
            taken = any(
                e.model == edit.model and e.position == edit.position and e.status is EditStatus.APPLIED
                for e in self._items.values()
            )
            if taken and edit.status is EditStatus.APPLIED:
                raise ConcurrentUpdate(f"Another applied edit of {edit.model} already holds position {edit.position}.")
            self._items[edit.id] = copy.deepcopy(edit)

    def get(self, edit_id: str) -> EditRequest:
        with self._lock:
            edit = self._items.get(edit_id)
            if edit is None:
                raise EditNotFound(f"No such edit: {edit_id}.")
            return copy.deepcopy(edit)

    def active(self, model: str) -> list[EditRequest]:
        with self._lock:
            chain = [e for e in self._items.values() if e.model == model and e.status is EditStatus.APPLIED]
            chain.sort(key=lambda e: (e.position, e.id))
            return [copy.deepcopy(e) for e in chain]

    def roll_back(self, edits: Sequence[EditRequest]) -> None:
        with self._lock:
            missing = sorted({e.id for e in edits} - self._items.keys())
            if missing:
                raise EditNotFound(f"No edit {', '.join(missing)}.")
            for edit in edits:  # only what a rollback changes, as the SQL log writes
                stored = self._items[edit.id]
                stored.status = edit.status
                stored.rolled_back_at = edit.rolled_back_at

    def list(self, model: str | None = None, limit: int = 50, offset: int = 0) -> tuple[list[EditRequest], int]:
        with self._lock:
            items = [e for e in self._items.values() if model is None or e.model == model]
            items.sort(key=lambda e: (e.created_at, e.id), reverse=True)
            return [copy.deepcopy(e) for e in items[offset : offset + limit]], len(items)
