"""OpenAI images API compatibility: ``POST /v1/images/generations`` (synchronous).

Errors use OpenAI's shape: ``{"error": {"message", "type", "param", "code"}}``.
"""

from __future__ import annotations

import base64
import json
import logging
import time
from pathlib import Path
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Depends, Request
from fastapi.responses import JSONResponse
from pydantic import BaseModel, ConfigDict, ValidationError

from app.domain.errors import AtelierError, BackendUnavailable, GenerationFailed, InvalidParameters, Unauthorized
from app.domain.generation import parse_size
from app.domain.jobs import JobStatus
from app.entrypoints.http import deps
from app.entrypoints.http.errors import status_of
from app.entrypoints.library import Atelier

router = APIRouter(tags=["openai"])
log = logging.getLogger(__name__)
PARAMS = {"num_images": "n", "width": "size", "height": "size", "model": "model", "prompt": "prompt"}
OPENAI_MODELS = ("dall-e", "gpt-image")  # what OpenAI SDKs send by default: the deployment's default model


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


def _params(body: ImagesIn) -> dict[str, Any]:
    width, height = (None, None) if body.size in (None, "auto") else parse_size(body.size or "")
    model = None if body.model is None or body.model.startswith(OPENAI_MODELS) else body.model
    return {"model": model, "num_images": body.n, "width": width, "height": height}


def _error(error: Exception) -> JSONResponse:
    status, kind, param, code = 500, "server_error", None, "internal_error"
    message = "Internal error; the server log has the details."
    if isinstance(error, json.JSONDecodeError | UnicodeDecodeError):
        status, kind, code = 400, "invalid_request_error", "invalid_json"
        message = "The request body is not valid JSON."
    elif isinstance(error, ValidationError):
        first = error.errors()[0]
        param = ".".join(str(p) for p in first["loc"]) or None
        status, kind, code, message = 400, "invalid_request_error", "invalid_parameters", f"{param}: {first['msg']}"
    elif isinstance(error, AtelierError):
        status, code, message = status_of(error), error.code, error.message
        if isinstance(error, InvalidParameters):
            status, field = 400, error.field
            param = PARAMS.get(field, field) if field else None
        if not isinstance(error, GenerationFailed | BackendUnavailable):
            kind = "invalid_request_error"
        if isinstance(error, Unauthorized):
            code = "invalid_api_key"
    else:
        log.exception("openai images request failed", exc_info=error)
    body = {"error": {"message": message, "type": kind, "param": param, "code": code}}
    return JSONResponse(body, status_code=status)


DOC = {"requestBody": {"required": True, "content": {"application/json": {"schema": ImagesIn.model_json_schema()}}}}


@router.post("/v1/images/generations", summary="OpenAI-style image generation (synchronous)", openapi_extra=DOC)
def generations(
    request: Request, raw: Annotated[bytes, Depends(_raw_body)], atelier: Annotated[Atelier, Depends(deps.atelier)]
) -> JSONResponse:
    """`{prompt, model?, n (1-8), size ("512x512"; "auto" or absent: the model's native size), response_format
    ("url" or "b64_json")}` → `{"created", "data": [{"url"} | {"b64_json"}]}`. OpenAI model names such as
    `dall-e-3` mean the deployment's default model."""
    try:
        body = ImagesIn.model_validate(json.loads(raw))
        owner = deps.owner(request)
        job = atelier.wait(atelier.submit(body.prompt, owner=owner, **_params(body)).id)
        if job.status is not JobStatus.SUCCEEDED:
            raise GenerationFailed(job.error_message or f"The job was {job.status.value}.")
        if body.response_format == "b64_json":
            paths = [Path(atelier.image_path(image.id, owner)) for image in job.images]
            data = [{"b64_json": base64.b64encode(path.read_bytes()).decode()} for path in paths]
        else:
            base = str(request.base_url).rstrip("/")
            data = [{"url": f"{base}/v1/images/{image.id}"} for image in job.images]
        return JSONResponse({"created": int(time.time()), "data": data})
    except Exception as error:
        return _error(error)
