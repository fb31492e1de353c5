"""OpenAI's fine-tuning API over Atelier's training jobs: ``POST /v1/files`` (purpose ``fine-tune``: chat records,
validated line by line), ``POST /v1/fine_tuning/jobs``, ``GET /v1/fine_tuning/jobs[/{id}[/events]]`` and
``POST /v1/fine_tuning/jobs/{id}/cancel``. The ``openai`` client works unchanged; errors use OpenAI's shape.

A job fine-tunes a LoRA (``hyperparameters.lora_rank``, 16; 0 for every weight) of ``model``, the served language
model or another registered one; when it succeeds, ``fine_tuned_model`` is the name chat requests give it:
``BASE:SUFFIX``. ``learning_rate_multiplier`` scales a base rate of 1e-3 (``learning_rate`` sets it outright).
"""

from __future__ import annotations

import json
import uuid
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Depends, Request
from fastapi.responses import JSONResponse
from pydantic import BaseModel, ConfigDict, Field
from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException

from app.domain.errors import InvalidParameters
from app.domain.training import (
    DEFAULTS,
    FILE_PURPOSES,
    StoredFile,
    TrainingEvent,
    TrainingJob,
    TrainingJobNotFound,
    TrainingKind,
    TrainingSpec,
)
from app.entrypoints.http import deps
from app.entrypoints.http.compat_openai import error_reply
from app.entrypoints.http.compat_schemas import OPENAI, request_body
from app.entrypoints.library import Atelier

router = APIRouter(tags=["openai"])
AtelierDep = Annotated[Atelier, Depends(deps.atelier)]
_DEFAULT = DEFAULTS[TrainingKind.LLM_FINETUNE]
BASE_LEARNING_RATE = _DEFAULT.learning_rate
JOB_PREFIX, EVENT_PREFIX = "ftjob-", "ftevent-"


class FileOut(BaseModel):
    id: str
    object: Literal["file"] = "file"
    bytes: int
    created_at: int
    filename: str
    purpose: str
    status: Literal["processed"] = "processed"


class HyperparametersIn(BaseModel):
    model_config = ConfigDict(extra="ignore")
    n_epochs: int | Literal["auto"] = "auto"
    batch_size: int | Literal["auto"] = "auto"
    learning_rate_multiplier: float | Literal["auto"] = "auto"
    learning_rate: float | None = Field(default=None, description="Atelier's own: the learning rate itself.")
    lora_rank: int = Field(default=16, description="Atelier's own: the LoRA's rank; 0 fine-tunes every weight.")


class FineTuneIn(BaseModel):
    """OpenAI's job request; `integrations` and `metadata` are ignored."""

    model_config = ConfigDict(extra="ignore")
    model: str
    training_file: str
    validation_file: str | None = None
    hyperparameters: HyperparametersIn | None = None
    suffix: str | None = Field(None, description="The name of the result (chat requests give BASE:SUFFIX).")
    seed: int | None = None


class FineTuneJobOut(BaseModel):
    id: str
    object: Literal["fine_tuning.job"] = "fine_tuning.job"
    model: str
    created_at: int
    finished_at: int | None
    fine_tuned_model: str | None
    organization_id: str = "atelier"
    result_files: list[str] = Field(default_factory=list)
    status: str = Field(description="queued, running, succeeded, failed or cancelled.")
    training_file: str
    validation_file: str | None
    hyperparameters: dict[str, Any]
    trained_tokens: int | None = None
    error: dict[str, Any] | None
    seed: int
    estimated_finish: int | None = None
    integrations: list[Any] = Field(default_factory=list)
    step: int = Field(description="Atelier's own: the steps done.")
    total_steps: int | None = Field(description="Atelier's own: the steps of the whole run, once it started.")
    loss: float | None = Field(description="Atelier's own: the last step's training loss.")


class JobListOut(BaseModel):
    object: Literal["list"] = "list"
    data: list[FineTuneJobOut]
    has_more: bool


class EventOut(BaseModel):
    id: str
    object: Literal["fine_tuning.job.event"] = "fine_tuning.job.event"
    created_at: int
    level: Literal["info"] = "info"
    message: str
    data: dict[str, float] = Field(description="metrics: `step`, `train_loss`, `valid_loss` (after an epoch).")
    type: Literal["metrics", "message"]


class EventListOut(BaseModel):
    object: Literal["list"] = "list"
    data: list[EventOut]
    has_more: bool


