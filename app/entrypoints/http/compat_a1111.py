"""AUTOMATIC1111 web UI API compatibility: ``/sdapi/v1/*`` with its field names and answers.

Generation routes are synchronous for the client (submit, wait, answer ``{images, parameters, info}``) but hold
no server thread while they wait (see ``compat_common``). Errors are ``{"detail": message, "error": {"code",
"message"}}`` with 422 for invalid input, 404 for an unknown model and 504 ``wait_timeout`` when the job outlasts
``compat_wait_seconds`` (it keeps running: ``/v1/jobs/{id}``).
"""

from __future__ import annotations

import json
import logging
from contextlib import suppress
from dataclasses import dataclass
from datetime import datetime
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Request
from fastapi.responses import JSONResponse
from PIL import Image
from pydantic import BaseModel, ValidationError
from starlette.concurrency import run_in_threadpool

from app.domain.errors import AtelierError, Conflict, GenerationFailed, InvalidParameters
from app.domain.generation import A1111_UPSCALERS, SCHEDULERS, infotext
from app.domain.jobs import GenerationJob, JobStatus
from app.domain.models import ModelKind
from app.entrypoints.http import deps
from app.entrypoints.http.compat_a1111_fields import ignored_fields
from app.entrypoints.http.compat_a1111_request import (
    CHECKPOINT,
    CLIP_SKIP,
    VAE,
    Img2ImgIn,
    Txt2ImgIn,
    request_values,
    scheduler_of,
    strip_hash,
    vae_name,
)
from app.entrypoints.http.compat_common import (
    INTERNAL,
    failure_message,
    finished_job,
    images_base64,
    parse_object,
    public_message,
    timeout_message,
)
from app.entrypoints.http.compat_schemas import (
    A1111,
    A1111ImagesOut,
    A1111Interrupted,
    A1111LatentUpscaleMode,
    A1111Lora,
    A1111Options,
    A1111Progress,
    A1111Sampler,
    A1111SdModel,
    A1111SdVae,
    A1111Upscaler,
)
from app.entrypoints.http.errors import headers_of, status_of
from app.entrypoints.library import Atelier
from app.ports.options import OwnerOptions

MAX_OPTIONS, MAX_OPTIONS_BYTES = 256, 65536
router = APIRouter(tags=["a1111"])
log = logging.getLogger(__name__)
AtelierDep = Annotated[Atelier, Depends(deps.atelier)]
OwnerDep = Annotated[str, Depends(deps.owner)]


async def _raw_body(request: Request) -> bytes:
    return await request.body()


def _options(atelier: Atelier) -> OwnerOptions:
    store: OwnerOptions = atelier.container.owner_options()
    return store


@dataclass(frozen=True)
class _Submitted:
    job: GenerationJob
    body: Txt2ImgIn
    data: dict[str, Any]
    ignored: list[str]


def _submit(atelier: Atelier, raw: bytes, model: type[Txt2ImgIn], owner: str) -> _Submitted:
    """Parse, validate and queue (blocking: runs in the thread pool). Nothing is stored when this raises."""
    data = parse_object(raw)
    body = model.model_validate(data)
    values = request_values(body, _options(atelier).get(owner))
    ignored = ignored_fields(data, img2img=isinstance(body, Img2ImgIn), scheduler_honoured=scheduler_of(body)[1])
    job = atelier.container.accept_generation()({**values, "prompt": body.prompt}, owner)
    return _Submitted(job, body, data, ignored)


def _png_parameters(path: str) -> str | None:
    """The A1111 ``parameters`` text a result PNG carries (what A1111's PNG-info tab reads)."""
    with suppress(OSError), Image.open(path) as picture:
        text = picture.info.get("parameters")
        return text if isinstance(text, str) else None
    return None


