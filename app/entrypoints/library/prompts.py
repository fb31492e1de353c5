"""Prompt sessions in the embedded facade: ``atelier.prompts.start(...)`` and friends.

with Atelier.open() as atelier:
    session = atelier.prompts.start("一个红色的圆形在左上角，白色背景")
    turn = atelier.prompts.turn(session.id, "把圆形换成蓝色", seed=7)
    for c in turn.candidates:                       # ranked, best first; turn.chosen is the first
        print(c.score, c.prompt, atelier.image_path(c.image_id))
    atelier.prompts.choose(session.id, turn.number, index=1)   # or prompt="..." written by hand
    atelier.prompts.undo(session.id)
"""

from __future__ import annotations

from typing import Any

from app.composition import Container
from app.domain.prompt_sessions import PromptSession, Turn
from app.usecases.take_turn import TurnRequest


class Prompts:
    def __init__(self, container: Container) -> None:
        self._container = container

    def start(self, prompt: str, *, model: str | None = None, owner: str = "local") -> PromptSession:
        """A new session whose anchor (original intent) is ``prompt``; ``model`` defaults to the default one."""
        session: PromptSession = self._container.start_session()(prompt, model, owner)
        return session

    def turn(self, session_id: str, instruction: str, *, owner: str | None = None, **options: Any) -> Turn:
        """Rewrite the current prompt following ``instruction``, render and rank the candidates.

        ``options``: the fields of ``TurnRequest`` (``n``, ``k``, ``seed``, ``rewrite``, ``steps``, ...)."""
        turn: Turn = self._container.take_turn()(session_id, TurnRequest(instruction, **options), owner)
        return turn

    def choose(
        self,
        session_id: str,
        turn: int,
        *,
        index: int | None = None,
        prompt: str | None = None,
        owner: str | None = None,
    ) -> Turn:
        chosen: Turn = self._container.choose_candidate()(session_id, turn, index=index, prompt=prompt, owner=owner)
        return chosen

    def undo(self, session_id: str, owner: str | None = None) -> PromptSession:
        session: PromptSession = self._container.move_head().undo(session_id, owner)
        return session

    def branch(self, session_id: str, turn: int | None, owner: str | None = None) -> PromptSession:
        """Grow the next turn from ``turn`` (None: from the anchor)."""
        session: PromptSession = self._container.move_head().branch(session_id, turn, owner)
        return session

    def get(self, session_id: str, owner: str | None = None) -> PromptSession:
        session: PromptSession = self._container.prompt_sessions().get(session_id, owner)
        return session

    def list(self, owner: str | None = None, limit: int = 50, offset: int = 0) -> tuple[list[PromptSession], int]:
        page: tuple[list[PromptSession], int] = self._container.prompt_sessions().list(owner, limit, offset)
        return page
