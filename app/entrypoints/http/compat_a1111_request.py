"""AUTOMATIC1111's request fields, and their mapping to Atelier's generation values in one step.

``request_values`` turns a ``txt2img``/``img2img`` body into the dict ``AcceptGeneration`` makes
``GenerationParams`` of: A1111's sampler names, ``cfg_scale``, ``batch_size × n_iter``, ``init_images``
with ``resize_mode`` 0-3, the ControlNet extension's ``alwayson_scripts``, the checkpoint override, clip skip
(``override_settings.CLIP_stop_at_last_layers``), hires fix (``enable_hr`` and its ``hr_*`` fields) and the SDXL
refiner (``refiner_checkpoint``, ``refiner_switch_at``). ``steps`` and ``cfg_scale`` left out take the model's
recommended values.
"""

from __future__ import annotations

import re
from contextlib import suppress
from typing import Any

from pydantic import BaseModel, ConfigDict

from app.domain.errors import InvalidParameters
from app.domain.generation import canonical_scheduler

RESIZE = {0: "stretch", 1: "crop", 2: "pad", 3: "stretch"}  # 3: "just resize (latent upscale)"
CONTROLNET = "alwayson_scripts.controlnet.args"
CHECKPOINT = "sd_model_checkpoint"
CLIP_SKIP = "CLIP_stop_at_last_layers"  # A1111's clip skip, an override setting
VAE = "sd_vae"  # A1111's VAE choice: "Automatic" or "None" (the model's own), or a VAE's name
_MODEL_OWN_VAE = ("", "automatic", "none")
VAE_SUFFIXES = (".safetensors", ".pt", ".ckpt")


def vae_name(value: Any) -> str | None:
    """The registered VAE an ``sd_vae`` value names (A1111 lists files: a trailing .safetensors/.pt/.ckpt and a
    ``[hash]`` are dropped); None for the model's own."""
    text = strip_hash(str(value or "")).strip()
    if text.lower() in _MODEL_OWN_VAE:
        return None
    for suffix in VAE_SUFFIXES:
        text = text.removesuffix(suffix)
    return text


class Txt2ImgIn(BaseModel):
    """The A1111 fields Atelier uses; every other field A1111 clients send is accepted, and those that would
    change A1111's result are listed in the answer's ``info.ignored_fields``."""

    model_config = ConfigDict(extra="allow")

    prompt: str = ""
    negative_prompt: str = ""
    seed: int = -1
    sampler_name: str | None = None
    sampler_index: str | None = None
    scheduler: str | None = None
    batch_size: int = 1
    n_iter: int = 1
    steps: int | None = None  # omitted: the model's recommended steps and scale (GET /v1/models)
    cfg_scale: float | None = None
    width: int = 512
    height: int = 512
    denoising_strength: float | None = None
    enable_hr: bool = False  # hires fix: hr_scale (or hr_resize_x/y), hr_upscaler, hr_second_pass_steps
    hr_scale: float = 2.0
    hr_upscaler: str | None = None
    hr_second_pass_steps: int = 0
    hr_resize_x: int = 0
    hr_resize_y: int = 0
    override_settings: dict[str, Any] | None = None
    alwayson_scripts: dict[str, Any] | None = None
    send_images: bool = True
    refiner_checkpoint: str | None = None  # an SDXL refiner's title; "None" or empty: no refiner
    refiner_switch_at: float | None = None  # the fraction of the steps before the refiner takes over (0.8)


class Img2ImgIn(Txt2ImgIn):
    init_images: list[str] | None = None
    mask: str | None = None
    resize_mode: int = 0


def strip_hash(name: str) -> str:
    """A1111 titles look like ``name.safetensors [6ce0161689]``."""
    name = re.sub(r"\s*\[[0-9a-fA-F]*\]\s*$", "", name.strip())
    return re.sub(r"\.(safetensors|ckpt|pt|bin)$", "", name)


def scheduler_of(body: Txt2ImgIn) -> tuple[str | None, bool]:
    """The scheduler to use, and whether A1111's ``scheduler`` field (the schedule type, ≥1.9) was honoured."""
    sampler = body.sampler_name or body.sampler_index
    schedule = body.scheduler if body.scheduler and body.scheduler.lower() not in ("automatic", "") else None
    if not sampler:
        return None, schedule is None
    if schedule:  # "DPM++ 2M" + "Karras"
        with suppress(InvalidParameters):
            return canonical_scheduler(f"{sampler} {schedule}"), True
    return canonical_scheduler(sampler), schedule is None


