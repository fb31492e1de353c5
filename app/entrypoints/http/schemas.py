"""Pydantic shapes of the HTTP edge (the core never sees them)."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, PlainSerializer, WithJsonSchema
from pydantic.json_schema import SkipJsonSchema

from app.domain.jobs import GenerationJob
from app.domain.models import ModelInfo, ModelKind
from app.domain.text import repaired_tree
from app.usecases.complete_text import ServedModel


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
    start: float = Field(0.0, description="The fraction of the steps after which the unit starts acting, 0-1.")
    end: float = Field(1.0, description="The fraction of the steps after which it stops, above start, up to 1.")


class OutpaintIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    left: int = 0
    right: int = 0
    up: int = 0
    down: int = 0
    fill: str = Field("copy", description="How the new border starts before it is painted: copy or reflect.")


class HiresIn(BaseModel):
    """A1111's hires fix: generate, enlarge, then denoise the enlarged picture again (text-to-image only)."""

    model_config = ConfigDict(extra="forbid")

    scale: float = Field(2.0, description="Enlargement, 1-4 (ignored when width or height is given).")
    upscaler: str = Field(
        "latent", description="latent, latent-nearest (SD, SDXL, Kolors), lanczos or nearest; A1111's names work too."
    )
    steps: int = Field(0, description="Steps of the second pass; 0: the first pass's.")
    denoise: float = Field(0.7, description="Denoising strength of the second pass, 0.01-1.")
    width: int = Field(0, description="Target width instead of scale (0: from scale or the height's ratio).")
    height: int = Field(0, description="Target height instead of scale.")


class JobRequest(BaseModel):
    """A generation request. The mode follows from the inputs unless given: `control(s)` → controlnet,
    `outpaint` → outpaint, `mask_image` → inpaint, `init_image` → img2img, none → txt2img.
    Images are upload ids or base64 (data URLs too). Omitted values take the model's or the server's defaults."""

    model_config = ConfigDict(extra="forbid", json_schema_extra={"example": {"prompt": "一只猫在草地上", "seed": 42}})

    prompt: str = Field(description="What to draw, in Chinese or any language.")
    negative_prompt: str = ""
    model: str | None = Field(None, description="A registered model name; the server default when omitted.")
    width: int | None = Field(None, description="Multiple of 8; the model's native size when omitted.")
    height: int | None = None
    steps: int | None = Field(None, description="1 to 150; the model's recommended number when omitted.")
    guidance_scale: float | None = Field(
        None, description="Guidance scale; the model's recommended scale when omitted (GET /v1/models)."
    )
    seed: int | None = Field(None, description="Absent or -1: a random seed, recorded on the job.")
    num_images: int = Field(1, description="1 to 8.")
    scheduler: str | None = Field(None, description="Euler a, Euler, Heun, DPM++ 2M, DPM++ 2M Karras, DDIM, ...")
    mode: str | None = Field(
        None,
        description="txt2img, img2img, inpaint, outpaint, controlnet or instruct (edit init_image as the prompt says);"
        " the model's capabilities (GET /v1/models) say which it has.",
    )
    init_image: str | None = None
    mask_image: str | None = Field(None, description="White (or opaque) = repaint.")
    strength: float = Field(0.75, description="Denoising strength for img2img, inpaint and outpaint.")
    resize_mode: str = Field("stretch", description="How inputs are fitted to the size: stretch, crop or pad.")
    outpaint: OutpaintIn | None = None
    control: ControlIn | None = Field(None, description="One ControlNet unit (the same as `controls` with one).")
    controls: list[ControlIn] | None = Field(
        None,
        description="Up to 4 ControlNet units applied together (multi-ControlNet); each ControlNet must be made"
        " for the model's family.",
    )
    loras: list[LoraIn] = Field(default_factory=list, description="Also `<lora:name:weight>` in the prompt.")
    refiner: str | None = Field(
        None, description="A registered SDXL refiner that runs the last steps (txt2img with an SDXL model)."
    )
    refiner_switch: float | None = Field(
        None, description="The fraction of the steps the base model runs before the refiner, 0.01-0.99 (0.8)."
    )
    hires: HiresIn | None = Field(None, description="Hires fix; the images come out at the enlarged size.")
    clip_skip: int | None = Field(
        None, description="A1111's clip skip: 1 (default) reads CLIP's last layer, 2 the one before (CLIP families)."
    )
    callback_url: str | None = Field(
        None,
        description="Called once when the job ends (POST, the job as JSON, signed with X-Atelier-Signature); its host"
        " must be on the deployment's callback allow-list.",
    )
    vae: str | None = Field(
        None,
        description="A registered VAE (kind vae) that encodes and decodes in place of the model's own; it must share"
        " the model's latent space (`latent` in GET /v1/models).",
    )

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