def _job(job: TrainingJob) -> dict[str, Any]:
    spec = job.spec
    error = {"code": job.error_code, "message": job.error_message, "param": None} if job.error_code else None
    return {
        "id": JOB_PREFIX + job.id,
        "object": "fine_tuning.job",
        "model": spec.base_model,
        "created_at": int(job.created_at.timestamp()),
        "finished_at": int(job.finished_at.timestamp()) if job.finished_at else None,
        "fine_tuned_model": job.result_model,
        "organization_id": "atelier",
        "result_files": [],
        "status": job.status.value,
        "training_file": spec.training_file,
        "validation_file": spec.validation_file,
        "hyperparameters": {
            "n_epochs": spec.epochs,
            "batch_size": spec.batch_size,
            "learning_rate_multiplier": spec.learning_rate / BASE_LEARNING_RATE,
            "lora_rank": spec.lora_rank,
        },
        "trained_tokens": None,
        "error": error,
        "seed": spec.seed,
        "estimated_finish": None,
        "integrations": [],
        # Atelier's own: how far it is.
        "step": job.step,
        "total_steps": job.total_steps,
        "loss": job.loss,
    }


def _event(event: TrainingEvent) -> dict[str, Any]:
    data = {"step": event.step, "train_loss": event.loss, "valid_loss": event.validation_loss}
    return {
        "id": f"{EVENT_PREFIX}{event.job_id}-{event.seq}",
        "object": "fine_tuning.job.event",
        "created_at": int(event.created_at.timestamp()),
        "level": "info",
        "message": event.message,
        "data": {k: v for k, v in data.items() if v is not None},
        "type": event.kind.value,
    }


def _file(stored: StoredFile) -> dict[str, Any]:
    return FileOut(
        id=stored.id,
        bytes=stored.bytes,
        created_at=int(stored.created_at.timestamp()),
        filename=stored.filename,
        purpose=stored.purpose,
    ).model_dump()


def _job_id(given: str) -> str:
    bare = given.removeprefix(JOB_PREFIX)
    if len(bare) != 32 or any(c not in "0123456789abcdef" for c in bare):
        raise TrainingJobNotFound(f"No fine-tuning job {given!r}.")
    return bare


def _spec(body: FineTuneIn) -> TrainingSpec:
    given = body.hyperparameters or HyperparametersIn.model_validate({})
    rate = given.learning_rate or BASE_LEARNING_RATE * (
        1.0 if given.learning_rate_multiplier == "auto" else float(given.learning_rate_multiplier)
    )
    try:
        return TrainingSpec(
            kind=TrainingKind.LLM_FINETUNE,
            base_model=body.model,
            result_name=body.suffix or f"ft-{uuid.uuid4().hex[:8]}",
            training_file=body.training_file,
            validation_file=body.validation_file,
            epochs=_DEFAULT.epochs if given.n_epochs == "auto" else int(given.n_epochs),
            learning_rate=rate,
            batch_size=_DEFAULT.batch_size if given.batch_size == "auto" else int(given.batch_size),
            lora_rank=given.lora_rank,
            seed=body.seed or 0,
        )
    except InvalidParameters as e:  # the domain's field names, as OpenAI's request calls them
        raise e.renamed({"base_model": "model", "result_name": "suffix", "epochs": "n_epochs"}) from None


@router.post(
    "/v1/files",
    summary="OpenAI-style file upload (purpose fine-tune, or image-lora)",
    openapi_extra={
        "requestBody": {
            "required": True,
            "content": {
                "multipart/form-data": {
                    "schema": {
                        "type": "object",
                        "required": ["file", "purpose"],
                        "properties": {
                            "file": {"type": "string", "format": "binary"},
                            "purpose": {"type": "string", "enum": list(FILE_PURPOSES)},
                        },
                    }
                }
            },
        }
    },
    **OPENAI.answers(FileOut, "The stored file.", 400, 503),
)
async def create_file(request: Request, atelier: AtelierDep) -> Any:
    """`file`, purpose `fine-tune`: chat records, one JSON object per line (`{"messages": [{"role", "content"}, ...]}`,
    each with an assistant message); a bad line is refused with its number (400 `invalid_file`). Purpose
    `image-lora` (Atelier's own): a zip of images with sidecar `.txt` captions or a `metadata.jsonl`, for
    `POST /v1/trainings`."""
    try:
        owner = deps.owner(request)
        try:
            form = await request.form()
        except HTTPException:  # starlette's refusal of a body that is not multipart form data
            message = "The body is not multipart form data with a file and a purpose."
            raise InvalidParameters(message, field="file") from None
        upload, purpose = form.get("file"), form.get("purpose")
        if upload is None or isinstance(upload, str):
            raise InvalidParameters("file is required (multipart).", field="file")
        if not isinstance(purpose, str):
            raise InvalidParameters(f"purpose is required: {' or '.join(FILE_PURPOSES)}.", field="purpose")
        data = await upload.read()
        stored = await run_in_threadpool(atelier.training.upload, data, upload.filename or "data.jsonl", purpose, owner)
    except Exception as error:
        return error_reply(error)
    return JSONResponse(_file(stored))


