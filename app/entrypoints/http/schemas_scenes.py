"""Pydantic shapes of the HTTP edge for the demo world's checker (the core never sees them)."""

from __future__ import annotations

from pydantic import BaseModel, Field

from app.demo_world.integrity import SceneReading


class SceneObjectOut(BaseModel):
    shape: str
    colour: str
    position: str | None
    size: str | None
    styles: list[str]


class SceneOut(BaseModel):
    objects: list[SceneObjectOut]
    background: str | None


class IntegrityReportOut(BaseModel):
    score: float = Field(description="Content integrity in [0, 1].")
    exact: bool
    matched: list[SceneObjectOut | None] = Field(
        description="The seen object paired with each object the caption asks for (null: none)."
    )


class SceneReadingOut(BaseModel):
    seen: SceneOut
    asked: SceneOut | None = Field(description="What the caption asks for; null without a caption.")
    integrity: IntegrityReportOut | None

    @classmethod
    def of(cls, reading: SceneReading) -> SceneReadingOut:
        return cls.model_validate(reading, from_attributes=True)
