"""AUTOMATIC1111 web UI API compatibility: ``/sdapi/v1/*`` with its field names and answers.

Generation routes are synchronous (submit, wait, answer ``{images, parameters, info}``); errors are
``{"detail": message, "error": {"code", "message"}}`` with 422 for invalid input and 404 for an unknown model.
"""

from __future__ import annotations

import base64
import json
import logging
import re
from contextlib import suppress
from datetime import datetime
from pathlib import Path
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Request
from fastapi.responses import JSONResponse
from pydantic import BaseModel, ConfigDict, ValidationError

from app.domain.errors import AtelierError, Conflict, GenerationFailed, InvalidParameters
from app.domain.generation import SCHEDULERS, canonical_scheduler, infotext
from app.domain.jobs import GenerationJob, JobStatus
from app.domain.models import ModelKind
from app.entrypoints.http import deps
from app.entrypoints.http.errors import status_of
from app.entrypoints.library import Atelier

router = APIRouter(tags=["a1111"])
log = logging.getLogger(__name__)
AtelierDep = Annotated[Atelier, Depends(deps.atelier)]
OwnerDep = Annotated[str, Depends(deps.owner)]
RESIZE = {0: "stretch", 1: "crop", 2: "pad", 3: "stretch"}  # 3: "just resize (latent upscale)"
CONTROLNET = "alwayson_scripts.controlnet.args[0]"


class Txt2ImgIn(BaseModel):
    """The A1111 fields Atelier uses; every other field A1111 clients send is accepted and ignored."""

    model_config = ConfigDict(extra="allow")

    prompt: str = ""
    negative_prompt: str = ""
    seed: int = -1
    sampler_name: str | None = None
    sampler_index: str | None = None
    scheduler: str | None = None
    batch_size: int = 1
    n_iter: int = 1
    steps: int = 50
    cfg_scale: float = 7.0
    width: int = 512
    height: int = 512
    denoising_strength: float | None = None
    override_settings: dict[str, Any] | None = None
    alwayson_scripts: dict[str, Any] | None = None
    send_images: bool = True


class Img2ImgIn(Txt2ImgIn):
    init_images: list[str] | None = None
    mask: str | None = None
    resize_mode: int = 0


async def _raw_body(request: Request) -> bytes:
    return await request.body()


def _strip_hash(name: str) -> str:
    """A1111 titles look like ``name.safetensors [6ce0161689]``."""
    name = re.sub(r"\s*\[[0-9a-fA-F]*\]\s*$", "", name.strip())
    return re.sub(r"\.(safetensors|ckpt|pt|bin)$", "", name)


def _scheduler(body: Txt2ImgIn) -> str | None:
    sampler = body.sampler_name or body.sampler_index
    if not sampler:
        return None
    if body.scheduler and body.scheduler.lower() not in ("automatic", ""):  # A1111 ≥1.9: "DPM++ 2M" + "Karras"
        with suppress(InvalidParameters):
            return canonical_scheduler(f"{sampler} {body.scheduler}")
    return canonical_scheduler(sampler)


def _control(body: Txt2ImgIn, init: str | None) -> dict[str, Any] | None:
    """The ControlNet extension's first unit: image, module, model, weight."""
    scripts = {k.lower(): v for k, v in (body.alwayson_scripts or {}).items()}
    extension = scripts.get("controlnet")
    args = (extension.get("args") if isinstance(extension, dict) else None) or []
    unit = args[0] if args and isinstance(args[0], dict) else None
    if unit is None or unit.get("enabled") is False:
        return None
    image = unit.get("image") or unit.get("input_image") or init
    image = image.get("image") if isinstance(image, dict) else image
    if not image:
        raise InvalidParameters("The ControlNet unit needs an image.", field=CONTROLNET)
    module = str(unit.get("module") or "none").lower()
    kind = "canny" if module.startswith("canny") else "depth" if module.startswith("depth") else module
    if kind not in ("canny", "depth", "none"):
        raise InvalidParameters(f"ControlNet module {module!r} is not supported; use canny, depth_* or none.")
    model = _strip_hash(str(unit.get("model") or ""))
    scale = unit.get("weight", 1.0)
    return {"image": image, "kind": kind, "model": None if model in ("", "None") else model, "scale": scale}


