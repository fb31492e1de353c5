"""Prompt sessions in the embedded facade: ``atelier.prompts.start(...)`` and friends.

with Atelier.open() as atelier:
    session = atelier.prompts.start("一个红色的圆形在左上角，白色背景")
    turn = atelier.prompts.turn(session.id, "把圆形换成蓝色", seed=7)
    for c in turn.candidates:                       # ranked, best first; turn.chosen is the first
        print(c.score, c.prompt, atelier.image_path(c.image_id))
    atelier.prompts.choose(session.id, turn.number, index=1)   # or prompt="..." written by hand
    atelier.prompts.undo(session.id)

    # Edit the current image instead (or as well: strategy="both"), with a model that edits by instruction:
    edited = atelier.prompts.turn(session.id, "加一个小三角形", strategy="edit", edit_model="qwen-edit", seed=7)
"""

from __future__ import annotations

from typing import Any

from app.composition import Container
from app.domain.prompt_sessions import PromptSession, Turn, TurnStrategy
from app.domain.specs import parse_enum
from app.usecases.take_turn import TurnRequest


class Prompts:
    def __init__(self, container: Container) -> None:
        self._container = container

    def start(
        self, prompt: str, *, model: str | None = None, edit_model: str | None = None, owner: str = "local"
    ) -> PromptSession:
        """A new session whose anchor (original intent) is ``prompt``; ``model`` defaults to the default one;
        ``edit_model``: the model of its edit turns when a turn names none (default: the deployment's)."""
        session: PromptSession = self._container.start_session()(prompt, model, owner, edit_model)
        return session

    def turn(
        self,
        session_id: str,
        instruction: str,
        *,
        strategy: str = "rewrite",
        edit_model: str | None = None,
        owner: str | None = None,
        **options: Any,
    ) -> Turn:
        """Follow ``instruction``: render the candidates and rank them, best first (the best is chosen).

        ``strategy``: ``rewrite`` (the current prompt rewritten), ``edit`` (the current image edited by
        ``edit_model``, default the session's, else the deployment's) or ``both``, ranked together.
        ``options``: the other fields of ``TurnRequest`` (``n``, ``k``, ``seed``, ``rewrite``, ``steps``, ...)."""
        request = TurnRequest(
            instruction, strategy=parse_enum(TurnStrategy, strategy, "strategy"), edit_model=edit_model, **options
        )
        turn: Turn = self._container.take_turn()(session_id, request, owner)
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

    def delete(self, session_id: str, owner: str | None = None) -> None:
        """Delete the session and its turns (the jobs its turns rendered stay: they are ordinary jobs)."""
        self._container.prompt_sessions().delete(session_id, owner)

    def list(self, owner: str | None = None, limit: int = 50, offset: int = 0) -> tuple[list[PromptSession], int]:
        page: tuple[list[PromptSession], int] = self._container.prompt_sessions().list(owner, limit, offset)
        return page