class _Listed(BaseModel):
    """The fields OpenAI's model list gives every entry (its clients' ``models.list()`` reads them)."""

    id: str = Field(description="The name a request gives.")
    object: Literal["model"] = "model"
    created: int = Field(description="When it was registered, in Unix seconds (0: not registered).")
    owned_by: str = "atelier"


def _created(info: ModelInfo | None) -> int:
    return int(info.registered_at.timestamp()) if info is not None and info.registered_at else 0


class ModelOut(_Listed):
    name: str
    source: str | None = Field(
        description="Where it was registered from (a server path or a hub id); admin keys only, else null."
    )
    kind: str
    family: str = Field(description="sd, sdxl, sdxl-refiner, kolors, hunyuandit, sd3, flux, qwen-image, ...")
    family_label: str = Field(description="The family's name for people, e.g. 'Stable Diffusion XL'.")
    capabilities: list[str] = Field(
        description="What a request may ask of it: txt2img, img2img, inpaint, outpaint, controlnet, instruct, lora,"
        " long_prompts, prompt_weighting, negative_prompt."
    )
    modes: list[str] = Field(description="The generation modes among its capabilities.")
    guidance: str = Field(description="How its guidance scale works: cfg, distilled, true_cfg or none.")
    default_size: int
    default_steps: int = Field(description="The steps a request that gives none runs.")
    default_guidance: float | None = Field(description="The guidance scale a request that gives none runs.")
    default_scheduler: str | None = Field(description="Null: the model's own scheduler.")
    samplers: list[str] | None = Field(
        description="The sampler names a request may pick (GET /sdapi/v1/samplers spelling); null: any of them,"
        " empty: only the model's own."
    )
    tokenizer: str
    latent: str | None = Field(
        None,
        description="The latent space of its VAE (a base model's) or its own (a VAE's): class, channels, downscale,"
        " e.g. AutoencoderKL:4:8. A VAE fits the base models with the same; null: not read.",
    )

    @classmethod
    def of(cls, info: ModelInfo, show_source: bool = False) -> ModelOut:
        fam = info.profile
        base = info.kind is ModelKind.BASE
        return cls(
            id=info.name,
            created=_created(info),
            name=info.name,
            source=info.source if show_source else None,
            kind=info.kind.value,
            family=info.family.value,
            family_label=fam.label,
            capabilities=sorted(c.value for c in fam.capabilities) if base else [],
            modes=[m.value for m in fam.modes()] if base else [],
            guidance=fam.guidance.value,
            default_size=info.default_size,
            default_steps=info.recommended_steps,
            default_guidance=info.recommended_guidance if base else None,
            default_scheduler=fam.scheduler,
            samplers=None if fam.samplers is None else list(fam.samplers),
            tokenizer=info.tokenizer,
            latent=info.latent,
        )


class LanguageModelOut(_Listed):
    """A language model, one of its variants, or an LLM adapter on it: a name chat and completion requests give."""

    name: str = Field(description="The same as id.")
    kind: Literal["llm", "llm-lora"]
    parent: str | None = Field(
        description="For a variant (NAME@base) or an adapter (NAME:ADAPTER): the model it applies to."
    )
    default: bool = Field(description="The model knowledge queries use and edits change (POST /v1/edits).")
    context_length: int | None = Field(description="Tokens of prompt and answer together; null: not read yet.")
    architecture: str | None = Field(description="A model's class (LlamaForCausalLM), an adapter's rank and layers.")
    base_model: str | None = Field(description="An adapter's: the model it was trained on, as its config names it.")
    source: str | None = Field(description="Where it was registered from; admin keys only, else null.")

    @classmethod
    def of(cls, served: ServedModel, show_source: bool = False) -> LanguageModelOut:
        info = served.info
        return cls(
            id=served.id,
            created=_created(info),
            name=served.id,
            kind="llm-lora" if served.kind is ModelKind.LLM_LORA else "llm",
            parent=served.parent,
            default=served.default,
            context_length=info.context_length if info is not None else None,
            architecture=info.architecture if info is not None else None,
            base_model=info.base_model if info is not None else None,
            source=info.source if info is not None and show_source else None,
        )


class ModelList(BaseModel):
    """OpenAI's list shape: ``data`` holds image models (base, lora, controlnet, vae) and language models (llm,
    llm-lora) alike, each with its ``kind``."""

    object: Literal["list"] = "list"
    data: list[ModelOut | LanguageModelOut]


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