def _params(body: Txt2ImgIn) -> dict[str, Any]:
    count = body.batch_size * body.n_iter
    if not 1 <= count <= 8:
        raise InvalidParameters(f"batch_size × n_iter must be 1-8; got {count}.", field="batch_size")
    values: dict[str, Any] = {
        "negative_prompt": body.negative_prompt,
        "seed": None if body.seed == -1 else body.seed,
        "scheduler": _scheduler(body),
        "num_images": count,
        "steps": body.steps,
        "guidance_scale": body.cfg_scale,
        "width": body.width,
        "height": body.height,
    }
    checkpoint = (body.override_settings or {}).get("sd_model_checkpoint")
    if checkpoint:
        values["model"] = _strip_hash(str(checkpoint))
    init = None
    if isinstance(body, Img2ImgIn):
        if not body.init_images:
            raise InvalidParameters("img2img needs init_images.", field="init_images")
        if body.resize_mode not in RESIZE:
            raise InvalidParameters(f"resize_mode must be 0-3; got {body.resize_mode}.", field="resize_mode")
        init = body.init_images[0]
        strength = 0.75 if body.denoising_strength is None else body.denoising_strength
        values.update(init_image=init, mask_image=body.mask, strength=strength, resize_mode=RESIZE[body.resize_mode])
    values["control"] = _control(body, init)
    return values


def _answer(atelier: Atelier, job: GenerationJob, owner: str, body: Txt2ImgIn, raw: Any) -> dict[str, Any]:
    p = job.params
    stamp = (job.started_at or job.created_at).strftime("%Y%m%d%H%M%S")
    seeds = p.image_seeds()
    info = {
        "prompt": p.prompt,
        "all_prompts": [p.prompt] * len(seeds),
        "negative_prompt": p.negative_prompt,
        "all_negative_prompts": [p.negative_prompt] * len(seeds),
        "seed": job.seed,
        "all_seeds": seeds,
        "subseed": job.seed,
        "all_subseeds": seeds,
        "width": p.width,
        "height": p.height,
        "sampler_name": p.scheduler or "Automatic",
        "cfg_scale": p.guidance_scale,
        "steps": p.steps,
        "batch_size": body.batch_size,
        "n_iter": body.n_iter,
        "denoising_strength": p.strength if isinstance(body, Img2ImgIn) else body.denoising_strength,
        "infotexts": [infotext(p, image.seed) for image in job.images],
        "job_timestamp": stamp,
        "sd_model_name": p.model,
        "index_of_first_image": 0,
    }
    paths = [atelier.image_path(image.id, owner) for image in job.images] if body.send_images else []
    images = [base64.b64encode(Path(path).read_bytes()).decode() for path in paths]
    return {"images": images, "parameters": raw, "info": json.dumps(info, ensure_ascii=False)}


def _error(error: Exception) -> JSONResponse:
    status, code, message = 500, "internal_error", "Internal error; the server log has the details."
    if isinstance(error, json.JSONDecodeError | UnicodeDecodeError):
        status, code, message = 422, "invalid_json", "The request body is not valid JSON."
    elif isinstance(error, ValidationError):
        first = error.errors()[0]
        status, code = 422, "invalid_parameters"
        message = f"{'.'.join(str(p) for p in first['loc'])}: {first['msg']}"
    elif isinstance(error, AtelierError):
        status, code, message = status_of(error), error.code, error.message
    else:
        log.exception("a1111 request failed", exc_info=error)
    return JSONResponse({"detail": message, "error": {"code": code, "message": message}}, status_code=status)


def _generate(request: Request, raw: bytes, atelier: Atelier, model: type[Txt2ImgIn]) -> JSONResponse:
    try:
        data = json.loads(raw)
        body = model.model_validate(data)
        owner = deps.owner(request)
        job = atelier.wait(atelier.submit(body.prompt, owner=owner, **_params(body)).id)
        if job.status is JobStatus.FAILED:  # an interrupted (cancelled) job answers like A1111: what it has
            raise GenerationFailed(job.error_message, code=job.error_code)
        return JSONResponse(_answer(atelier, job, owner, body, data))
    except Exception as error:
        return _error(error)


RawBody = Annotated[bytes, Depends(_raw_body)]