def _controls(body: Txt2ImgIn, init: str | None) -> list[dict[str, Any]]:
    """The ControlNet extension's enabled units: image, module, model, weight, guidance start and end."""
    scripts = {k.lower(): v for k, v in (body.alwayson_scripts or {}).items()}
    extension = scripts.get("controlnet")
    args = extension.get("args") if isinstance(extension, dict) else None
    units = args if isinstance(args, list) else []
    return [
        _unit(unit, init, f"{CONTROLNET}[{k}]")
        for k, unit in enumerate(units)
        if isinstance(unit, dict) and unit.get("enabled") is not False
    ]


def _unit(unit: dict[str, Any], init: str | None, field: str) -> dict[str, Any]:
    image = unit.get("image") or unit.get("input_image") or init
    image = image.get("image") if isinstance(image, dict) else image
    if not image:
        raise InvalidParameters("The ControlNet unit needs an image.", field=field)
    if not isinstance(image, str):
        raise InvalidParameters("The ControlNet unit's image must be base64 text.", field=field)
    module = str(unit.get("module") or "none").lower()
    kind = "canny" if module.startswith("canny") else "depth" if module.startswith("depth") else module
    if kind not in ("canny", "depth", "none"):
        raise InvalidParameters(
            f"ControlNet module {module!r} is not supported; use canny, depth_* or none.", field=field
        )
    model = strip_hash(str(unit.get("model") or ""))
    return {
        "image": image,
        "kind": kind,
        "model": None if model in ("", "None") else model,
        "scale": unit.get("weight", 1.0),
        "start": unit.get("guidance_start", 0.0),
        "end": unit.get("guidance_end", 1.0),
    }


def request_values(body: Txt2ImgIn, options: dict[str, Any]) -> dict[str, Any]:
    """The native request values of an A1111 body; ``options`` (the owner's ``/sdapi/v1/options``) give the
    checkpoint, VAE and clip skip a body's ``override_settings`` leaves out."""
    count = body.batch_size * body.n_iter
    if not 1 <= count <= 8:
        raise InvalidParameters(f"batch_size × n_iter must be 1-8; got {count}.", field="batch_size")
    values: dict[str, Any] = {
        "negative_prompt": body.negative_prompt,
        "seed": None if body.seed == -1 else body.seed,
        "scheduler": scheduler_of(body)[0],
        "num_images": count,
        "steps": body.steps,
        "guidance_scale": body.cfg_scale,
        "width": body.width,
        "height": body.height,
    }
    settings = {**options, **(body.override_settings or {})}
    if settings.get(CLIP_SKIP) is not None:
        values["clip_skip"] = settings[CLIP_SKIP]
    if settings.get(VAE) is not None:
        values["vae"] = vae_name(settings[VAE])
    if body.enable_hr and not isinstance(body, Img2ImgIn):
        values["hires"] = {
            "scale": body.hr_scale,
            "upscaler": body.hr_upscaler or "Latent",
            "steps": body.hr_second_pass_steps,
            "denoise": 0.7 if body.denoising_strength is None else body.denoising_strength,
            "width": body.hr_resize_x,
            "height": body.hr_resize_y,
        }
    if settings.get(CHECKPOINT):
        values["model"] = strip_hash(str(settings[CHECKPOINT]))
    refiner = strip_hash(body.refiner_checkpoint or "")
    if refiner and refiner != "None":  # A1111's "no refiner" value; the switch means nothing without one
        values["refiner"] = refiner
        if body.refiner_switch_at is not None:
            values["refiner_switch"] = body.refiner_switch_at
    init = None
    if isinstance(body, Img2ImgIn):
        if not body.init_images:
            raise InvalidParameters("img2img needs init_images.", field="init_images")
        if body.resize_mode not in RESIZE:
            raise InvalidParameters(f"resize_mode must be 0-3; got {body.resize_mode}.", field="resize_mode")
        init = body.init_images[0]
        strength = 0.75 if body.denoising_strength is None else body.denoising_strength
        values.update(init_image=init, mask_image=body.mask, strength=strength, resize_mode=RESIZE[body.resize_mode])
    values["controls"] = _controls(body, init)
    return values
