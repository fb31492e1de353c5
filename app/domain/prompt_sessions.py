"""Prompt sessions (DiffChat): multi-round rewriting of an image prompt from a user's instructions.

A ``PromptSession`` starts from the user's original intent, the **anchor** prompt. Each ``Turn`` takes
an instruction ("把圆形换成蓝色"), the prompt it applies to (the chosen prompt of its parent turn, or the
anchor), the rewritten candidates with their reward scores and images, and the prompt finally chosen
(the best-ranked one unless the user picks another candidate or writes their own). Turns form a tree:
``undo`` moves the head to the parent turn, ``branch`` to any earlier turn, and the next turn grows from
the head, so an abandoned line of turns stays in the session.

Ranking: the candidates' reward scores (each in [0, 1]: aesthetic, preference, content integrity) are
combined with ``RewardWeights``, a weighted mean over the rewards that were measured. **Drift** is how
far a candidate has moved from the anchor: one minus the Dice overlap of the character bigrams of the
two prompts (characters, not words, because the prompts are mostly Chinese and unsegmented). A
candidate whose drift exceeds ``RewardWeights.max_drift`` is flagged and ranked after every candidate
that is not; it is still shown, because a long chain of instructions may rightly move far from where it
began.

Two ways to take a turn (``TurnStrategy``): **rewrite** the prompt (the candidates are renders of rewritten
prompts) or **edit** the current image with the instruction (the candidates are instruct-mode renders of
the image the head turn chose, one per seed, by a model whose family edits by instruction); **both** ranks
the two kinds together by the same rewards. A candidate records its ``kind``. An edit leaves the prompt as
it was: an edit candidate's ``prompt`` is the prompt before the turn, so choosing it keeps the current
prompt and makes its image the **current image**, the one the next edit starts from (a later rewrite turn
renders its prompts afresh, without the edit).
"""

from __future__ import annotations

import re
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import datetime
from enum import StrEnum

from app.domain.errors import InvalidParameters, NotFound
from app.domain.text import require_text

MAX_INSTRUCTION_CHARS = 500
MAX_PROMPT_CHARS = 1000
MAX_CANDIDATES = 16  # of each kind a turn renders
MAX_TURN_CANDIDATES = 2 * MAX_CANDIDATES  # a ``both`` turn: the rewrites and the edits
MAX_MODEL_NAME = 128
REWARDS = ("aesthetic", "preference", "integrity")


class TurnStrategy(StrEnum):
    """How a turn makes its candidates: rewrite the prompt, edit the current image, or both, ranked together."""

    REWRITE = "rewrite"
    EDIT = "edit"
    BOTH = "both"

    @property
    def rewrites(self) -> bool:
        return self is not TurnStrategy.EDIT

    @property
    def edits(self) -> bool:
        return self is not TurnStrategy.REWRITE


class CandidateKind(StrEnum):
    """How a candidate was made: the render of a (rewritten) prompt, or an instruct edit of the current image."""

    REWRITE = "rewrite"
    EDIT = "edit"


class PromptSessionNotFound(NotFound):
    code = "prompt_session_not_found"
    default_message = "No such prompt session."


class TurnNotFound(NotFound):
    code = "turn_not_found"
    default_message = "No such turn in this session."


def new_session_id() -> str:
    return f"ps-{uuid.uuid4().hex[:16]}"


def clean_text(value: str, field_name: str, limit: int) -> str:
    """``value`` stripped; raises ``InvalidParameters`` when it is empty or longer than ``limit``."""
    text = " ".join(value.split()) if isinstance(value, str) else ""
    if not text:
        raise InvalidParameters(f"{field_name} must not be empty.", field=field_name)
    if len(text) > limit:
        raise InvalidParameters(f"{field_name} is longer than {limit} characters.", field=field_name)
    return require_text(text, field_name)


def clean_model_name(value: str | None, field_name: str) -> str | None:
    """An optional model name: None stays None; anything else must be a non-empty name of at most
    ``MAX_MODEL_NAME`` characters (whether it is registered is the catalog's to say)."""
    if value is None:
        return None
    if not isinstance(value, str) or not value.strip() or len(value) > MAX_MODEL_NAME:
        raise InvalidParameters(
            f"{field_name} must be a model name of 1 to {MAX_MODEL_NAME} characters.", field=field_name
        )
    return value.strip()


_PUNCTUATION = re.compile(r"[\s，,。.、;；:：!！?？\"'“”‘’()（）]+")