def _doc(model: type[BaseModel]) -> dict[str, Any]:
    return {"requestBody": {"required": True, "content": {"application/json": {"schema": model.model_json_schema()}}}}


@router.post("/sdapi/v1/txt2img", summary="A1111 text-to-image (synchronous)", openapi_extra=_doc(Txt2ImgIn))
def txt2img(request: Request, raw: RawBody, atelier: AtelierDep) -> JSONResponse:
    """A1111 fields: prompt, negative_prompt, seed (-1 random), sampler_name, scheduler, batch_size × n_iter (≤ 8),
    steps, cfg_scale, width, height, override_settings.sd_model_checkpoint, alwayson_scripts.controlnet.args[0],
    send_images; `<lora:name:w>` in the prompt. Answers `{images, parameters, info}` (info is a JSON string)."""
    return _generate(request, raw, atelier, Txt2ImgIn)


@router.post("/sdapi/v1/img2img", summary="A1111 image-to-image and inpainting", openapi_extra=_doc(Img2ImgIn))
def img2img(request: Request, raw: RawBody, atelier: AtelierDep) -> JSONResponse:
    """txt2img's fields plus init_images (base64; the first is used), mask (inpainting), denoising_strength
    (0.75) and resize_mode (0 stretch, 1 crop, 2 pad, 3 stretch)."""
    return _generate(request, raw, atelier, Img2ImgIn)


@router.get("/sdapi/v1/progress", summary="Progress of your newest running job")
def progress(atelier: AtelierDep, owner: OwnerDep) -> dict[str, Any]:
    """`{progress, eta_relative, state, current_image, textinfo}`; zeros when nothing runs."""
    running = atelier.jobs(owner=owner, status=JobStatus.RUNNING, limit=1)
    queued = atelier.jobs(owner=owner, status=JobStatus.QUEUED, limit=1)
    state: dict[str, Any] = {"skipped": False, "interrupted": False, "job": "", "job_count": 0, "job_timestamp": "0"}
    state.update(job_count=running.total + queued.total, job_no=0, sampling_step=0, sampling_steps=0)
    fraction, eta = 0.0, 0.0
    if running.items:
        job = running.items[0]
        started = job.started_at or job.created_at
        elapsed = (datetime.now(started.tzinfo) - started).total_seconds()
        fraction = job.progress
        eta = max(0.0, elapsed / fraction - elapsed) if fraction > 0 else 0.0
        state.update(interrupted=job.cancel_requested, job=job.id, job_timestamp=started.strftime("%Y%m%d%H%M%S"))
        state.update(sampling_step=round(fraction * job.params.steps), sampling_steps=job.params.steps)
    return {"progress": fraction, "eta_relative": eta, "state": state, "current_image": None, "textinfo": None}


@router.post("/sdapi/v1/interrupt", summary="Stop your running jobs")
def interrupt(atelier: AtelierDep, owner: OwnerDep) -> dict[str, Any]:
    """Cancels your running jobs (each stops within one denoising step); queued ones stay queued."""
    for job in atelier.jobs(owner=owner, status=JobStatus.RUNNING, limit=100).items:
        with suppress(Conflict):  # it finished meanwhile
            atelier.cancel(job.id, owner)
    return {}


@router.get("/sdapi/v1/sd-models", summary="Base models, as A1111 checkpoints")
def sd_models(atelier: AtelierDep, _owner: OwnerDep) -> list[dict[str, Any]]:
    """`title` is what `override_settings.sd_model_checkpoint` takes."""
    return [
        {"title": m.name, "model_name": m.name, "hash": None, "sha256": None, "filename": m.path, "config": None}
        for m in atelier.models(ModelKind.BASE)
    ]


@router.get("/sdapi/v1/samplers", summary="Sampler names sampler_name accepts")
def samplers(_owner: OwnerDep) -> list[dict[str, Any]]:
    return [{"name": name, "aliases": [], "options": {}} for name in SCHEDULERS]


@router.get("/sdapi/v1/loras", summary="Registered LoRAs (use `<lora:name:weight>` in the prompt)")
def loras(atelier: AtelierDep, _owner: OwnerDep) -> list[dict[str, Any]]:
    return [{"name": m.name, "alias": m.name, "path": m.path, "metadata": {}} for m in atelier.models(ModelKind.LORA)]