def _info(atelier: Atelier, job: GenerationJob, owner: str, submitted: _Submitted) -> str:
    """The answer's ``info`` JSON text (blocking: reads the infotexts of the result files, so it runs in the
    thread pool); each infotext is the one its PNG carries."""
    p, body = job.params, submitted.body
    stamp = (job.started_at or job.created_at).strftime("%Y%m%d%H%M%S")
    seeds = p.image_seeds()
    paths = [atelier.image_path(image.id, owner) for image in job.images]
    texts = [_png_parameters(path) or infotext(p, image.seed) for path, image in zip(paths, job.images, strict=True)]
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
        "infotexts": texts,
        "job_timestamp": stamp,
        "sd_model_name": p.model,
        "index_of_first_image": 0,
        "ignored_fields": submitted.ignored,
    }
    return json.dumps(info, ensure_ascii=False)


def _reply(message: str, code: str, status: int, headers: dict[str, str] | None = None) -> JSONResponse:
    body = {"detail": message, "error": {"code": code, "message": message}}
    return JSONResponse(body, status_code=status, headers=headers)


def _error(error: Exception) -> JSONResponse:
    if isinstance(error, ValidationError):
        first = error.errors()[0]
        return _reply(f"{'.'.join(str(p) for p in first['loc'])}: {first['msg']}", "invalid_parameters", 422)
    if isinstance(error, AtelierError):
        return _reply(public_message(error), error.code, status_of(error), headers_of(error))
    log.exception("a1111 request failed", exc_info=error)
    return _reply(INTERNAL, "internal_error", 500)


async def _generate(request: Request, raw: bytes, atelier: Atelier, model: type[Txt2ImgIn]) -> JSONResponse:
    try:
        owner = deps.owner(request)
        submitted = await run_in_threadpool(_submit, atelier, raw, model, owner)
        job = await finished_job(request, atelier, submitted.job.id)
        if job is None:
            message = timeout_message(submitted.job.id, atelier.settings.compat_wait_seconds)
            return _reply(message, "wait_timeout", 504)
        if job.status is JobStatus.FAILED:  # an interrupted (cancelled) job answers like A1111: what it has
            raise GenerationFailed(failure_message(job), code=job.error_code)
        info = await run_in_threadpool(_info, atelier, job, owner, submitted)
        images = await images_base64(atelier, job, owner) if submitted.body.send_images else []
        return JSONResponse({"images": images, "parameters": submitted.data, "info": info})
    except Exception as error:
        return _error(error)


RawBody = Annotated[bytes, Depends(_raw_body)]


def _doc(model: type[BaseModel]) -> dict[str, Any]:
    return {"requestBody": {"required": True, "content": {"application/json": {"schema": model.model_json_schema()}}}}


GENERATED = "The images, the request as sent, and `info`: a JSON text describing the run."
GENERATION_ERRORS = (404, 422, 429, 500, 503, 504, 507)


@router.post(
    "/sdapi/v1/txt2img",
    summary="A1111 text-to-image (synchronous)",
    openapi_extra=_doc(Txt2ImgIn),
    **A1111.answers(A1111ImagesOut, GENERATED, *GENERATION_ERRORS),
)
async def txt2img(request: Request, raw: RawBody, atelier: AtelierDep) -> JSONResponse:
    """A1111 fields: prompt, negative_prompt, seed (-1 random), sampler_name, scheduler, batch_size × n_iter (≤ 8),
    steps, cfg_scale, width, height, override_settings.sd_model_checkpoint (else your `/sdapi/v1/options`
    checkpoint), alwayson_scripts.controlnet.args (every enabled unit), send_images; `<lora:name:w>` in the
    prompt. Answers
    `{images, parameters, info}` (info is a JSON string; its `ignored_fields` lists the fields sent that would
    change A1111's result but that Atelier does not honour, such as `enable_hr: true` or `restore_faces: true`).
    504 `wait_timeout` when the job outlasts the deployment's wait; it keeps running (`/v1/jobs/{id}`)."""
    return await _generate(request, raw, atelier, Txt2ImgIn)


