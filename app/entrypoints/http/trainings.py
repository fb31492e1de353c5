"""Training jobs over HTTP, in Atelier's own shape: train an image LoRA (or fine-tune a language model) from an
uploaded file, follow its loss and sample images, cancel it. Upload the data with ``POST /v1/files`` (purpose
``image-lora``: a zip of images with sidecar ``.txt`` captions or a ``metadata.jsonl``; ``fine-tune``: chat records).
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Depends, Query
from fastapi.responses import Response
from pydantic import BaseModel, ConfigDict, Field

from app.domain.errors import InvalidParameters
from app.domain.training import DEFAULTS, Hyperparameters, TrainingEvent, TrainingJob, TrainingKind, TrainingSpec
from app.entrypoints.http import deps
from app.entrypoints.http.openapi import errors
from app.entrypoints.library import Atelier

router = APIRouter(tags=["training"])
AtelierDep = Annotated[Atelier, Depends(deps.atelier)]
OwnerDep = Annotated[str, Depends(deps.owner)]


class TrainingIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    kind: TrainingKind = Field(TrainingKind.IMAGE_LORA, description="image-lora or llm-finetune.")
    base_model: str = Field(
        description="A registered image model of a family with `lora_training` among its capabilities in "
        "GET /v1/models (all but HunyuanDiT and PixArt-Σ), or a language model."
    )
    name: str = Field(description="The result's name: `<lora:NAME:0.8>` in a prompt, `BASE:NAME` in a chat.")
    training_file: str = Field(description="A file id from POST /v1/files (purpose image-lora or fine-tune).")
    validation_file: str | None = Field(None, description="Chat records scored each epoch (llm-finetune only).")
    epochs: int | None = Field(None, description="Passes over the data (image-lora 10, llm-finetune 3).")
    learning_rate: float | None = Field(None, description="image-lora 1e-4, llm-finetune 1e-3.")
    batch_size: int | None = Field(None, description="image-lora 4, llm-finetune 8.")
    lora_rank: int | None = Field(None, description="image-lora 8, llm-finetune 16 (0: every weight).")
    seed: int = 0
    trigger_word: str | None = Field(
        None, description="Starts every caption that lacks it; the caption of an image without one."
    )
    resolution: int | None = Field(None, description="Training size in pixels; default: the model's native size.")
    crop: Literal["center", "bucket"] = Field(
        "center", description="`center`: square centre crops; `bucket`: aspect-ratio buckets of about the same area."
    )
    train_text_encoder: bool = Field(False, description="Put a LoRA on the text encoder too.")
    sample_prompts: list[str] = Field(default_factory=list, max_length=8, description="Rendered at each checkpoint.")
    sample_steps: int | None = Field(None, description="Denoising steps of each sample (20).")
    checkpoint_every: int | None = Field(None, description="Steps between checkpoints and samples (50).")

    def spec(self) -> TrainingSpec:
        extra: dict[str, Any] = {}
        if self.kind is TrainingKind.IMAGE_LORA:
            given = {
                "resolution": self.resolution,
                "crop": self.crop,
                "trigger_word": self.trigger_word,
                "train_text_encoder": self.train_text_encoder,
                "sample_prompts": self.sample_prompts,
                "sample_steps": self.sample_steps,
                "checkpoint_every": self.checkpoint_every,
            }
            extra = {k: v for k, v in given.items() if v not in (None, [], False)}
        try:
            return self._spec(DEFAULTS[self.kind], extra)
        except InvalidParameters as e:
            raise e.renamed({"result_name": "name"}) from None

    def _spec(self, default: Hyperparameters, extra: dict[str, Any]) -> TrainingSpec:
        return TrainingSpec(
            kind=self.kind,
            base_model=self.base_model,
            result_name=self.name,
            training_file=self.training_file,
            validation_file=self.validation_file,
            epochs=self.epochs if self.epochs is not None else default.epochs,
            learning_rate=self.learning_rate if self.learning_rate is not None else default.learning_rate,
            batch_size=self.batch_size if self.batch_size is not None else default.batch_size,
            lora_rank=self.lora_rank if self.lora_rank is not None else default.lora_rank,
            seed=self.seed,
            extra=extra,
        )


class TrainingOut(BaseModel):
    id: str
    kind: str
    status: str = Field(description="queued, running, succeeded, failed or cancelled.")
    base_model: str
    name: str
    result_model: str | None = Field(description="What to ask for once it succeeded (`BASE:NAME` for an LLM).")
    training_file: str
    epochs: int
    learning_rate: float
    batch_size: int
    lora_rank: int
    seed: int
    options: dict[str, Any] = Field(description="The image options given (trigger word, crop, sample prompts, ...).")
    step: int
    total_steps: int | None
    progress: float
    loss: float | None
    error: dict[str, Any] | None
    created_at: datetime
    started_at: datetime | None
    finished_at: datetime | None
    attempts: int = Field(description="Runs so far; above 1 when it resumed from a checkpoint after a crash.")
    cancel_requested: bool = Field(description="A cancel was asked: a running job stops after its current step.")

    @classmethod
    def of(cls, job: TrainingJob) -> TrainingOut:
        spec = job.spec
        return cls(
            id=job.id,
            kind=spec.kind.value,
            status=job.status.value,
            base_model=spec.base_model,
            name=spec.result_name,
            result_model=job.result_model,
            training_file=spec.training_file,
            epochs=spec.epochs,
            learning_rate=spec.learning_rate,
            batch_size=spec.batch_size,
            lora_rank=spec.lora_rank,
            seed=spec.seed,
            options=dict(spec.extra),
            step=job.step,
            total_steps=job.total_steps,
            progress=job.progress,
            loss=job.loss,
            error={"code": job.error_code, "message": job.error_message} if job.error_code else None,
            created_at=job.created_at,
            started_at=job.started_at,
            finished_at=job.finished_at,
            attempts=job.attempts,
            cancel_requested=job.cancel_requested,
        )


class TrainingPageOut(BaseModel):
    items: list[TrainingOut]
    total: int
    limit: int
    offset: int


class TrainingEventOut(BaseModel):
    seq: int
    created_at: datetime
    kind: str = Field(description="metrics (a step's loss), message, or sample (images rendered at a checkpoint).")
    message: str
    step: int | None
    loss: float | None
    validation_loss: float | None
    images: list[str] = Field(description="A sample event's images: GET /v1/trainings/{id}/samples/{image}.")

    @classmethod
    def of(cls, event: TrainingEvent) -> TrainingEventOut:
        return cls(
            seq=event.seq,
            created_at=event.created_at,
            kind=event.kind.value,
            message=event.message,
            step=event.step,
            loss=event.loss,
            validation_loss=event.validation_loss,
            images=list(event.images),
        )


NOT_FOUND = ["training_job_not_found"]


@router.post(
    "/v1/trainings",
    status_code=201,
    response_model=TrainingOut,
    summary="Train an image LoRA (or fine-tune a language model) from an uploaded file",
    responses=errors(
        404,
        409,
        503,
        codes={404: ["file_not_found", "unknown_model"], 409: ["model_exists"]},
    ),
)
def create_training(body: TrainingIn, atelier: AtelierDep, owner: OwnerDep) -> TrainingOut:
    """The job is queued (in the database before the reply) and a worker runs it; when it succeeds its result is
    registered under `name` and usable at once (`<lora:NAME:0.8>`). 422 `missing_captions` when images lack
    captions and no `trigger_word` is given; 422 `unsupported_training` for a base whose family cannot be trained."""
    return TrainingOut.of(atelier.training.submit(body.spec(), owner))


@router.get("/v1/trainings", response_model=TrainingPageOut, summary="Your training jobs, newest first")
def list_trainings(
    atelier: AtelierDep,
    owner: OwnerDep,
    limit: Annotated[int, Query(ge=1, le=100)] = 20,
    offset: Annotated[int, Query(ge=0, le=deps.MAX_OFFSET)] = 0,
) -> TrainingPageOut:
    page = atelier.training.jobs(owner, limit, offset)
    return TrainingPageOut(items=[TrainingOut.of(j) for j in page.items], total=page.total, limit=limit, offset=offset)


@router.get(
    "/v1/trainings/{training_id}",
    response_model=TrainingOut,
    summary="A training job",
    responses=errors(404, 503, codes={404: NOT_FOUND}),
)
def get_training(training_id: str, atelier: AtelierDep, owner: OwnerDep) -> TrainingOut:
    return TrainingOut.of(atelier.training.job(training_id, owner))


@router.get(
    "/v1/trainings/{training_id}/events",
    response_model=list[TrainingEventOut],
    summary="A training job's events, oldest first",
    responses=errors(404, 503, codes={404: NOT_FOUND}),
)
def training_events(
    training_id: str,
    atelier: AtelierDep,
    owner: OwnerDep,
    after: Annotated[int, Query(ge=0, description="Only events with a higher `seq` (poll with the last one).")] = 0,
) -> list[TrainingEventOut]:
    return [TrainingEventOut.of(e) for e in atelier.training.events(training_id, after, owner)]


@router.post(
    "/v1/trainings/{training_id}/cancel",
    response_model=TrainingOut,
    summary="Cancel a training job",
    responses=errors(404, 409, 503, codes={404: NOT_FOUND, 409: ["job_not_cancellable"]}),
)
def cancel_training(training_id: str, atelier: AtelierDep, owner: OwnerDep) -> TrainingOut:
    """A queued job is cancelled at once; a running one stops after its current step, with a checkpoint."""
    return TrainingOut.of(atelier.training.cancel(training_id, owner))


@router.get(
    "/v1/trainings/{training_id}/samples/{image}",
    response_class=Response,
    summary="A sample image rendered at a checkpoint",
    responses={
        200: {"content": {"image/png": {"schema": {"type": "string", "format": "binary"}}}, "description": "PNG."},
        **errors(404, 503, codes={404: [*NOT_FOUND, "sample_not_found"]}),
    },
)
def training_sample(training_id: str, image: str, atelier: AtelierDep, owner: OwnerDep) -> Response:
    data = atelier.training.sample(training_id, image, owner)
    return Response(data, media_type="image/png", headers={"Cache-Control": "private, max-age=86400"})
