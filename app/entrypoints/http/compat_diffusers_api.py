"""Diffusers-API (alibaba/diffusers-api on PAI-EAS) compatibility: one synchronous POST that generates
(synchronous for the client; no server thread is held while the job runs, see ``compat_common``).

Unlike the original, every request starts from the defaults: an omitted field never inherits
the previous request's value. Errors answer HTTP status = ``error_code`` (460 input, 462 image, 469 server,
also when the job outlasts the deployment's wait: it keeps running, ``/v1/jobs/{id}``).
"""

from __future__ import annotations

import logging
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Request
from fastapi.responses import JSONResponse
from pydantic import BaseModel, ConfigDict, ValidationError
from starlette.concurrency import run_in_threadpool

from app.domain.errors import (
    AtelierError,
    Forbidden,
    GenerationFailed,
    InvalidImage,
    InvalidParameters,
    LimitExceeded,
    NotFound,
    Unauthorized,
)
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
from app.entrypoints.http.compat_schemas import DIFFUSERS_API, DiffusersApiOut
from app.entrypoints.http.errors import headers_of
from app.entrypoints.library import Atelier

router = APIRouter(tags=["diffusers-api"])
log = logging.getLogger(__name__)
MODES = {"t2i": "txt2img", "i2i": "img2img", "inpaint": "inpaint", "outpaint": "outpaint", "controlnet": "controlnet"}
RESIZE = {0: "stretch", 1: "crop", 2: "pad"}
PROCESSORS = ("canny", "depth")
NEEDS = {
    "i2i": ("image_base64",),
    "inpaint": ("image_base64", "mask_base64"),
    "outpaint": ("image_base64",),
    "controlnet": ("image_base64",),
}


class PredictIn(BaseModel):
    """The Diffusers-API request; unknown fields are ignored as by the original."""

    model_config = ConfigDict(extra="ignore")

    task_id: str | int | None = None
    prompt: str
    func_name: str | None = None
    negative_prompt: str = ""
    steps: int = 50
    cfg_scale: float = 7.0
    seed: int | None = None
    width: int | None = None
    height: int | None = None
    image_num: int = 1
    denoising_strength: float = 0.55
    resize_mode: int = 0
    image_base64: str | None = None
    image_link: str | None = None
    mask_base64: str | None = None
    mask_link: str | None = None
    expand: list[int] = [128, 128, 128, 128]
    expand_type: str = "copy"
    lora_path: str | list[str] | None = None
    lora_attn: float | list[float] = 0.75
    controlnet_path: str | None = None
    process_func: str | None = None
    control_scale: float = 1.0
    use_base64: bool = False
    use_translate: bool = False
    save_dir: str | None = None


async def _raw_body(request: Request) -> bytes:
    return await request.body()


def _fail(message: str, field: str | None = None) -> InvalidParameters:
    return InvalidParameters(message, field=field)


def _loras(body: PredictIn) -> list[dict[str, Any]]:
    if body.lora_path is None:
        return []
    paths = [body.lora_path] if isinstance(body.lora_path, str) else body.lora_path
    weights = body.lora_attn if isinstance(body.lora_attn, list) else [body.lora_attn] * len(paths)
    if len(weights) != len(paths):
        raise _fail(f"lora_attn has {len(weights)} weights for {len(paths)} lora_path entries.", "lora_attn")
    return [{"name": name, "weight": weight} for name, weight in zip(paths, weights, strict=True)]


def _inferred_func(body: PredictIn) -> str:
    """A ControlNet service is called without func_name; otherwise the inputs tell the mode."""
    if body.controlnet_path or body.process_func:
        return "controlnet"
    return "inpaint" if body.mask_base64 or body.mask_link else "i2i" if body.image_base64 or body.image_link else "t2i"