@router.post(
    "/sdapi/v1/img2img",
    summary="A1111 image-to-image and inpainting",
    openapi_extra=_doc(Img2ImgIn),
    **A1111.answers(A1111ImagesOut, GENERATED, *GENERATION_ERRORS),
)
async def img2img(request: Request, raw: RawBody, atelier: AtelierDep) -> JSONResponse:
    """txt2img's fields plus init_images (base64; the first is used), mask (inpainting), denoising_strength
    (0.75) and resize_mode (0 stretch, 1 crop, 2 pad, 3 stretch)."""
    return await _generate(request, raw, atelier, Img2ImgIn)


@router.get(
    "/sdapi/v1/options",
    summary="Your A1111 options (sd_model_checkpoint, sd_vae and CLIP_stop_at_last_layers are honoured)",
    **A1111.answers(A1111Options, "Your options.", 503),
)
def get_options(atelier: AtelierDep, owner: OwnerDep) -> dict[str, Any]:
    """Your options: `sd_model_checkpoint` (default: the deployment's default model), `sd_vae` (`Automatic`: the
    model's own) and `CLIP_stop_at_last_layers` (1), which your txt2img/img2img requests use unless their
    `override_settings` say otherwise, and whatever other keys you set, echoed back but changing nothing."""
    stored = _options(atelier).get(owner)
    defaults = {VAE: "Automatic", CLIP_SKIP: 1}
    return {**defaults, **stored, CHECKPOINT: stored.get(CHECKPOINT) or atelier.settings.default_model}


def _set_options(atelier: Atelier, owner: str, raw: bytes) -> None:
    changes = parse_object(raw)
    if CHECKPOINT in changes and changes[CHECKPOINT] is not None:
        changes[CHECKPOINT] = atelier.model(strip_hash(str(changes[CHECKPOINT]))).name  # UnknownModel: 404
    if changes.get(VAE) is not None:
        vae = vae_name(changes[VAE])
        changes[VAE] = "Automatic" if vae is None else atelier.model(vae, ModelKind.VAE).name
    store = _options(atelier)
    options = {k: v for k, v in {**store.get(owner), **changes}.items() if v is not None}
    if len(options) > MAX_OPTIONS or len(json.dumps(options)) > MAX_OPTIONS_BYTES:
        raise InvalidParameters(f"At most {MAX_OPTIONS} options and {MAX_OPTIONS_BYTES} bytes of them are kept.")
    store.set(owner, options)


OPTIONS_DOC = {
    "requestBody": {
        "required": True,
        "content": {
            "application/json": {
                "schema": {
                    "type": "object",
                    "properties": {CHECKPOINT: {"type": "string"}},
                    "additionalProperties": True,
                }
            }
        },
    }
}


@router.post(
    "/sdapi/v1/options",
    summary="Set your A1111 options (per API key)",
    openapi_extra=OPTIONS_DOC,
    **A1111.answers({"type": "null"}, "Stored: `null`, as A1111 answers.", 404, 422, 503),
)
def set_options(request: Request, raw: RawBody, atelier: AtelierDep) -> JSONResponse:
    """`{"sd_model_checkpoint": "name [hash]"}` makes that registered base model the one your txt2img/img2img
    requests use without `override_settings` (404 for an unknown model); `sd_vae` a registered VAE (`Automatic`
    or `None`: the model's own; 404 for an unknown VAE), `CLIP_stop_at_last_layers` the clip skip. Other keys
    are stored and echoed back by GET, but not honoured. A `null` value removes a key. Options are per API key
    and persist."""
    try:
        _set_options(atelier, deps.owner(request), raw)
    except Exception as error:
        return _error(error)
    return JSONResponse(None)


@router.get(
    "/sdapi/v1/progress",
    summary="Progress of your newest running job",
    **A1111.answers(A1111Progress, "The progress; zeros when nothing runs.", 503),
)
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
        state.update(sampling_step=round(fraction * job.params.step_count), sampling_steps=job.params.step_count)
    return {"progress": fraction, "eta_relative": eta, "state": state, "current_image": None, "textinfo": None}


