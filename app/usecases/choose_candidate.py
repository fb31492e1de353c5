"""Choose a turn's candidate, or a prompt written by hand: the next turn grows from it.

Choosing an edit candidate keeps the prompt (an edit's prompt is the one before its turn) and makes its
image the current image, the one the next edit turn edits; a prompt written by hand has no image, so an
edit turn from it is refused until a rewrite turn renders one."""

from __future__ import annotations

from app.domain.prompt_sessions import Turn
from app.ports.clock import Clock
from app.ports.prompt_sessions import PromptSessionStore


class ChooseCandidate:
    def __init__(self, store: PromptSessionStore, clock: Clock) -> None:
        self._store, self._clock = store, clock

    def __call__(
        self,
        session_id: str,
        turn: int,
        *,
        index: int | None = None,
        prompt: str | None = None,
        owner: str | None = None,
    ) -> Turn:
        """Pick candidate ``index`` of ``turn`` (or a prompt the user wrote; it is stored as a ``user``
        candidate without an image); the next turn grows from it."""
        session = self._store.get(session_id, owner)
        chosen = session.choose(turn, self._clock.now(), index=index, prompt=prompt)
        self._store.save(session)
        return chosen
