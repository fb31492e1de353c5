"""Ports of prompt sessions (DiffChat): the rewriter, the rewards and the session store."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

from app.domain.prompt_sessions import PromptSession
from app.ports.generation import RgbImage


class PromptRewriter(Protocol):
    """Rewrites the current prompt of a session following an instruction."""

    name: str

    def rewrite(self, prompt: str, instruction: str, n: int, seed: int) -> list[str]:
        """Up to ``n`` candidate prompts, most likely first (may repeat; may be empty when nothing usable
        came out). Deterministic for a given ``seed``."""


@dataclass(frozen=True)
class RewardInput:
    """What a reward judges: the image rendered from ``prompt``, which rewrote ``source_prompt`` following
    ``instruction`` (content integrity asks whether the instruction was applied and the rest kept). For an
    edit of the current image, which has no prompt of its own, ``prompt`` states what the edit should show:
    ``source_prompt`` and ``instruction`` joined (``edit_reward_prompt``), so a reward that reads the prompt
    judges both kinds of candidate against what the turn asks."""

    image: RgbImage
    prompt: str
    instruction: str
    source_prompt: str


class RewardModel(Protocol):
    """One reward in [0, 1]; ``name`` is ``aesthetic``, ``preference`` or ``integrity``."""

    name: str

    def score(self, inputs: list[RewardInput]) -> list[float]:
        """One score per input, in order."""


class PromptSessionStore(Protocol):
    """The persisted sessions. Each call is its own short transaction."""

    def add(self, session: PromptSession) -> None: ...

    def get(self, session_id: str, owner: str | None = None) -> PromptSession:
        """Raises ``PromptSessionNotFound`` (also for another owner's session)."""

    def save(self, session: PromptSession) -> None:
        """Store the session's turns and head; raises ``Conflict`` when it changed since it was read."""

    def list(self, owner: str | None = None, limit: int = 50, offset: int = 0) -> tuple[list[PromptSession], int]:
        """Most recently updated first, with the total count."""

    def delete(self, session_id: str, owner: str | None = None) -> None:
        """Remove the session and its turns; raises ``PromptSessionNotFound`` (also for another owner's)."""
