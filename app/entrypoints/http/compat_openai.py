"""OpenAI images API compatibility: ``POST /v1/images/generations`` (synchronous for the client; no server
thread is held while the job runs, see ``compat_common``).

Errors use OpenAI's shape: ``{"error": {"message", "type", "param", "code"}}``.
"""

from __future__ import annotations

import logging
import time
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Depends, Request
from fastapi.responses import JSONResponse
from pydantic import BaseModel, ConfigDict, ValidationError
from starlette.concurrency import run_in_threadpool

from app.domain.errors import (
    AtelierError,
    BackendUnavailable,
    GenerationFailed,
    InvalidParameters,
    Unauthorized,
    UnknownModel,
)
from app.domain.generation import parse_size
from app.domain.jobs import GenerationJob, JobStatus
from app.entrypoints.http import deps
from app.entrypoints.http.compat_common import (
    INTERNAL,
    failure_message,
    finished_job,
    image_url,
    images_base64,
    parse_object,
    public_message,
    timeout_message,
)
from app.entrypoints.http.compat_schemas import OPENAI, OpenAIImagesOut
from app.entrypoints.http.errors import headers_of, status_of
from app.entrypoints.library import Atelier

router = APIRouter(tags=["openai"])
log = logging.getLogger(__name__)
PARAMS = {"num_images": "n", "width": "size", "height": "size", "model": "model", "prompt": "prompt"}
# OpenAI's own model names (what its SDKs send, or users by habit): the deployment's default model.
OPENAI_MODELS = ("dall-e", "gpt-image", "chatgpt-image")


class ImagesIn(BaseModel):
    """OpenAI's image generation request; `quality`, `style`, `user` and other fields are ignored."""

    model_config = ConfigDict(extra="ignore")

    prompt: str
    model: str | None = None
    n: int = 1
    size: str | None = None
    response_format: Literal["url", "b64_json"] = "url"


async def _raw_body(request: Request) -> bytes:
    return await request.body()


def _model(atelier: Atelier, name: str | None) -> str | None:
    """A registered base model by its name; OpenAI's names (or none) mean the default model."""
    if name is None:
        return None
    try:
        return atelier.model(name).name
    except UnknownModel:
        if name.lower().startswith(OPENAI_MODELS):
            return None
        raise UnknownModel(
            f"The model {name!r} does not exist; use a registered model (GET /v1/models) or omit it.",
            code="model_not_found",
        ) from None
    except InvalidParameters:  # not even a valid Atelier name
        if name.lower().startswith(OPENAI_MODELS):
            return None
        raise UnknownModel(f"The model {name!r} does not exist.", code="model_not_found") from None


def _submit(atelier: Atelier, raw: bytes, owner: str) -> tuple[GenerationJob, ImagesIn]:
    """Parse, validate and queue (blocking: runs in the thread pool). Nothing is stored when this raises."""
    body = ImagesIn.model_validate(parse_object(raw))
    width, height = (None, None) if body.size in (None, "auto") else parse_size(body.size or "")
    model = _model(atelier, body.model)
    values = {"prompt": body.prompt, "model": model, "num_images": body.n, "width": width, "height": height}
    job = atelier.container.accept_generation()(values, owner)
    return job, body


def _reply(
    status: int, kind: str, code: str, message: str, param: str | None = None, headers: dict[str, str] | None = None
) -> JSONResponse:
    body = {"error": {"message": message, "type": kind, "param": param, "code": code}}
    return JSONResponse(body, status_code=status, headers=headers)


def error_reply(error: Exception) -> JSONResponse:
    """Any error of an OpenAI-compatible route, in OpenAI's shape (one mapping for images and text)."""
    if isinstance(error, ValidationError):
        first = error.errors()[0]
        param = ".".join(str(p) for p in first["loc"]) or None
        return _reply(400, "invalid_request_error", "invalid_parameters", f"{param}: {first['msg']}", param)
    if isinstance(error, AtelierError):
        status, code, param = status_of(error), error.code, None
        if isinstance(error, InvalidParameters):
            status, field = 400, error.field
            param = PARAMS.get(field, field) if field else None
        kind = "server_error" if isinstance(error, GenerationFailed | BackendUnavailable) else "invalid_request_error"
        if isinstance(error, Unauthorized):
            code = "invalid_api_key"
        return _reply(status, kind, code, public_message(error), param, headers_of(error))
    log.exception("openai request failed", exc_info=error)
    return _reply(500, "server_error", "internal_error", INTERNAL)


DOC = {"requestBody": {"required": True, "content": {"application/json": {"schema": ImagesIn.model_json_schema()}}}}


@router.post(
    "/v1/images/generations",
    summary="OpenAI-style image generation (synchronous)",
    openapi_extra=DOC,
    **OPENAI.answers(
        OpenAIImagesOut, "The images, as URLs or base64 (`response_format`).", 400, 404, 429, 500, 503, 504
    ),
)
async def generations(
    request: Request, raw: Annotated[bytes, Depends(_raw_body)], atelier: Annotated[Atelier, Depends(deps.atelier)]
) -> JSONResponse:
    """`{prompt, model?, n (1-8), size ("512x512"; "auto" or absent: the model's native size), response_format
    ("url" or "b64_json")}` → `{"created", "data": [{"url"} | {"b64_json"}]}`. OpenAI's model names
    (`dall-e-3`, `gpt-image-1`, ...) or none mean the deployment's default model; another name must be
    registered (404 `model_not_found`). URLs start with the deployment's `public_base_url`, else they are
    relative. 504 `wait_timeout` when the job outlasts the deployment's wait; it keeps running (`/v1/jobs/{id}`)."""
    try:
        owner = deps.owner(request)
        submitted, body = await run_in_threadpool(_submit, atelier, raw, owner)
        job = await finished_job(request, atelier, submitted.id)
        if job is None:
            message = timeout_message(submitted.id, atelier.settings.compat_wait_seconds)
            return _reply(504, "timeout", "wait_timeout", message)
        if job.status is not JobStatus.SUCCEEDED:
            raise GenerationFailed(failure_message(job), code=job.error_code)
        data: list[dict[str, Any]]
        if body.response_format == "b64_json":
            data = [{"b64_json": text} for text in await images_base64(atelier, job, owner)]
        else:
            data = [{"url": image_url(atelier, image.id)} for image in job.images]
        return JSONResponse({"created": int(time.time()), "data": data})
    except Exception as error:
        return error_reply(error)
