"""Pydantic shapes of the HTTP edge for prompt sessions (the core never sees them)."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, Field

from app.domain.prompt_sessions import Candidate, PromptSession, Turn
from app.entrypoints.http.schemas import (
    Timestamp,
)


def _image_url(image_id: str | None) -> str | None:
    return f"/v1/images/{image_id}" if image_id else None


class CandidateOut(BaseModel):
    prompt: str = Field(description="Its prompt; an edit keeps the prompt before the turn.")
    source: str = Field(description="`rewriter`, `current` (the prompt before the turn) or `user`.")
    kind: Literal["rewrite", "edit"] = Field(
        description="`rewrite`: its prompt rendered; `edit`: the current image edited as the instruction says."
    )
    seed: int | None = Field(description="The seed its image was drawn with (null in older turns: the turn's).")
    edited_image: str | None = Field(description="An edit's: the image it edited (the current image of its turn).")
    scores: dict[str, float] = Field(description="Reward name → score.")
    score: float | None = Field(description="The combined score the candidates are ranked by.")
    drift: float
    drifted: bool
    image_id: str | None
    image_url: str | None

    @classmethod
    def of(cls, candidate: Candidate) -> CandidateOut:
        image = candidate.image_id
        return cls(
            prompt=candidate.prompt,
            source=candidate.source,
            scores=dict(candidate.scores),
            score=candidate.score,
            drift=candidate.drift,
            drifted=candidate.drifted,
            image_id=image,
            image_url=_image_url(image),
            kind=candidate.kind.value,
            seed=candidate.seed,
            edited_image=candidate.edited_image,
        )


class TurnSettingsOut(BaseModel):
    seed: int
    steps: int
    width: int | None
    height: int | None
    guidance_scale: float | None
    negative_prompt: str


class TurnOut(BaseModel):
    number: int
    parent: int | None
    instruction: str
    prompt_before: str
    candidates: list[CandidateOut] = Field(description="Ranked, best first.")
    chosen: str
    chosen_index: int | None
    settings: TurnSettingsOut
    rewrite: bool
    strategy: Literal["rewrite", "edit", "both"] = Field(description="How the candidates were made.")
    edit_model: str | None = Field(description="The model that drew the edits (null: none were made).")
    note: str | None
    created_at: Timestamp | None

    @classmethod
    def of(cls, turn: Turn) -> TurnOut:
        return cls(
            number=turn.number,
            parent=turn.parent,
            instruction=turn.instruction,
            prompt_before=turn.prompt_before,
            candidates=[CandidateOut.of(c) for c in turn.candidates],
            chosen=turn.chosen,
            chosen_index=turn.chosen_index,
            settings=TurnSettingsOut.model_validate(turn.settings, from_attributes=True),
            rewrite=turn.rewrite,
            strategy=turn.strategy.value,
            edit_model=turn.edit_model,
            note=turn.note,
            created_at=turn.created_at,
        )


class PromptSessionOut(BaseModel):
    id: str
    owner: str
    model: str
    anchor: str
    edit_model: str | None = Field(description="The edit turns' model when a turn names none (null: the server's).")
    head: int | None = Field(description="The turn the next one grows from (null: the anchor).")
    current_prompt: str
    current_image: str | None = Field(
        description="The image the next edit turn edits: the head turn's chosen candidate's (null: none yet)."
    )
    current_image_url: str | None
    path: list[int] = Field(description="The turn numbers from the first one to the head.")
    turns: list[TurnOut]
    created_at: Timestamp
    updated_at: Timestamp

    @classmethod
    def of(cls, session: PromptSession) -> PromptSessionOut:
        return cls(
            id=session.id,
            owner=session.owner,
            model=session.model,
            anchor=session.anchor,
            edit_model=session.edit_model,
            head=session.head,
            current_prompt=session.current_prompt,
            current_image=session.current_image,
            current_image_url=_image_url(session.current_image),
            path=[t.number for t in session.path()],
            turns=[TurnOut.of(t) for t in session.turns],
            created_at=session.created_at,
            updated_at=session.updated_at,
        )


class PromptSessionPageOut(BaseModel):
    items: list[PromptSessionOut]
    total: int
    limit: int
    offset: int
