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

from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from app.domain.prompt_sessions import PromptSession, Turn
from app.usecases.take_turn import TurnRequest

if TYPE_CHECKING:
    from app.entrypoints.library import Atelier


class Prompts:
    def __init__(self, atelier: Atelier) -> None:
        self._atelier = atelier
        self._container = atelier.container

    def start(self, prompt: str, *, model: str | None = None, owner: str = "local") -> PromptSession:
        """A new session whose anchor (original intent) is ``prompt``; ``model`` defaults to the default one."""
        self._atelier.migrate()
        session: PromptSession = self._container.start_session()(
            prompt, model or self._atelier.settings.default_model, owner
        )
        return session

    def turn(self, session_id: str, instruction: str, *, owner: str | None = None, **options: Any) -> Turn:
        """Rewrite the current prompt following ``instruction``, render and rank the candidates.

        ``options``: the fields of ``TurnRequest`` (``n``, ``k``, ``seed``, ``rewrite``, ``steps``, ...)."""
        self._atelier.migrate()
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
        self._atelier.migrate()
        chosen: Turn = self._container.choose_candidate()(session_id, turn, index=index, prompt=prompt, owner=owner)
        return chosen

    def undo(self, session_id: str, owner: str | None = None) -> PromptSession:
        self._atelier.migrate()
        session: PromptSession = self._container.move_head().undo(session_id, owner)
        return session

    def branch(self, session_id: str, turn: int | None, owner: str | None = None) -> PromptSession:
        """Grow the next turn from ``turn`` (None: from the anchor)."""
        self._atelier.migrate()
        session: PromptSession = self._container.move_head().branch(session_id, turn, owner)
        return session

    def get(self, session_id: str, owner: str | None = None) -> PromptSession:
        self._atelier.migrate()
        session: PromptSession = self._container.prompt_sessions().get(session_id, owner)
        return session

    def list(self, owner: str | None = None, limit: int = 50, offset: int = 0) -> tuple[list[PromptSession], int]:
        self._atelier.migrate()
        page: tuple[list[PromptSession], int] = self._container.prompt_sessions().list(owner, limit, offset)
        return page

    def train_preference(
        self, *, simulate: str | None = None, turns: int = 200, k: int = 4, seed: int = 0
    ) -> dict[str, Any]:
        """Fit the Bradley–Terry preference reward on the picks stored in sessions, or on ``turns`` turns of
        a simulated demo-world user with the taste ``simulate`` (styled, bold, dark). Turns score it from then on."""
        from app.adapters.rewards.preference_training import (
            preference_path,
            simulated_turn_pairs,
            stored_turn_pairs,
            train_preference,
        )

        self._atelier.migrate()
        reader = self._container.scene_reader()
        if simulate is not None:
            groups = simulated_turn_pairs(simulate, turns, k, reader, seed)
            source = f"simulated:{simulate}"
        else:
            groups = stored_turn_pairs(self._container.prompt_sessions(), self._container.images(), reader)
            source = "picks"
        path = preference_path(self._atelier.settings.data_dir)
        report: dict[str, Any] = train_preference(groups, path, source, seed)
        self._container.prompt_rewards.reset()  # the next turn loads the new model
        return {**report, "path": str(path)}

    def train_sft(
        self,
        *,
        data: str | None = None,
        progress: Callable[[int, int, dict[str, float]], None] | None = None,
        **config: Any,
    ) -> dict[str, Any]:
        """Train the demo world's Chinese rewriter (``SftConfig`` fields in ``config``) on generated
        InstructPE-format records, or on the InstructPE JSON at ``data``; serve it with ``prompt_rewriter="sft"``."""
        from app.adapters.rewriting.sft import SftConfig, load_instructpe, sft_dir, train_sft

        records = load_instructpe(data) if data else None
        folder = sft_dir(self._atelier.settings.data_dir)
        summary: dict[str, Any] = train_sft(folder, SftConfig(**config), records, progress)
        self._container.prompt_rewriter.reset()
        return {**summary, "path": str(folder)}

    def train_rl(
        self,
        *,
        model: str = "demo",
        data: str | None = None,
        out_dir: str | None = None,
        progress: Callable[[int, int, dict[str, float]], None] | None = None,
        **config: Any,
    ) -> dict[str, Any]:
        """PPO on the SFT rewriter (``train_sft`` first) with the turns' combined reward of images drawn by
        ``model``, with action-space dynamic modification and the content-integrity state value (``RlConfig``
        fields in ``config``); serve it with ``prompt_rewriter="sft_rl"``. ``out_dir`` writes it elsewhere
        than the served folder (for comparing settings). ``reward="text"`` (an ``RlConfig`` field) replaces
        the renders by the integrity of the rewrite's own text (``text_integrity``): no render noise and no
        image model, the most the reward can tell PPO about the content."""
        from app.adapters.rewards.integrity import text_integrity_scores
        from app.adapters.rewriting.rl import RlConfig, rl_dir, train_rl
        from app.adapters.rewriting.sft import load_instructpe, sft_dir
        from app.domain.prompt_sessions import ScoreItem

        settings = RlConfig(**config)
        records = load_instructpe(data) if data else None
        folder = Path(out_dir) if out_dir else rl_dir(self._atelier.settings.data_dir)
        sft = sft_dir(self._atelier.settings.data_dir)
        if not (sft / "config.json").is_file():
            from app.domain.errors import ModelUnavailable

            raise ModelUnavailable("The SFT rewriter is not trained: run `atelier prompts train-sft` first.")
        self._atelier.migrate()
        self._container.catalog().get(model)  # an unknown model fails before any training
        scorer = self._container.score_prompts()

        def score(items: Sequence[ScoreItem]) -> list[dict[str, float]]:
            if settings.reward == "text":
                return text_integrity_scores(items)
            return scorer(items, model=model, steps=settings.render_steps)

        summary: dict[str, Any] = train_rl(sft, folder, score, settings, records, progress)
        self._container.prompt_rewriter.reset()
        return {**summary, "path": str(folder)}
