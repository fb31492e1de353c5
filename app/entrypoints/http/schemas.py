"""Pydantic shapes of the HTTP edge (the core never sees them)."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any

from pydantic import BaseModel, ConfigDict, Field, PlainSerializer, WithJsonSchema
from pydantic.json_schema import SkipJsonSchema

from app.domain.edits import EditRequest, EditStatus
from app.domain.jobs import GenerationJob
from app.domain.knowledge import Decision, KnowledgeQuery
from app.domain.models import ModelInfo
from app.domain.prompt_sessions import Candidate, PromptSession, Turn
from app.domain.scenes import SceneReading
from app.domain.text import repaired_tree
from app.usecases.ingest_documents import IngestReport


def _iso(value: datetime) -> str:
    return value.isoformat()


# A timestamp written as ``datetime.isoformat()`` gives it (``+00:00``, not ``Z``), as these replies always were.
Timestamp = Annotated[
    datetime,
    PlainSerializer(_iso, return_type=str, when_used="json"),
    WithJsonSchema({"type": "string", "format": "date-time"}),
]


class LoraIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: str = Field(description="A registered LoRA (`atelier models add NAME PATH --kind lora`).")
    weight: float = 1.0


class ControlIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    image: str = Field(description="An upload id (`POST /v1/uploads`) or the image as base64 / data URL.")
    kind: str = Field("canny", description="Preprocessor: canny, depth, or none (the image already is a control map).")
    model: str | None = Field(None, description="A registered ControlNet; default: the one named like the kind.")
    scale: float = Field(1.0, description="controlnet_conditioning_scale, 0-2.")


class OutpaintIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    left: int = 0
    right: int = 0
    up: int = 0
    down: int = 0
    fill: str = Field("copy", description="How the new border starts before it is painted: copy or reflect.")


class JobRequest(BaseModel):
    """A generation request. The mode follows from the inputs unless given: `control` → controlnet,
    `outpaint` → outpaint, `mask_image` → inpaint, `init_image` → img2img, none → txt2img.
    Images are upload ids or base64 (data URLs too). Omitted values take the model's or the server's defaults."""

    model_config = ConfigDict(extra="forbid", json_schema_extra={"example": {"prompt": "一只猫在草地上", "seed": 42}})

    prompt: str = Field(description="What to draw, in Chinese or any language.")
    negative_prompt: str = ""
    model: str | None = Field(None, description="A registered model name; the server default when omitted.")
    width: int | None = Field(None, description="Multiple of 8; the model's native size when omitted.")
    height: int | None = None
    steps: int = 20
    guidance_scale: float | None = Field(
        None, description="Classifier-free guidance; the model's recommended scale when omitted (demo: 3), else 7.5."
    )
    seed: int | None = Field(None, description="Absent or -1: a random seed, recorded on the job.")
    num_images: int = Field(1, description="1 to 8.")
    scheduler: str | None = Field(None, description="Euler a, Euler, Heun, DPM++ 2M, DPM++ 2M Karras, DDIM, ...")
    mode: str | None = Field(None, description="txt2img, img2img, inpaint, outpaint or controlnet.")
    init_image: str | None = None
    mask_image: str | None = Field(None, description="White (or opaque) = repaint.")
    strength: float = Field(0.75, description="Denoising strength for img2img, inpaint and outpaint.")
    resize_mode: str = Field("stretch", description="How inputs are fitted to the size: stretch, crop or pad.")
    outpaint: OutpaintIn | None = None
    control: ControlIn | None = None
    loras: list[LoraIn] = Field(default_factory=list, description="Also `<lora:name:weight>` in the prompt.")

    def params(self) -> dict[str, Any]:
        values = self.model_dump(exclude_none=True)
        if values.get("seed") == -1:
            values.pop("seed")
        return values


class UploadOut(BaseModel):
    id: str
    width: int
    height: int


class UploadIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    image_base64: str = Field(description="The image as base64 or a data URL.")


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
            params=repaired_tree(job.params.to_dict()),  # a row stored before text was checked still renders
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
    source: str | None = Field(
        description="Where it was registered from (a server path or a hub id); admin keys only, else null."
    )
    kind: str
    default_size: int
    tokenizer: str
    default_guidance: float | None = None

    @classmethod
    def of(cls, info: ModelInfo, show_source: bool = False) -> ModelOut:
        return cls(
            name=info.name,
            source=info.source if show_source else None,
            kind=info.kind.value,
            default_size=info.default_size,
            tokenizer=info.tokenizer,
            default_guidance=info.default_guidance,
        )


class Readiness(BaseModel):
    ready: bool
    database: str = Field(description="ok, or unavailable (cannot be reached or written).")
    workers: int = Field(description="Worker threads alive in this process.")
    profile: str


class Health(BaseModel):
    status: str
    database: str
    profile: str


# ---------------------------------------------------------------- errors


class ErrorDetail(BaseModel):
    code: str = Field(description="Stable and machine-readable, e.g. `invalid_parameters`, `job_not_found`.")
    message: str = Field(description="For people; may change between versions.")
    field: str | SkipJsonSchema[None] = Field(
        None, description="The request field at fault (dotted path), when one is; absent otherwise."
    )


class ErrorBody(BaseModel):
    """Every error of the native API: `{"error": {"code", "message", "field"?}}`."""

    error: ErrorDetail


# ---------------------------------------------------------------- model edits


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


# ---------------------------------------------------------------- knowledge queries


class SignalsOut(BaseModel):
    """What the retrieval decision was based on; null where a signal was not computed."""

    alpha: float | None
    mean_token_prob: float | None
    min_token_prob: float | None
    grad_alignment: float | None
    neighbour_gece: float | None
    gece_estimate: float | None
    threshold: float | None
    early_estimate: float | None
    aborted_at: int | None
    state_probe: float | None


class PassageOut(BaseModel):
    chunk_id: str
    source: str
    text: str
    score: float


class KnowledgeQueryOut(BaseModel):
    id: str
    owner: str
    question: str
    created_at: Timestamp
    answer: str
    decision: Decision
    parametric_answer: str
    signals: SignalsOut
    passages: list[PassageOut]
    timings: dict[str, float] = Field(description="Seconds per stage, `total` included.")
    model: str

    @classmethod
    def of(cls, query: KnowledgeQuery) -> KnowledgeQueryOut:
        return cls.model_validate(query, from_attributes=True)


class KnowledgeQueryPageOut(BaseModel):
    items: list[KnowledgeQueryOut]
    total: int
    limit: int
    offset: int


class IngestReportOut(BaseModel):
    documents: int
    chunks: int
    replaced: int = Field(description="Chunks dropped because their source was ingested again.")

    @classmethod
    def of(cls, report: IngestReport) -> IngestReportOut:
        return cls.model_validate(report, from_attributes=True)


# ---------------------------------------------------------------- prompt sessions


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


# ---------------------------------------------------------------- demo world


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
