"""Pydantic shapes of the HTTP edge (the core never sees them)."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from app.domain.jobs import GenerationJob
from app.domain.models import ModelInfo


class JobRequest(BaseModel):
    """A text-to-image request. Omitted values take the model's or the server's defaults."""

    model_config = ConfigDict(extra="forbid", json_schema_extra={"example": {"prompt": "一只猫在草地上", "seed": 42}})

    prompt: str = Field(description="What to draw, in Chinese or any language.")
    negative_prompt: str = ""
    model: str | None = Field(None, description="A registered model name; the server default when omitted.")
    width: int | None = Field(None, description="Multiple of 8; the model's native size when omitted.")
    height: int | None = None
    steps: int = 20
    guidance_scale: float = 7.5
    seed: int | None = Field(None, description="Absent or -1: a random seed, recorded on the job.")
    num_images: int = Field(1, description="1 to 8.")
    scheduler: str | None = Field(None, description="Euler a, Euler, Heun, DPM++ 2M, DPM++ 2M Karras, DDIM, ...")

    def params(self) -> dict[str, Any]:
        values = self.model_dump()
        if values["seed"] == -1:
            values["seed"] = None
        return values


class ImageOut(BaseModel):
    id: str
    url: str
    seed: int
    width: int
    height: int
    nsfw: bool | None


class ErrorOut(BaseModel):
    code: str
    message: str


class JobOut(BaseModel):
    id: str
    status: str
    progress: float
    params: dict[str, Any]
    seed: int
    images: list[ImageOut]
    error: ErrorOut | None
    cancel_requested: bool
    created_at: datetime
    started_at: datetime | None
    finished_at: datetime | None

    @classmethod
    def of(cls, job: GenerationJob) -> JobOut:
        return cls(
            id=job.id,
            status=job.status.value,
            progress=job.progress,
            params=job.params.to_dict(),
            seed=job.seed,
            images=[
                ImageOut(id=i.id, url=f"/v1/images/{i.id}", seed=i.seed, width=i.width, height=i.height, nsfw=i.nsfw)
                for i in job.images
            ],
            error=ErrorOut(code=job.error_code, message=job.error_message or "") if job.error_code else None,
            cancel_requested=job.cancel_requested,
            created_at=job.created_at,
            started_at=job.started_at,
            finished_at=job.finished_at,
        )


class JobPageOut(BaseModel):
    items: list[JobOut]
    total: int
    limit: int
    offset: int


class ModelOut(BaseModel):
    name: str
    source: str
    kind: str
    default_size: int
    tokenizer: str

    @classmethod
    def of(cls, info: ModelInfo) -> ModelOut:
        return cls(
            name=info.name,
            source=info.source,
            kind=info.kind.value,
            default_size=info.default_size,
            tokenizer=info.tokenizer,
        )


class Health(BaseModel):
    status: str
    database: str
    profile: str
