"""Pydantic shapes of the HTTP edge for model edits (the core never sees them)."""

from __future__ import annotations

from pydantic import BaseModel, Field

from app.domain.edits import EditRequest, EditStatus
from app.entrypoints.http.schemas import (
    Timestamp,
)


class LocalityProbeOut(BaseModel):
    prompt: str
    answer: str


class EditSpecOut(BaseModel):
    prompt: str
    target: str
    subject: str
    rephrases: list[str]
    locality: list[LocalityProbeOut]


class EditScoresOut(BaseModel):
    """Each in [0, 1] except `fluency` (n-gram entropy, bits); null where not measured."""

    reliability: float | None
    generality: float | None
    locality: float | None
    fluency: float | None
    n: int
    locality_confident: float | None
    locality_unrelated: float | None


class EditOut(BaseModel):
    id: str
    model: str
    editor: str
    spec: EditSpecOut
    position: int = Field(description="1-based place in the chain of active edits when it was applied.")
    created_at: Timestamp
    owner: str
    status: EditStatus
    scores: EditScoresOut
    seconds: float
    rolled_back_at: Timestamp | None

    @classmethod
    def of(cls, edit: EditRequest) -> EditOut:
        return cls.model_validate(edit, from_attributes=True)


class EditPageOut(BaseModel):
    items: list[EditOut]
    total: int
    limit: int
    offset: int


class RollbackOut(BaseModel):
    rolled_back: list[EditOut] = Field(description="The edits rolled back, last first.")
    active: int = Field(description="The active edits now.")