def normalise_prompt(prompt: str) -> str:
    """The form two prompts are compared in: lower case, without spaces or punctuation."""
    return _PUNCTUATION.sub("", prompt.lower())


def deduplicate(prompts: Sequence[str]) -> list[str]:
    """``prompts`` in order, without empty ones and without repeats up to spacing and punctuation."""
    seen: set[str] = set()
    out: list[str] = []
    for prompt in prompts:
        text = " ".join(prompt.split())
        key = normalise_prompt(text)
        if key and key not in seen and len(text) <= MAX_PROMPT_CHARS:
            seen.add(key)
            out.append(text)
    return out


def _bigrams(text: str) -> list[str]:
    chars = normalise_prompt(text)
    return [chars[i : i + 2] for i in range(len(chars) - 1)] or ([chars] if chars else [])


def drift(anchor: str, prompt: str) -> float:
    """1 − Dice overlap of the character bigrams (as multisets) of ``anchor`` and ``prompt``; in [0, 1]."""
    a, b = _bigrams(anchor), _bigrams(prompt)
    if not a and not b:
        return 0.0
    remaining = list(b)
    common = 0
    for gram in a:
        if gram in remaining:
            remaining.remove(gram)
            common += 1
    return 1.0 - 2.0 * common / (len(a) + len(b))


@dataclass(frozen=True)
class RewardWeights:
    """How the rewards combine into one ranking score; ``max_drift`` flags candidates too far from the anchor."""

    aesthetic: float = 0.2
    preference: float = 0.2
    integrity: float = 0.6
    max_drift: float = 0.85

    def __post_init__(self) -> None:
        for name in REWARDS:
            if getattr(self, name) < 0:
                raise InvalidParameters(f"The {name} weight must not be negative.", field=name)
        if not 0 < self.max_drift <= 1:
            raise InvalidParameters("max_drift must be in (0, 1].", field="max_drift")

    def combine(self, scores: Mapping[str, float]) -> float:
        """Weighted mean of the measured rewards (0 when none was measured or all weights are 0)."""
        total = sum(getattr(self, n) for n in REWARDS if n in scores)
        if total <= 0:
            return 0.0
        return float(sum(getattr(self, n) * scores[n] for n in REWARDS if n in scores) / total)


COMBINED = "reward"  # the key of the weighted combination in a row of scores


def edit_reward_prompt(prompt: str, instruction: str) -> str:
    """The text an edit candidate's image is judged against (it has no prompt of its own that says what
    it shows): the prompt before the turn and the instruction joined, as the ``concat`` rewriter writes them."""
    return f"{prompt.rstrip('，,。. ')}，{instruction.strip()}"


@dataclass(frozen=True)
class ScoreItem:
    """A prompt to render and score outside any session: a rewrite of ``source_prompt`` following
    ``instruction``, drawn with ``seed`` (what RL of a rewriter scores its rollouts by)."""

    prompt: str
    instruction: str
    source_prompt: str
    seed: int


@dataclass(frozen=True)
class Candidate:
    """One candidate of a turn. ``source`` says where its prompt came from: ``rewriter``, ``current`` (the
    prompt before the turn: rewriting was off or gave nothing usable, or the candidate is an edit) or
    ``user`` (written by the user when choosing). ``kind`` says how its image was made: ``rewrite`` (its
    prompt rendered) or ``edit`` (``edited_image``, the current image, edited as the turn's instruction
    says). ``seed``: the seed its image was drawn with (None in turns stored before it was recorded: the
    turn's seed)."""

    prompt: str
    source: str = "rewriter"
    scores: Mapping[str, float] = field(default_factory=dict)
    score: float | None = None
    drift: float = 0.0
    drifted: bool = False
    image_id: str | None = None
    kind: CandidateKind = CandidateKind.REWRITE
    seed: int | None = None
    edited_image: str | None = None

    def to_dict(self) -> dict[str, object]:
        return {
            "prompt": self.prompt,
            "source": self.source,
            "scores": dict(self.scores),
            "score": self.score,
            "drift": self.drift,
            "drifted": self.drifted,
            "image_id": self.image_id,
            "kind": self.kind.value,
            "seed": self.seed,
            "edited_image": self.edited_image,
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, object]) -> Candidate:
        """Also reads the dicts of turns stored before edits existed (every candidate then a rewrite)."""
        scores = data.get("scores") or {}
        score = data.get("score")
        image = data.get("image_id")
        seed = data.get("seed")
        edited = data.get("edited_image")
        return cls(
            prompt=str(data["prompt"]),
            source=str(data.get("source", "rewriter")),
            scores={str(k): float(v) for k, v in dict(scores).items()},  # type: ignore[call-overload]
            score=None if score is None else float(score),  # type: ignore[arg-type]
            drift=float(data.get("drift", 0.0)),  # type: ignore[arg-type]
            drifted=bool(data.get("drifted", False)),
            image_id=None if image is None else str(image),
            kind=CandidateKind(str(data.get("kind", CandidateKind.REWRITE.value))),
            seed=None if seed is None else int(seed),  # type: ignore[call-overload]
            edited_image=None if edited is None else str(edited),
        )


