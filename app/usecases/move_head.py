"""Move a prompt session's head: undo a turn, or branch from any turn (or the anchor)."""

from __future__ import annotations

from app.domain.prompt_sessions import PromptSession
from app.ports.clock import Clock
from app.ports.prompt_sessions import PromptSessionStore


class MoveHead:
    """Undo (the head goes to its parent) or branch (to any turn, or the anchor)."""

    def __init__(self, store: PromptSessionStore, clock: Clock) -> None:
        self._store, self._clock = store, clock

    def undo(self, session_id: str, owner: str | None = None) -> PromptSession:
        session = self._store.get(session_id, owner)
        session.undo(self._clock.now())
        self._store.save(session)
        return session

    def branch(self, session_id: str, turn: int | None, owner: str | None = None) -> PromptSession:
        session = self._store.get(session_id, owner)
        session.branch(turn, self._clock.now())
        self._store.save(session)
        return session
