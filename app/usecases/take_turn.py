"""Prompt sessions: start one, take a turn, choose a candidate, undo and branch.

A turn (DiffChat's loop): sample ``n`` rewrites of the current prompt → de-duplicate → render the first
``k`` (the rewriter's most likely ones) with one seed, so only the prompt changes between the images →
score each image with the rewards (aesthetic, preference, content integrity) and its prompt's drift from
the anchor → rank → store the turn with every candidate, the chosen (best) prompt and the seed. With
rewriting off, or when the rewriter gives nothing usable, the current prompt is rendered as the only
candidate and the turn's note says why.

The images are rendered outside any transaction; the session is read again afterwards (turns or
choices stored meanwhile are kept; the new turn still grows from where the session was when the
instruction came) and saved with its version checked.
"""

from __future__ import annotations

import random
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from app.domain.errors import AtelierError, InvalidParameters
from app.domain.generation import GenerationParams
from app.domain.jobs import GenerationJob, ImageRef
from app.domain.prompt_sessions import (
    MAX_CANDIDATES,
    MAX_INSTRUCTION_CHARS,
    Candidate,
    PromptSession,
    RewardWeights,
    Turn,
    TurnSettings,
    clean_text,
    deduplicate,
    drift,
    rank,
)
from app.ports.clock import Clock
from app.ports.generation import ImageGenerator, ImageStore, ModelCatalog, ProgressSink, RgbImage
from app.ports.persistence import UnitOfWorkFactory
from app.ports.prompt_sessions import PromptRewriter, PromptSessionStore, RewardInput, RewardModel
from app.usecases.generation_inputs import build_request, prepare
from app.usecases.run_generation import image_infotext

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


class _Quiet(ProgressSink):
    def step(self, done: int, total: int) -> None:
        return None


class StartSession:
    def __init__(self, store: PromptSessionStore, catalog: ModelCatalog, clock: Clock) -> None:
        self._store, self._catalog, self._clock = store, catalog, clock

    def __call__(self, prompt: str, model: str, owner: str = "local") -> PromptSession:
        """Raises ``InvalidParameters`` (empty prompt) and ``UnknownModel``."""
        self._catalog.get(model)
        session = PromptSession.start(owner, model, prompt, self._clock.now())
        self._store.add(session)
        return session


class TakeTurn:
    def __init__(
        self,
        store: PromptSessionStore,
        rewriter: PromptRewriter,
        rewards: Sequence[RewardModel],
        generator: ImageGenerator,
        catalog: ModelCatalog,
        images: ImageStore,
        uow: UnitOfWorkFactory,
        clock: Clock,
        weights: RewardWeights | None = None,
    ) -> None:
        self._store, self._rewriter, self._rewards, self._uow = store, rewriter, list(rewards), uow
        self._generator, self._catalog, self._images, self._clock = generator, catalog, images, clock
        self._weights = weights or RewardWeights()

    def __call__(self, session_id: str, request: TurnRequest, owner: str | None = None) -> Turn:
        """Raises ``PromptSessionNotFound``, ``InvalidParameters`` and ``Conflict`` (the session changed
        while the candidates were rendered)."""
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
        pictures, ids = self._render(session, prompts, settings)
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

    def _render(
        self, session: PromptSession, prompts: list[str], settings: TurnSettings
    ) -> tuple[list[RgbImage], list[str]]:
        """One generation job per candidate (its prompt, the shared seed and settings), recorded as running
        before the render and as succeeded (or failed) after it, so every image is an ordinary job's
        image (``GET /v1/images/{id}``, the job list) and a crash mid-render leaves jobs recovery re-runs."""
        jobs: list[GenerationJob] = []
        for prompt in prompts:
            params = GenerationParams(
                prompt=prompt,
                model=session.model,
                negative_prompt=settings.negative_prompt,
                width=settings.width,
                height=settings.height,
                steps=settings.steps,
                guidance_scale=settings.guidance_scale,
                seed=settings.seed,
            )
            job = GenerationJob.create(session.owner, prepare(params, self._catalog, self._images), self._clock.now())
            job.start(self._clock.now())
            jobs.append(job)
        requests = [build_request(job.params, self._catalog, self._images) for job in jobs]
        with self._uow() as uow:
            for job in jobs:
                uow.jobs.add(job)
            uow.commit()
        try:
            outcomes = self._generator.generate_batch(requests, [_Quiet() for _ in requests])
            refs: list[ImageRef] = []
            pictures: list[RgbImage] = []
            for job, outcome in zip(jobs, outcomes, strict=True):
                if isinstance(outcome, Exception):
                    raise outcome
                image = outcome[0]
                refs.append(self._images.save(job.id, 0, image, image_infotext(job.params, image, self._catalog)))
                pictures.append(RgbImage(image.width, image.height, image.rgb))
        except Exception as error:
            code = error.code if isinstance(error, AtelierError) else "generation_failed"
            message = error.message if isinstance(error, AtelierError) else f"{type(error).__name__}: {error}"
            self._finish(jobs, lambda job, _: job.fail(code, message, self._clock.now()))
            raise
        self._finish(jobs, lambda job, i: job.succeed([refs[i]], self._clock.now()))
        return pictures, [ref.id for ref in refs]

    def _finish(self, jobs: list[GenerationJob], change: Callable[[GenerationJob, int], None]) -> None:
        with self._uow() as uow:
            for i, job in enumerate(jobs):
                stored = uow.jobs.get(job.id)
                change(stored, i)
                uow.jobs.save(stored)
            uow.commit()


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