@router.get("/v1/files/{file_id}", summary="An uploaded file", **OPENAI.answers(FileOut, "The file.", 404, 503))
def get_file(file_id: str, request: Request, atelier: AtelierDep) -> Any:
    try:
        return JSONResponse(_file(atelier.training.file(file_id, deps.owner(request))))
    except Exception as error:
        return error_reply(error)


@router.post(
    "/v1/fine_tuning/jobs",
    summary="OpenAI-style fine-tuning job",
    openapi_extra=request_body(FineTuneIn),
    **OPENAI.answers(FineTuneJobOut, "The queued job (in the database before the reply).", 400, 404, 409, 503),
)
async def create_job(request: Request, atelier: AtelierDep) -> Any:
    """`model`: the served language model or another registered one; `training_file` (and `validation_file`, whose
    loss is reported at each epoch's end) from `POST /v1/files`; `hyperparameters`: `n_epochs`, `batch_size`,
    `learning_rate_multiplier`, and Atelier's `learning_rate` and `lora_rank`; `suffix`: the result's name (409
    `model_exists` when taken)."""
    try:
        owner = deps.owner(request)
        try:
            raw = json.loads(await request.body())
        except ValueError:
            raise InvalidParameters("The body is not valid JSON.", code="invalid_json") from None
        spec = _spec(FineTuneIn.model_validate(raw))
        job = await run_in_threadpool(atelier.training.submit, spec, owner)
    except Exception as error:
        return error_reply(error)
    return JSONResponse(_job(job))


@router.get(
    "/v1/fine_tuning/jobs",
    summary="Fine-tuning jobs, newest first",
    **OPENAI.answers(JobListOut, "The caller's fine-tuning jobs, newest first; `after` a job id pages on.", 503),
)
def list_jobs(request: Request, atelier: AtelierDep, limit: int = 20, after: str | None = None) -> Any:
    try:
        owner = deps.owner(request)
        limit = max(1, min(limit, 100))
        page = atelier.training.jobs(owner, limit=1000)
        items = [j for j in page.items if j.spec.kind is TrainingKind.LLM_FINETUNE]
        if after:  # the jobs older than that one (none after an id this caller has not)
            ids = [j.id for j in items]
            bare = after.removeprefix(JOB_PREFIX)
            items = items[ids.index(bare) + 1 :] if bare in ids else []
        data = [_job(j) for j in items[:limit]]
        return JSONResponse({"object": "list", "data": data, "has_more": len(items) > limit})
    except Exception as error:
        return error_reply(error)


@router.get(
    "/v1/fine_tuning/jobs/{fine_tuning_job_id}",
    summary="A fine-tuning job",
    **OPENAI.answers(FineTuneJobOut, "The job: `status`, and Atelier's `step`, `total_steps`, `loss`.", 404, 503),
)
def get_job(fine_tuning_job_id: str, request: Request, atelier: AtelierDep) -> Any:
    try:
        return JSONResponse(_job(atelier.training.job(_job_id(fine_tuning_job_id), deps.owner(request))))
    except Exception as error:
        return error_reply(error)


@router.get(
    "/v1/fine_tuning/jobs/{fine_tuning_job_id}/events",
    summary="A fine-tuning job's events, newest first",
    **OPENAI.answers(EventListOut, "The job's events, newest first: losses and messages.", 404, 503),
)
def job_events(
    fine_tuning_job_id: str, request: Request, atelier: AtelierDep, limit: int = 20, after: str | None = None
) -> Any:
    """Events newest first, as OpenAI lists them: `metrics` (`data.step`, `train_loss`, `valid_loss`) and
    `message`; `after` an event id gives the older ones."""
    try:
        events = atelier.training.events(_job_id(fine_tuning_job_id), owner=deps.owner(request))
        newest = list(reversed(events))
        if after:
            seq = int(after.rsplit("-", 1)[-1]) if after.rsplit("-", 1)[-1].isdigit() else 0
            newest = [e for e in newest if e.seq < seq]
        limit = max(1, min(limit, 1000))
        return JSONResponse(
            {"object": "list", "data": [_event(e) for e in newest[:limit]], "has_more": len(newest) > limit}
        )
    except Exception as error:
        return error_reply(error)


@router.post(
    "/v1/fine_tuning/jobs/{fine_tuning_job_id}/cancel",
    summary="Cancel a fine-tuning job",
    **OPENAI.answers(FineTuneJobOut, "The job: cancelled, or running until its current step ends.", 404, 409, 503),
)
def cancel_job(fine_tuning_job_id: str, request: Request, atelier: AtelierDep) -> Any:
    try:
        return JSONResponse(_job(atelier.training.cancel(_job_id(fine_tuning_job_id), deps.owner(request))))
    except Exception as error:
        return error_reply(error)