def _params(atelier: Atelier, body: PredictIn) -> dict[str, Any]:
    """Diffusers-API fields → the facade's parameters."""
    if body.use_translate:
        raise _fail("translation is not available", "use_translate")
    # A link goes to the library as it is: it fetches it under the deployment's allow-list and limits.
    image, mask = body.image_base64 or body.image_link, body.mask_base64 or body.mask_link
    func = body.func_name or _inferred_func(body)
    if func not in MODES:
        raise _fail(f"func_name must be one of {', '.join(MODES)}; got {func!r}.", "func_name")
    for field in NEEDS.get(func, ()):
        if not (image if field == "image_base64" else mask):
            raise _fail(f"func_name {func} needs {field} (or {field.replace('base64', 'link')}).", field)
    if body.resize_mode not in RESIZE:
        raise _fail(f"resize_mode must be 0 (stretch), 1 (crop) or 2 (pad); got {body.resize_mode}.", "resize_mode")
    values: dict[str, Any] = {
        "negative_prompt": body.negative_prompt,
        "steps": body.steps,
        "guidance_scale": body.cfg_scale,
        "seed": None if body.seed == -1 else body.seed,
        "num_images": body.image_num,
        "mode": MODES[func],
        "strength": max(0.1, body.denoising_strength),
        "resize_mode": RESIZE[body.resize_mode],
        "loras": _loras(body),
    }
    for field in ("width", "height"):
        size = getattr(body, field)
        if size is not None and size <= 0:
            raise _fail(f"{field} must be a positive number of pixels; got {size}.", field)
    width, height = ((size + 7) // 8 * 8 if size else None for size in (body.width, body.height))
    if func != "outpaint" and (width is None or height is None):  # outpainting grows the input by the borders
        native = atelier.model(atelier.settings.default_model).default_size
        width, height = width or native, height or native
    values.update(width=width, height=height)
    if func == "controlnet":
        kind = (body.process_func or "canny").lower()
        if kind not in PROCESSORS:
            raise _fail(f"process_func {kind!r} is not supported here; supported: {', '.join(PROCESSORS)}.")
        scale, model = body.control_scale, body.controlnet_path
        values["control"] = {"image": image, "kind": kind, "model": model, "scale": scale}
        return values
    if func != "t2i":
        values["init_image"] = image
    if func == "inpaint":
        values["mask_image"] = mask
    if func == "outpaint":
        if len(body.expand) != 4:
            raise _fail(f"expand must be [left, right, up, down]; got {body.expand}.", "expand")
        left, right, up, down = body.expand
        values["outpaint"] = {"left": left, "right": right, "up": up, "down": down, "fill": body.expand_type}
    return values


def _error(error: Exception) -> tuple[int, str, dict[str, str] | None]:
    if isinstance(error, ValidationError):
        first = error.errors()[0]
        return 460, f"{'.'.join(str(p) for p in first['loc'])}: {first['msg']}", None
    if isinstance(error, InvalidImage):
        return 462, error.message, None
    if isinstance(error, InvalidParameters) and error.code == "url_fetching_disabled":
        return 460, "fetching links is not enabled on this deployment; send image_base64 / mask_base64", None
    if isinstance(error, InvalidParameters | NotFound):
        return 460, error.message, None
    if isinstance(error, Unauthorized):
        return 401, error.message, None
    if isinstance(error, Forbidden):
        return 403, error.message, None
    if isinstance(error, LimitExceeded):
        return 429, error.message, headers_of(error)
    if isinstance(error, AtelierError):
        return 469, public_message(error), None
    log.exception("diffusers-api request failed", exc_info=error)
    return 469, INTERNAL, None


def _task_id(data: Any) -> str | int | None:
    """The ``task_id`` to echo, also in an error answer: only a plain string or integer."""
    task_id = data.get("task_id") if isinstance(data, dict) else None
    return task_id if isinstance(task_id, str | int) and not isinstance(task_id, bool) else None


def _submit(atelier: Atelier, raw: bytes, owner: str, answer: dict[str, Any]) -> tuple[GenerationJob, PredictIn]:
    """Parse, validate and queue (blocking: runs in the thread pool). Nothing is stored when this raises.
    ``answer`` gets the ``task_id`` as soon as the body is known to be safe to echo."""
    data = parse_object(raw)
    answer["task_id"] = _task_id(data)
    body = PredictIn.model_validate(data)
    return atelier.container.accept_generation()({**_params(atelier, body), "prompt": body.prompt}, owner), body


DOC = {"requestBody": {"required": True, "content": {"application/json": {"schema": PredictIn.model_json_schema()}}}}


@router.post(
    "/api/predict",
    summary="Diffusers-API: generate and answer (synchronous)",
    openapi_extra=DOC,
    **DIFFUSERS_API.answers(DiffusersApiOut, "The images' URLs (and base64 with `use_base64`).", 429, 460, 462, 469),
)
@router.post("/api/predict/{service}", summary="Diffusers-API, PAI-EAS path form", include_in_schema=False)
async def predict(
    request: Request, raw: Annotated[bytes, Depends(_raw_body)], atelier: Annotated[Atelier, Depends(deps.atelier)]
) -> JSONResponse:
    """Body: `task_id`, `prompt`, `func_name` (t2i, i2i, inpaint, outpaint, controlnet), `steps` (50), `cfg_scale`
    (7), `seed`, `width`/`height` (positive; native size when absent; rounded up to ×8), `image_num`,
    `denoising_strength` (0.55), `resize_mode` (0 stretch, 1 crop, 2 pad), `image_base64`/`image_link`,
    `mask_base64`/`mask_link` (links only where the deployment allows fetching: `fetch_allowed_hosts`), `expand`
    [l,r,u,d] + `expand_type`, `lora_path` + `lora_attn`, `controlnet_path` + `process_func` (canny, depth) +
    `control_scale`, `use_base64`. Answers `{success, task_id, seed, image_url, images_base64?, is_nsfw, prompt}`
    (`image_url`: comma-separated, starting with the deployment's `public_base_url`, else relative); on error the
    HTTP status is `error_code` (460 input, 462 image decoding, 469 server or a job that outlasts the deployment's
    wait and keeps running) with `{success: 0, task_id, error_code, error_msg}`."""
    echo: dict[str, Any] = {"task_id": None}
    try:
        owner = deps.owner(request)
        submitted, body = await run_in_threadpool(_submit, atelier, raw, owner, echo)
        job = await finished_job(request, atelier, submitted.id)
        if job is None:
            message = timeout_message(submitted.id, atelier.settings.compat_wait_seconds)
            return _failure(469, echo["task_id"], message)
        if job.status is not JobStatus.SUCCEEDED:
            raise GenerationFailed(failure_message(job), code=job.error_code)
        answer: dict[str, Any] = {
            "success": 1,
            "task_id": echo["task_id"],
            "seed": str(job.seed),
            "image_url": ",".join(image_url(atelier, image.id) for image in job.images),
            "is_nsfw": [bool(image.nsfw) for image in job.images],
            "prompt": body.prompt,
        }
        if body.use_base64:
            answer["images_base64"] = await images_base64(atelier, job, owner)
        return JSONResponse(answer)
    except Exception as error:
        code, message, headers = _error(error)
        return _failure(code, echo["task_id"], message, headers)


def _failure(code: int, task_id: Any, message: str, headers: dict[str, str] | None = None) -> JSONResponse:
    body = {"success": 0, "task_id": task_id, "error_code": code, "error_msg": message[:200]}
    return JSONResponse(body, status_code=code, headers=headers)