def rank(candidates: Sequence[Candidate], weights: RewardWeights) -> list[Candidate]:
    """Scored and sorted: candidates within ``max_drift`` first, then by combined score (best first);
    ties keep the given order (the rewriter's; in a ``both`` turn the rewrites before the edits). Both kinds
    are ranked by the same rewards."""
    scored = [replace(c, score=weights.combine(c.scores), drifted=c.drift > weights.max_drift) for c in candidates]
    order = sorted(range(len(scored)), key=lambda i: (scored[i].drifted, -(scored[i].score or 0.0), i))
    return [scored[i] for i in order]


@dataclass(frozen=True)
class TurnSettings:
    """What renders a turn's candidates: the same seed for all rewrites, so only the prompt changes; edit
    candidate ``i`` is drawn with ``seed + i`` (the same image and instruction, so only the seed changes)."""

    seed: int
    steps: int = 20
    width: int | None = None
    height: int | None = None
    guidance_scale: float | None = None
    negative_prompt: str = ""

    def to_dict(self) -> dict[str, object]:
        return {
            "seed": self.seed,
            "steps": self.steps,
            "width": self.width,
            "height": self.height,
            "guidance_scale": self.guidance_scale,
            "negative_prompt": self.negative_prompt,
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, object]) -> TurnSettings:
        def opt(name: str, kind: type) -> object:
            value = data.get(name)
            return None if value is None else kind(value)

        return cls(
            seed=int(data["seed"]),  # type: ignore[call-overload]
            steps=int(data.get("steps", 20)),  # type: ignore[call-overload]
            width=opt("width", int),  # type: ignore[arg-type]
            height=opt("height", int),  # type: ignore[arg-type]
            guidance_scale=opt("guidance_scale", float),  # type: ignore[arg-type]
            negative_prompt=str(data.get("negative_prompt", "")),
        )


@dataclass
class Turn:
    """One instruction applied: ``number`` counts from 1 within the session; ``parent`` is the turn whose
    chosen prompt it started from (None: the anchor). ``chosen`` is the final prompt (stored for replay
    with ``settings.seed``); ``chosen_index`` the candidate it came from (None: written by the user).
    ``strategy``: how the candidates were made; ``edit_model``: the model that drew the edits (None when
    there were none)."""

    number: int
    parent: int | None
    instruction: str
    prompt_before: str
    candidates: list[Candidate]
    chosen: str
    chosen_index: int | None
    settings: TurnSettings
    rewrite: bool = True
    note: str | None = None  # e.g. why the current prompt was kept
    created_at: datetime | None = None
    picked: bool = False  # the user chose (a candidate or their own prompt), not the ranking
    strategy: TurnStrategy = TurnStrategy.REWRITE
    edit_model: str | None = None

    @property
    def chosen_candidate(self) -> Candidate | None:
        return None if self.chosen_index is None else self.candidates[self.chosen_index]

    @property
    def chosen_image(self) -> str | None:
        """The image of the chosen candidate (None: a prompt written by hand, which has no image)."""
        chosen = self.chosen_candidate
        return None if chosen is None else chosen.image_id


