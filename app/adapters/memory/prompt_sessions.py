"""Prompt sessions in a dict (the ``test`` profile, and a fake in tests), behaving as the SQL store."""

from __future__ import annotations

import copy
import threading

from app.domain.errors import ConcurrentUpdate
from app.domain.prompt_sessions import PromptSession, PromptSessionNotFound
from app.ports.prompt_sessions import PromptSessionStore


class InMemoryPromptSessionStore(PromptSessionStore):
    """Stores and hands out copies; ``save`` checks and bumps ``version`` as the SQL store does."""

    def __init__(self) -> None:
        self._items: dict[str, PromptSession] = {}
        self._lock = threading.Lock()

    def add(self, session: PromptSession) -> None:
        with self._lock:
            if session.id in self._items:
                raise ConcurrentUpdate(f"Prompt session {session.id} exists.")
            session.version = 1
            self._items[session.id] = copy.deepcopy(session)

    def get(self, session_id: str, owner: str | None = None) -> PromptSession:
        with self._lock:
            session = self._items.get(session_id)
            if session is None or (owner is not None and session.owner != owner):
                raise PromptSessionNotFound(f"No such prompt session: {session_id}.")
            return copy.deepcopy(session)

    def delete(self, session_id: str, owner: str | None = None) -> None:
        with self._lock:
            session = self._items.get(session_id)
            if session is None or (owner is not None and session.owner != owner):
                raise PromptSessionNotFound(f"No such prompt session: {session_id}.")
            del self._items[session_id]

    def save(self, session: PromptSession) -> None:
        with self._lock:
            stored = self._items.get(session.id)
            if stored is None:
                raise PromptSessionNotFound(f"No such prompt session: {session.id}.")
            if stored.version != session.version:
                raise ConcurrentUpdate(f"Prompt session {session.id} changed meanwhile; read it again.")
            session.version += 1
            self._items[session.id] = copy.deepcopy(session)

    def list(self, owner: str | None = None, limit: int = 50, offset: int = 0) -> tuple[list[PromptSession], int]:
        with self._lock:
            items = [s for s in self._items.values() if owner is None or s.owner == owner]
            items.sort(key=lambda s: (s.updated_at, s.id), reverse=True)
            return [copy.deepcopy(s) for s in items[offset : offset + limit]], len(items)
