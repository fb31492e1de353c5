"""Render prompts and score their images with the turn's rewards, storing no session or turn.

What RL training of the rewriter needs from the application: for each rollout (a rewritten prompt of
a source prompt following an instruction, with the seed of its record), the image the model draws
from it and the rewards of that image (content integrity, aesthetic, preference), combined with the
same ``RewardWeights`` that rank a turn's candidates, so training optimises exactly what serving ranks by.
Images are rendered as ordinary generation jobs of ``owner`` (``RenderPrompts``: queued, batched by the
executor, listed with the other jobs, their images stored like any job's).
"""

from __future__ import annotations

from collections.abc import Sequence

from app.domain.generation import GenerationParams
from app.domain.prompt_sessions import COMBINED, RewardWeights, ScoreItem
from app.ports.generation import RgbImage
from app.ports.prompt_sessions import RewardInput, RewardModel
from app.usecases.render_prompts import RenderPrompts


class ScorePrompts:
    def __init__(
        self,
        render: RenderPrompts,
        rewards: Sequence[RewardModel],
        weights: RewardWeights | None = None,
    ) -> None:
        self._render = render
        self._rewards, self._weights = list(rewards), weights or RewardWeights()

    def render(self, items: Sequence[ScoreItem], model: str, steps: int = 20, owner: str = "local") -> list[RgbImage]:
        """Each item's prompt drawn with its seed, one job each; raises ``RenderFailed`` when a job does not succeed."""
        params = [GenerationParams(prompt=item.prompt, model=model, steps=steps, seed=item.seed) for item in items]
        return [render.image for render in self._render(owner, params)]

    def __call__(
        self, items: Sequence[ScoreItem], model: str, steps: int = 20, owner: str = "local"
    ) -> list[dict[str, float]]:
        """One dict per item: each reward by name and ``reward``, their weighted combination. An empty prompt
        is not drawn: it is unusable as a rewrite (a turn falls back to the current prompt), so every reward is 0."""
        drawn = [i for i, item in enumerate(items) if item.prompt.strip()]
        pictures = self.render([items[i] for i in drawn], model, steps, owner) if drawn else []
        inputs = [
            RewardInput(picture, items[i].prompt, items[i].instruction, items[i].source_prompt)
            for picture, i in zip(pictures, drawn, strict=True)
        ]
        scores: list[dict[str, float]] = [{reward.name: 0.0 for reward in self._rewards} for _ in items]
        for reward in self._rewards:
            for i, value in zip(drawn, reward.score(inputs) if inputs else [], strict=True):
                scores[i][reward.name] = float(value)
        for row in scores:  # an undrawn row's rewards are all 0, and so is their combination
            row[COMBINED] = self._weights.combine(row)
        return scores