@router.post(
    "/sdapi/v1/interrupt",
    summary="Stop your running jobs",
    **A1111.answers(A1111Interrupted, "`{}`: the cancels are requested.", 503),
)
def interrupt(atelier: AtelierDep, owner: OwnerDep) -> dict[str, Any]:
    """Cancels your running jobs (each stops within one denoising step); queued ones stay queued."""
    for job in atelier.jobs(owner=owner, status=JobStatus.RUNNING, limit=100).items:
        with suppress(Conflict):  # it finished meanwhile
            atelier.cancel(job.id, owner)
    return {}


@router.get(
    "/sdapi/v1/sd-models",
    summary="Base models, as A1111 checkpoints",
    **A1111.answers(list[A1111SdModel], "The registered base models.", 503),
)
def sd_models(request: Request, atelier: AtelierDep, _owner: OwnerDep) -> list[dict[str, Any]]:
    """`title` is what `override_settings.sd_model_checkpoint` takes. `filename` is the model's name; only an
    admin key sees the server's path."""
    admin = deps.is_admin(request)
    return [
        {
            "title": m.name,
            "model_name": m.name,
            "hash": None,
            "sha256": None,
            "filename": m.path if admin else m.name,
            "config": None,
        }
        for m in atelier.models(ModelKind.BASE)
    ]


@router.get(
    "/sdapi/v1/samplers",
    summary="Sampler names sampler_name accepts",
    **A1111.answers(list[A1111Sampler], "The schedulers, by their A1111 names."),
)
def samplers(_owner: OwnerDep) -> list[dict[str, Any]]:
    return [{"name": name, "aliases": [], "options": {}} for name in SCHEDULERS]


@router.get(
    "/sdapi/v1/upscalers",
    summary="Upscalers hr_upscaler takes",
    **A1111.answers(list[A1111Upscaler], "The hires-fix upscalers: pixel ones here, latent ones too."),
)
def upscalers(_owner: OwnerDep) -> list[dict[str, Any]]:
    """As A1111 lists them: the pixel upscalers (no model files: Lanczos, Nearest), and `hr_upscaler` also takes
    the latent modes of `/sdapi/v1/latent-upscale-modes` (SD, SDXL and Kolors models)."""
    pixel = [name for upscaler, name in A1111_UPSCALERS.items() if not upscaler.in_latent_space]
    return [{"name": name, "model_name": None, "model_path": None, "model_url": None, "scale": 4.0} for name in pixel]


@router.get(
    "/sdapi/v1/latent-upscale-modes",
    summary="Latent upscale modes hr_upscaler takes",
    **A1111.answers(list[A1111LatentUpscaleMode], "The latent hires-fix upscalers."),
)
def latent_upscale_modes(_owner: OwnerDep) -> list[dict[str, Any]]:
    return [{"name": name} for upscaler, name in A1111_UPSCALERS.items() if upscaler.in_latent_space]


@router.get(
    "/sdapi/v1/loras",
    summary="Registered LoRAs (use `<lora:name:weight>` in the prompt)",
    **A1111.answers(list[A1111Lora], "The registered LoRAs.", 503),
)
def loras(request: Request, atelier: AtelierDep, _owner: OwnerDep) -> list[dict[str, Any]]:
    """`path` is the LoRA's name; only an admin key sees the server's path."""
    admin = deps.is_admin(request)
    return [
        {"name": m.name, "alias": m.name, "path": m.path if admin else m.name, "metadata": {}}
        for m in atelier.models(ModelKind.LORA)
    ]


@router.get(
    "/sdapi/v1/sd-vae",
    summary="Registered VAEs (what sd_vae takes)",
    **A1111.answers(list[A1111SdVae], "The registered VAEs.", 503),
)
def sd_vae(request: Request, atelier: AtelierDep, _owner: OwnerDep) -> list[dict[str, Any]]:
    """As A1111 lists its VAE files; `override_settings.sd_vae` and the `sd_vae` option take a `model_name`
    (or `Automatic`/`None` for the model's own). Only an admin key sees the server's path."""
    admin = deps.is_admin(request)
    return [{"model_name": m.name, "filename": m.path if admin else m.name} for m in atelier.models(ModelKind.VAE)]
