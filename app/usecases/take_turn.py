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

The turn's ``strategy`` says what its candidates are. ``rewrite`` (the default): the rewrites above.
``edit``: the current image (the image of the head turn's chosen candidate) edited as the instruction says,
``k`` instruct-mode renders by the edit model with the instruction as their prompt and the seeds ``seed``
… ``seed + k - 1``; each keeps the current prompt (choosing one changes the image, not the prompt).
``both``: the rewrites and the edits, submitted together and ranked together by the same rewards; an edit
is judged against the current prompt and the instruction joined (``edit_reward_prompt``), since its image
has no prompt of its own. The edit model is the turn's ``edit_model``, else the session's, else the
deployment's; it must be registered and of a family that edits by instruction. An edit renders at the
current image's size with the edit model's recommended guidance; the turn's size, guidance and negative
prompt are the session model's. What can be refused without rendering (the strategy, the edit model, no
current image) is refused before anything is stored; a refusal at submission leaves no job and no turn,
at most the owner's copy of the current image as an upload (addressed by content, so a retry reuses it).
"""

from __future__ import annotations

import random
from collections.abc import Sequence
from dataclasses import dataclass, replace

from app.domain.errors import InvalidParameters
from app.domain.families import PROFILES, Capability, unsupported
from app.domain.generation import GenerationParams
from app.domain.models import ModelInfo
from app.domain.prompt_sessions import (
    MAX_CANDIDATES,
    MAX_INSTRUCTION_CHARS,
    Candidate,
    CandidateKind,
    PromptSession,
    RewardWeights,
    Turn,
    TurnSettings,
    TurnStrategy,
    clean_model_name,
    clean_text,
    deduplicate,
    drift,
    edit_reward_prompt,
    rank,
)
from app.domain.specs import Mode, parse_enum
from app.ports.clock import Clock
from app.ports.generation import ModelCatalog
from app.ports.prompt_sessions import PromptRewriter, PromptSessionStore, RewardInput, RewardModel
from app.usecases.render_prompts import KeepAsInput, Render, RenderPrompts

NOTHING_USABLE = "The rewriter returned nothing usable; the current prompt was kept."
REWRITE_OFF = "Rewriting was off for this turn; the current prompt was rendered."


@dataclass(frozen=True)
class TurnRequest:
    instruction: str
    n: int = 8  # rewrites sampled
    k: int = 4  # candidates rendered and ranked (of each kind, in a ``both`` turn)
    seed: int | None = None
    rewrite: bool = True
    steps: int = 20
    width: int | None = None
    height: int | None = None
    guidance_scale: float | None = None
    negative_prompt: str = ""
    strategy: TurnStrategy = TurnStrategy.REWRITE  # also its value: "rewrite", "edit" or "both"
    edit_model: str | None = None  # the edits' model (default: the session's, else the deployment's)

    def __post_init__(self) -> None:
        clean_text(self.instruction, "instruction", MAX_INSTRUCTION_CHARS)
        if not 1 <= self.n <= 64:
            raise InvalidParameters("n must be between 1 and 64.", field="n")
        if not 1 <= self.k <= MAX_CANDIDATES:
            raise InvalidParameters(f"k must be between 1 and {MAX_CANDIDATES}.", field="k")
        if self.seed is not None and not 0 <= self.seed < 2**32:
            raise InvalidParameters("seed must be in [0, 2**32).", field="seed")
        object.__setattr__(self, "strategy", parse_enum(TurnStrategy, self.strategy, "strategy"))
        object.__setattr__(self, "edit_model", clean_model_name(self.edit_model, "edit_model"))


def edit_model_info(catalog: ModelCatalog, name: str, field: str = "edit_model") -> ModelInfo:
    """The registered model ``name``; raises ``UnknownModel``, and ``InvalidParameters``
    (``unsupported_capability``, naming ``field``) unless its family edits by instruction."""
    model = catalog.get(name)
    if not model.profile.supports(Capability.INSTRUCT):
        able = ", ".join(p.label for p in PROFILES.values() if p.supports(Capability.INSTRUCT))
        raise unsupported(
            model.family,
            Capability.INSTRUCT,
            field,
            f"Edits need a model of a family that edits by instruction: {able}.",
        )
    return model


@dataclass(frozen=True)
class _Edit:
    """What an edit turn edits: ``image_id`` (the current image) with ``model``."""

    model: str
    image_id: str


@dataclass(frozen=True)
class _Planned:
    """A candidate before its render: the job that draws it and the text its image is judged against."""

    candidate: Candidate
    params: GenerationParams
    judged_prompt: str


class TakeTurn:
    """``edit_model``: the deployment's edit model, for sessions and turns that name none."""

    def __init__(
        self,
        store: PromptSessionStore,
        rewriter: PromptRewriter,
        rewards: Sequence[RewardModel],
        render: RenderPrompts,
        clock: Clock,
        weights: RewardWeights | None = None,
        *,
        catalog: ModelCatalog,
        inputs: KeepAsInput,
        edit_model: str | None = None,
    ) -> None:
        self._store, self._rewriter, self._rewards = store, rewriter, list(rewards)
        self._render, self._clock = render, clock
        self._weights = weights or RewardWeights()
        self._catalog, self._inputs, self._edit_model = catalog, inputs, edit_model

    def __call__(self, session_id: str, request: TurnRequest, owner: str | None = None) -> Turn:
        """Raises ``PromptSessionNotFound``, ``InvalidParameters`` (also: no current image to edit, an edit
        model that is missing or cannot edit by instruction), ``UnknownModel``, ``Conflict`` (the session
        changed while the candidates were rendered), what submitting a job raises (``LimitExceeded``, ...)
        and ``RenderFailed`` (a candidate's job failed, was cancelled or was not run in time)."""
        session = self._store.get(session_id, owner)
        instruction = clean_text(request.instruction, "instruction", MAX_INSTRUCTION_CHARS)
        strategy = request.strategy
        edit = self._edit_target(session, request) if strategy.edits else None
        source = session.current_prompt
        seed = request.seed if request.seed is not None else random.randrange(2**32)
        settings = TurnSettings(
            seed=seed,
            steps=request.steps,
            width=request.width,
            height=request.height,
            guidance_scale=request.guidance_scale,
            negative_prompt=request.negative_prompt,
        )
        planned, note = self._rewrites(session, instruction, request, settings) if strategy.rewrites else ([], None)
        if edit is not None:
            planned += self._edits(session, edit, instruction, request.k, settings)
        renders = self._render(session.owner, [p.params for p in planned])
        ranked = rank(self._scored(planned, renders, instruction, source), self._weights)
        # Read again: other turns or choices may have been stored meanwhile. This turn still grows from
        # where the session was when the instruction came (turns are never deleted, so that turn exists).
        fresh = self._store.get(session_id, owner)
        now = self._clock.now()
        if fresh.head != session.head:
            fresh.branch(session.head, now)
        turn = fresh.add_turn(
            instruction,
            ranked,
            settings,
            now,
            rewrite=request.rewrite and strategy.rewrites,
            note=note,
            strategy=strategy,
            edit_model=None if edit is None else edit.model,
        )
        self._store.save(fresh)
        return turn

    def _edit_target(self, session: PromptSession, request: TurnRequest) -> _Edit:
        """The current image and the edit model, checked before anything is rendered or stored."""
        image = session.current_image
        if image is None:
            where = "its original prompt" if session.head is None else f"turn {session.head}, a prompt written by hand"
            raise InvalidParameters(
                f"strategy {request.strategy.value} edits the current image, and the session has none: it is at "
                f"{where}. Take a rewrite turn first, or branch to a turn with an image.",
                code="no_current_image",
                field="strategy",
            )
        name = request.edit_model or session.edit_model or self._edit_model
        if name is None:
            raise InvalidParameters(
                f"strategy {request.strategy.value} needs an edit model: name one in edit_model (a model of a family "
                "that edits by instruction), or give the session or the deployment one.",
                code="missing_edit_model",
                field="edit_model",
            )
        edit_model_info(self._catalog, name)
        return _Edit(name, image)

    def _rewrites(
        self, session: PromptSession, instruction: str, request: TurnRequest, settings: TurnSettings
    ) -> tuple[list[_Planned], str | None]:
        """The first ``k`` distinct rewrites of the current prompt (or the prompt itself, with a note why)."""
        source, note = session.current_prompt, None
        if request.rewrite:
            prompts = deduplicate(self._rewriter.rewrite(source, instruction, request.n, settings.seed))[: request.k]
            origin = "rewriter"
            if not prompts:
                prompts, origin, note = [source], "current", NOTHING_USABLE
        else:
            prompts, origin, note = [source], "current", REWRITE_OFF
        planned = [
            _Planned(
                Candidate(prompt=p, source=origin, drift=round(drift(session.anchor, p), 4), seed=settings.seed),
                self._params(session.model, p, settings),
                p,
            )
            for p in prompts
        ]
        return planned, note

    def _edits(
        self, session: PromptSession, edit: _Edit, instruction: str, k: int, settings: TurnSettings
    ) -> list[_Planned]:
        """``k`` instruct edits of the current image, one per seed; each keeps the current prompt."""
        source = session.current_prompt
        init = self._inputs(edit.image_id, session.owner)
        judged = edit_reward_prompt(source, instruction)
        kept = round(drift(session.anchor, source), 4)
        planned = []
        for seed in (settings.seed + i for i in range(k)):
            candidate = Candidate(
                prompt=source,
                source="current",
                drift=kept,
                kind=CandidateKind.EDIT,
                seed=seed,
                edited_image=edit.image_id,
            )
            params = GenerationParams(
                prompt=instruction,
                model=edit.model,
                mode=Mode.INSTRUCT,
                init_image=init,
                steps=settings.steps,
                seed=seed,
            )
            planned.append(_Planned(candidate, params, judged))
        return planned

    def _scored(
        self, planned: Sequence[_Planned], renders: Sequence[Render], instruction: str, source: str
    ) -> list[Candidate]:
        """Each candidate with its image and every reward's score of it."""
        inputs = [
            RewardInput(r.image, p.judged_prompt, instruction, source) for p, r in zip(planned, renders, strict=True)
        ]
        scores: list[dict[str, float]] = [{} for _ in planned]
        for reward in self._rewards:
            for row, value in zip(scores, reward.score(inputs), strict=True):
                row[reward.name] = float(value)
        return [
            replace(p.candidate, scores=s, image_id=r.image_id)
            for p, s, r in zip(planned, scores, renders, strict=True)
        ]

    @staticmethod
    def _params(model: str, prompt: str, settings: TurnSettings) -> GenerationParams:
        """A rewrite candidate's job: its prompt with the turn's seed and settings."""
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