@dataclass
class PromptSession:
    """A user's session with one image model. ``head`` is the turn the next one grows from (None: the anchor).
    ``edit_model``: the model its edit turns use when a turn names none (None: the deployment's)."""

    id: str
    owner: str
    model: str
    anchor: str
    created_at: datetime
    updated_at: datetime
    turns: list[Turn] = field(default_factory=list)
    head: int | None = None
    version: int = 0
    edit_model: str | None = None

    @classmethod
    def start(
        cls, owner: str, model: str, anchor: str, now: datetime, *, edit_model: str | None = None
    ) -> PromptSession:
        if not model or not isinstance(model, str):
            raise InvalidParameters("model must not be empty.", field="model")
        return cls(
            id=new_session_id(),
            owner=owner,
            model=model,
            anchor=clean_text(anchor, "prompt", MAX_PROMPT_CHARS),
            created_at=now,
            updated_at=now,
            edit_model=clean_model_name(edit_model, "edit_model"),
        )

    def turn(self, number: int) -> Turn:
        if not 1 <= number <= len(self.turns):
            raise TurnNotFound(f"Session {self.id} has no turn {number}.")
        return self.turns[number - 1]

    @property
    def current_prompt(self) -> str:
        """The prompt the next instruction applies to."""
        return self.anchor if self.head is None else self.turn(self.head).chosen

    @property
    def current_image(self) -> str | None:
        """The image the next edit applies to: the head turn's chosen candidate's (None at the anchor, or
        when the head's prompt was written by hand)."""
        return None if self.head is None else self.turn(self.head).chosen_image

    def path(self) -> list[Turn]:
        """The turns from the first one to the head, in order."""
        out: list[Turn] = []
        number = self.head
        while number is not None:
            turn = self.turn(number)
            out.append(turn)
            number = turn.parent
        return out[::-1]

    def add_turn(
        self,
        instruction: str,
        candidates: Sequence[Candidate],
        settings: TurnSettings,
        now: datetime,
        *,
        rewrite: bool = True,
        note: str | None = None,
        strategy: TurnStrategy = TurnStrategy.REWRITE,
        edit_model: str | None = None,
    ) -> Turn:
        """Append a turn grown from the head with ``candidates`` (ranked, best first, at least one); the best
        one is chosen; the head moves to the new turn."""
        if not candidates:
            raise InvalidParameters("A turn needs at least one candidate.", field="candidates")
        if len(candidates) > MAX_TURN_CANDIDATES:
            raise InvalidParameters(f"A turn has at most {MAX_TURN_CANDIDATES} candidates.", field="candidates")
        turn = Turn(
            number=len(self.turns) + 1,
            parent=self.head,
            instruction=clean_text(instruction, "instruction", MAX_INSTRUCTION_CHARS),
            prompt_before=self.current_prompt,
            candidates=list(candidates),
            chosen=candidates[0].prompt,
            chosen_index=0,
            settings=settings,
            rewrite=rewrite,
            note=note,
            created_at=now,
            strategy=TurnStrategy(strategy),
            edit_model=edit_model,
        )
        self.turns.append(turn)
        self.head = turn.number
        self.updated_at = now
        return turn

    def choose(self, number: int, now: datetime, *, index: int | None = None, prompt: str | None = None) -> Turn:
        """Pick candidate ``index`` of turn ``number`` or a prompt the user wrote; the head moves there. An edit
        candidate keeps the prompt (its ``prompt`` is the one before the turn) and its image becomes the
        current image."""
        turn = self.turn(number)
        if (index is None) == (prompt is None):
            raise InvalidParameters("Choose either a candidate index or a prompt.", field="index")
        if index is not None:
            if not 0 <= index < len(turn.candidates):
                raise InvalidParameters(f"Turn {number} has candidates 0..{len(turn.candidates) - 1}.", field="index")
            turn.chosen, turn.chosen_index = turn.candidates[index].prompt, index
        else:
            turn.chosen, turn.chosen_index = clean_text(prompt or "", "prompt", MAX_PROMPT_CHARS), None
        turn.picked = True
        self.head = number
        self.updated_at = now
        return turn

    def undo(self, now: datetime) -> int | None:
        """Move the head to its parent turn (the anchor after the first); returns the new head."""
        if self.head is None:
            raise InvalidParameters("Nothing to undo: the session is at its original prompt.", field="turn")
        self.head = self.turn(self.head).parent
        self.updated_at = now
        return self.head

    def branch(self, number: int | None, now: datetime) -> None:
        """Grow the next turn from turn ``number`` (None: from the anchor)."""
        if number is not None:
            self.turn(number)
        self.head = number
        self.updated_at = now


def preference_pairs(sessions: Sequence[PromptSession]) -> list[tuple[Candidate, Candidate]]:
    """(winner, loser) for every turn where the user picked one of several rendered candidates: the
    pick is preferred to each other candidate that has an image."""
    pairs: list[tuple[Candidate, Candidate]] = []
    for session in sessions:
        for turn in session.turns:
            winner = turn.chosen_candidate if turn.picked else None
            if winner is None or winner.image_id is None:
                continue
            pairs += [(winner, c) for c in turn.candidates if c is not winner and c.image_id is not None]
    return pairs
