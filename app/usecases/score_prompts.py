"""Render prompts and score their images with the turn's rewards, without storing anything.

What RL training of the rewriter needs from the application: for each rollout (a rewritten prompt of
a source prompt following an instruction, with the seed of its record), the image the model draws
from it and the rewards of that image (content integrity, aesthetic, preference), combined with the
same ``RewardWeights`` that rank a turn's candidates, so training optimises exactly what serving ranks by.
Images are rendered in batches through ``ImageGenerator.generate_batch`` and kept in memory only.
"""

from __future__ import annotations

from collections.abc import Sequence

from app.domain.generation import GenerationParams
from app.domain.prompt_sessions import COMBINED, RewardWeights, ScoreItem
from app.ports.generation import ImageGenerator, ImageStore, ModelCatalog, ProgressSink, RgbImage
from app.ports.prompt_sessions import RewardInput, RewardModel
from app.usecases.generation_inputs import build_request, prepare


class _Quiet(ProgressSink):
    def step(self, done: int, total: int) -> None:
        return None


class ScorePrompts:
    def __init__(
        self,
        generator: ImageGenerator,
        catalog: ModelCatalog,
        images: ImageStore,
        rewards: Sequence[RewardModel],
        weights: RewardWeights | None = None,
    ) -> None:
        self._generator, self._catalog, self._images = generator, catalog, images
        self._rewards, self._weights = list(rewards), weights or RewardWeights()

    def render(self, items: Sequence[ScoreItem], model: str, steps: int = 20) -> list[RgbImage]:
        requests = []
        for item in items:
            params = GenerationParams(prompt=item.prompt, model=model, steps=steps, seed=item.seed)
            requests.append(build_request(prepare(params, self._catalog, self._images), self._catalog, self._images))
        outcomes = self._generator.generate_batch(requests, [_Quiet() for _ in requests])
        pictures = []
        for outcome in outcomes:
            if isinstance(outcome, Exception):
                raise outcome
            image = outcome[0]
            pictures.append(RgbImage(image.width, image.height, image.rgb))
        return pictures

    def __call__(self, items: Sequence[ScoreItem], model: str, steps: int = 20) -> list[dict[str, float]]:
        """One dict per item: each reward by name and ``reward``, their weighted combination. An empty prompt
        is not drawn: it is unusable as a rewrite (a turn falls back to the current prompt), so every reward is 0."""
        drawn = [i for i, item in enumerate(items) if item.prompt.strip()]
        pictures = self.render([items[i] for i in drawn], model, steps) if drawn else []
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
