"""Pydantic shapes of the HTTP edge for prompt sessions (the core never sees them)."""

from __future__ import annotations

from pydantic import BaseModel, Field

from app.domain.prompt_sessions import Candidate, PromptSession, Turn
from app.entrypoints.http.schemas import (
    Timestamp,
)


class CandidateOut(BaseModel):
    prompt: str
    source: str = Field(description="`rewriter`, `current` (the prompt before the turn) or `user`.")
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
            image_url=f"/v1/images/{image}" if image else None,
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
            note=turn.note,
            created_at=turn.created_at,
        )


class PromptSessionOut(BaseModel):
    id: str
    owner: str
    model: str
    anchor: str
    head: int | None = Field(description="The turn the next one grows from (null: the anchor).")
    current_prompt: str
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
            head=session.head,
            current_prompt=session.current_prompt,
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
