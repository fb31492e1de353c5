"""Take a turn of a prompt session.

A turn (DiffChat's loop): sample ``n`` rewrites of the current prompt → de-duplicate → render the first
``k`` (the rewriter's most likely ones) with one seed, so only the prompt changes between the images →
score each image with the rewards (aesthetic, preference, content integrity) and its prompt's drift from
the anchor → rank → store the turn with every candidate, the chosen (best) prompt and the seed. With
rewriting off, or when the rewriter gives nothing usable, the current prompt is rendered as the only
candidate and the turn's note says why.

Each candidate is rendered as an ordinary generation job of the session's owner (``RenderPrompts``): it
waits in the queue like any job, is batched by the executor with the other candidates (and any queued
job of the same batching key), and is listed, cancellable and recovered like any job; a candidate's image is its
job's image. A candidate's job that fails or is cancelled fails the turn, and no turn is stored. The
images are rendered outside any transaction; the session is read again afterwards (turns or choices
stored meanwhile are kept; the new turn still grows from where the session was when the instruction
came) and saved with its version checked.
"""

from __future__ import annotations

import random
from collections.abc import Sequence
from dataclasses import dataclass

from app.domain.errors import InvalidParameters
from app.domain.generation import GenerationParams
from app.domain.prompt_sessions import (
    MAX_CANDIDATES,
    MAX_INSTRUCTION_CHARS,
    Candidate,
    RewardWeights,
    Turn,
    TurnSettings,
    clean_text,
    deduplicate,
    drift,
    rank,
)
from app.ports.clock import Clock
from app.ports.prompt_sessions import PromptRewriter, PromptSessionStore, RewardInput, RewardModel
from app.usecases.render_prompts import RenderPrompts

NOTHING_USABLE = "The rewriter returned nothing usable; the current prompt was kept."
REWRITE_OFF = "Rewriting was off for this turn; the current prompt was rendered."


@dataclass(frozen=True)
class TurnRequest:
    instruction: str
    n: int = 8  # rewrites sampled
    k: int = 4  # candidates rendered and ranked
    seed: int | None = None
    rewrite: bool = True
    steps: int = 20
    width: int | None = None
    height: int | None = None
    guidance_scale: float | None = None
    negative_prompt: str = ""

    def __post_init__(self) -> None:
        clean_text(self.instruction, "instruction", MAX_INSTRUCTION_CHARS)
        if not 1 <= self.n <= 64:
            raise InvalidParameters("n must be between 1 and 64.", field="n")
        if not 1 <= self.k <= MAX_CANDIDATES:
            raise InvalidParameters(f"k must be between 1 and {MAX_CANDIDATES}.", field="k")
        if self.seed is not None and not 0 <= self.seed < 2**32:
            raise InvalidParameters("seed must be in [0, 2**32).", field="seed")


class TakeTurn:
    def __init__(
        self,
        store: PromptSessionStore,
        rewriter: PromptRewriter,
        rewards: Sequence[RewardModel],
        render: RenderPrompts,
        clock: Clock,
        weights: RewardWeights | None = None,
    ) -> None:
        self._store, self._rewriter, self._rewards = store, rewriter, list(rewards)
        self._render, self._clock = render, clock
        self._weights = weights or RewardWeights()

    def __call__(self, session_id: str, request: TurnRequest, owner: str | None = None) -> Turn:
        """Raises ``PromptSessionNotFound``, ``InvalidParameters``, ``Conflict`` (the session changed
        while the candidates were rendered), what submitting a job raises (``LimitExceeded``, ...) and
        ``RenderFailed`` (a candidate's job failed, was cancelled or was not run in time)."""
        session = self._store.get(session_id, owner)
        instruction = clean_text(request.instruction, "instruction", MAX_INSTRUCTION_CHARS)
        source = session.current_prompt
        seed = request.seed if request.seed is not None else random.randrange(2**32)
        note: str | None = None
        if request.rewrite:
            prompts = deduplicate(self._rewriter.rewrite(source, instruction, request.n, seed))[: request.k]
            kind = "rewriter"
            if not prompts:
                prompts, kind, note = [source], "current", NOTHING_USABLE
        else:
            prompts, kind, note = [source], "current", REWRITE_OFF
        settings = TurnSettings(
            seed=seed,
            steps=request.steps,
            width=request.width,
            height=request.height,
            guidance_scale=request.guidance_scale,
            negative_prompt=request.negative_prompt,
        )
        renders = self._render(session.owner, [self._params(session.model, prompt, settings) for prompt in prompts])
        pictures, ids = [r.image for r in renders], [r.image_id for r in renders]
        inputs = [RewardInput(p, prompt, instruction, source) for p, prompt in zip(pictures, prompts, strict=True)]
        scores: list[dict[str, float]] = [{} for _ in prompts]
        for reward in self._rewards:
            for row, value in zip(scores, reward.score(inputs), strict=True):
                row[reward.name] = float(value)
        candidates = [
            Candidate(prompt=p, source=kind, scores=s, drift=round(drift(session.anchor, p), 4), image_id=i)
            for p, s, i in zip(prompts, scores, ids, strict=True)
        ]
        ranked = rank(candidates, self._weights)
        # Read again: other turns or choices may have been stored meanwhile. This turn still grows from
        # where the session was when the instruction came (turns are never deleted, so that turn exists).
        fresh = self._store.get(session_id, owner)
        now = self._clock.now()
        if fresh.head != session.head:
            fresh.branch(session.head, now)
        turn = fresh.add_turn(instruction, ranked, settings, now, rewrite=request.rewrite, note=note)
        self._store.save(fresh)
        return turn

    @staticmethod
    def _params(model: str, prompt: str, settings: TurnSettings) -> GenerationParams:
        """A candidate's job: its prompt with the turn's seed and settings."""
        return GenerationParams(
            prompt=prompt,
            model=model,
            negative_prompt=settings.negative_prompt,
            width=settings.width,
            height=settings.height,
            steps=settings.steps,
            guidance_scale=settings.guidance_scale,
            seed=settings.seed,
        )
