"""The compatible APIs' answers and errors as the OpenAPI document shows them, each in its own dialect.

The compatible routes build their JSON themselves (their clients expect those exact bytes), so these models
only document: they reach a route as ``responses=`` with ``response_model=None`` and never re-validate or
filter an answer. The tests check real answers against them.

A :class:`Dialect` is one API's error shape with the statuses it can answer, each with its meaning and an
example; a route lists the statuses only it answers (``A1111.answers(...)``) and ``openapi.document`` adds,
in the same shape, those the middleware answers before routing (401, 429, 413 and 400).
This module is a table of shapes and sentences, hence longer than most.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field
from pydantic.json_schema import SkipJsonSchema

SCHEMA_PREFIX = "#/components/schemas/"

# ---------------------------------------------------------------- AUTOMATIC1111 (/sdapi/v1/*)


class A1111Info(BaseModel):
    """What the `info` JSON text of a txt2img/img2img answer holds."""

    prompt: str
    all_prompts: list[str]
    negative_prompt: str
    all_negative_prompts: list[str]
    seed: int
    all_seeds: list[int]
    subseed: int
    all_subseeds: list[int]
    width: int
    height: int
    sampler_name: str = Field(description="The scheduler that ran, or `Automatic` (the model's own).")
    cfg_scale: float
    steps: int
    batch_size: int
    n_iter: int
    denoising_strength: float | None
    infotexts: list[str] = Field(description="Each image's A1111 `parameters` text, as its PNG carries it.")
    job_timestamp: str = Field(description="`YYYYmmddHHMMSS`, when the job started.")
    sd_model_name: str
    index_of_first_image: int
    ignored_fields: list[str] = Field(
        description="Fields sent that would change A1111's result but that Atelier does not honour."
    )


INFO_SCHEMA: dict[str, Any] = {"contentMediaType": "application/json", "contentSchema": A1111Info.model_json_schema()}


class A1111ImagesOut(BaseModel):
    """A txt2img / img2img answer."""

    images: list[str] = Field(description="PNG files as base64; empty when `send_images` is false.")
    parameters: dict[str, Any] = Field(description="The request body, as sent.")
    info: str = Field(description="A JSON text (see its `contentSchema`).", json_schema_extra=INFO_SCHEMA)


class A1111ProgressState(BaseModel):
    skipped: bool
    interrupted: bool = Field(description="A cancel was requested for the running job.")
    job: str = Field(description="The running job's id; empty when none runs.")
    job_count: int = Field(description="Your jobs queued or running.")
    job_timestamp: str
    job_no: int
    sampling_step: int
    sampling_steps: int


class A1111Progress(BaseModel):
    progress: float = Field(description="0-1, of your newest running job; 0 when none runs.")
    eta_relative: float = Field(description="Seconds left, estimated.")
    state: A1111ProgressState
    current_image: str | None = Field(description="Always null: no live preview is made.")
    textinfo: str | None = Field(description="Always null.")


class A1111Interrupted(BaseModel):
    """`{}`."""

    model_config = ConfigDict(extra="forbid")


class A1111SdModel(BaseModel):
    title: str = Field(description="What `override_settings.sd_model_checkpoint` takes.")
    model_name: str
    hash: str | None
    sha256: str | None
    filename: str = Field(description="The model's name; the server's path for an admin key.")
    config: str | None


class A1111Sampler(BaseModel):
    name: str
    aliases: list[str]
    options: dict[str, str]


class A1111Upscaler(BaseModel):
    name: str = Field(description="What `hr_upscaler` takes.")
    model_name: str | None
    model_path: str | None
    model_url: str | None
    scale: float


class A1111LatentUpscaleMode(BaseModel):
    name: str


class A1111Lora(BaseModel):
    name: str
    alias: str
    path: str = Field(description="The LoRA's name; the server's path for an admin key.")
    metadata: dict[str, Any]


class A1111SdVae(BaseModel):
    model_name: str = Field(description="What `sd_vae` takes: the VAE's registered name.")
    filename: str = Field(description="The VAE's name; the server's path for an admin key.")


class A1111Options(BaseModel):
    """Your options: `sd_model_checkpoint` and every other key you set, echoed back."""

    model_config = ConfigDict(extra="allow")

    sd_model_checkpoint: str = Field(description="The base model your requests use without `override_settings`.")


class A1111ErrorDetail(BaseModel):
    code: str = Field(description="Stable and machine-readable, e.g. `invalid_parameters`, `unknown_model`.")
    message: str


class A1111Error(BaseModel):
    """An error of the A1111 API: `{"detail": message, "error": {"code", "message"}}`."""

    detail: str = Field(description="The same sentence as `error.message`.")
    error: A1111ErrorDetail


# ---------------------------------------------------------------- OpenAI images (/v1/images/generations)


class OpenAIImage(BaseModel):
    """One image: `url` or `b64_json`, as `response_format` asked."""

    url: str | SkipJsonSchema[None] = Field(
        None, description="`/v1/images/{id}`, after the deployment's `public_base_url` when it has one."
    )
    b64_json: str | SkipJsonSchema[None] = Field(None, description="The PNG file as base64.")
    revised_prompt: str | SkipJsonSchema[None] = Field(None, description="OpenAI's field; never sent here.")


class OpenAIImagesOut(BaseModel):
    created: int = Field(description="Unix time, in seconds.")
    data: list[OpenAIImage]


class OpenAIErrorDetail(BaseModel):
    message: str
    type: Literal["invalid_request_error", "server_error", "timeout"]
    param: str | None = Field(description="The request field at fault, when one is.")
    code: str = Field(description="Stable and machine-readable, e.g. `invalid_api_key`, `model_not_found`.")


class OpenAIError(BaseModel):
    """An error of the OpenAI images API: `{"error": {"message", "type", "param", "code"}}`."""

    error: OpenAIErrorDetail


# ---------------------------------------------------------------- Diffusers-API (/api/predict)


class DiffusersApiOut(BaseModel):
    success: Literal[1]
    task_id: str | int | None = Field(description="The request's `task_id`, echoed.")
    seed: str = Field(description="The seed of the first image, as text.")
    image_url: str = Field(description="The images' URLs, comma-separated: `/v1/images/{id}` after `public_base_url`.")
    is_nsfw: list[bool]
    prompt: str
    images_base64: list[str] | SkipJsonSchema[None] = Field(
        None, description="The PNG files as base64; only when the request set `use_base64`."
    )


class DiffusersApiError(BaseModel):
    """An error of the Diffusers-API: `{"success": 0, "task_id", "error_code", "error_msg"}`; the HTTP status is
    `error_code`."""

    success: Literal[0]
    task_id: str | int | None = Field(description="The request's `task_id`, echoed when it could be read.")
    error_code: int = Field(description="The HTTP status.")
    error_msg: str = Field(description="At most 200 characters.")


# ---------------------------------------------------------------- dialects


@dataclass(frozen=True)
class Status:
    """One error status of a dialect: what it means, and the code and message of its example (the
    Diffusers-API's errors carry no code: ``""``)."""

    description: str
    code: str
    message: str


@dataclass(frozen=True)
class Dialect:
    """One compatible API's error shape and the error statuses it answers."""

    prefixes: tuple[str, ...]
    model: type[BaseModel]
    example: Callable[[int, Status], dict[str, Any]]
    statuses: Mapping[int, Status]
    # Statuses the middleware answers in this dialect under another number (Diffusers-API: bad input is 460).
    renumbered: Mapping[int, int] = field(default_factory=dict)

    def status(self, status: int) -> int:
        return self.renumbered.get(status, status)

    def example_of(self, status: int) -> dict[str, Any]:
        return self.example(status, self.statuses[status])

    def _content(self, status: int) -> dict[str, Any]:
        return {"application/json": {"example": self.example_of(status)}}

    def errors(self, *statuses: int) -> dict[int | str, dict[str, Any]]:
        """``responses=`` entries for the error statuses a route answers itself."""
        return {
            status: {
                "model": self.model,
                "description": self.statuses[status].description,
                "content": self._content(status),
            }
            for status in statuses
        }

    def answers(self, success: Any, description: str, *errors: int) -> dict[str, Any]:
        """The keyword arguments of a route decorator: the documented success answer (a model or a type such as
        ``list[Model]``, or a JSON Schema as a dict), the route's own error statuses, and no ``response_model``:
        the handler's answer is sent as it is, never re-validated or filtered."""
        ok: dict[str, Any] = {"description": description}
        if isinstance(success, dict):
            ok["content"] = {"application/json": {"schema": success}}
        else:
            ok["model"] = success
        return {"response_model": None, "responses": {200: ok, **self.errors(*errors)}}

    def response(self, status: int) -> dict[str, Any]:
        """One error response as it stands in the document (for those the middleware answers)."""
        content = self._content(status)
        content["application/json"]["schema"] = {"$ref": SCHEMA_PREFIX + self.model.__name__}
        return {"description": self.statuses[status].description, "content": content}


KEY = "(`Authorization: Bearer <key>` or `X-API-Key: <key>`)"
NO_KEY = "A valid API key is required: send 'Authorization: Bearer <key>' or 'X-API-Key: <key>'."
TOO_LARGE = "The request body has 40000000 bytes; at most 30000000 bytes are accepted."
RATE = "More than 600 requests a minute with this key; retry in 2 s."
TOO_DEEP = "The request body nests too deep."
LIMITS = (
    "Too many requests a minute with this key (`rate_limited`), or too many of its jobs queued or running at once "
    "(`too_many_queued_jobs`, generating routes only); `Retry-After` says when to try again."
)
UNAVAILABLE = "A backend service is unavailable right now; try again shortly."
STORAGE = "The server cannot store files right now; try again later."
TIMEOUT = (
    "Job 0123456789abcdef0123456789abcdef did not finish within 300 s; it keeps running: "
    "follow it at /v1/jobs/0123456789abcdef0123456789abcdef."
)
FAILED = "Job 0123456789abcdef0123456789abcdef failed (generation_failed); the server log has the details."


def _a1111(_: int, status: Status) -> dict[str, Any]:
    return {"detail": status.message, "error": {"code": status.code, "message": status.message}}


A1111 = Dialect(
    prefixes=("/sdapi/",),
    model=A1111Error,
    example=_a1111,
    statuses={
        400: Status("The body nests too deep to be read (`too_deep`).", "too_deep", TOO_DEEP),
        401: Status(f"API keys are configured and the request carries no valid one {KEY}.", "unauthorized", NO_KEY),
        404: Status(
            "No base model is registered under the checkpoint's name (`override_settings.sd_model_checkpoint`, your "
            "options), or no LoRA or ControlNet under a name the request gives (`unknown_model`).",
            "unknown_model",
            "No base model named 'sd15' is registered.",
        ),
        413: Status("The body is larger than the server accepts.", "request_too_large", TOO_LARGE),
        422: Status(
            "The body is not a JSON object (`invalid_json`), or a value is missing, malformed or out of range "
            "(`invalid_parameters`, `empty_prompt`, `unknown_scheduler`, `invalid_width`, `invalid_image`, "
            "`job_too_large`, `invalid_text`, ...); `detail` names the field.",
            "invalid_parameters",
            "steps: Input should be a valid integer",
        ),
        429: Status(LIMITS, "rate_limited", RATE),
        500: Status(
            "The job failed on the server; `error.code` is its failure (`generation_failed`, `model_unavailable`, "
            "`time_budget_exceeded`, ...).",
            "generation_failed",
            FAILED,
        ),
        503: Status(
            "The database cannot be reached right now (`database_unavailable`).", "database_unavailable", UNAVAILABLE
        ),
        504: Status(
            "The job did not finish within the deployment's wait (`wait_timeout`); it keeps running: "
            "follow it at `/v1/jobs/{id}`.",
            "wait_timeout",
            TIMEOUT,
        ),
        507: Status(
            "An image sent inline (`init_images`, `mask`, a ControlNet unit's image) cannot be stored right now: "
            "`storage_full` or `storage_unavailable`; nothing was queued.",
            "storage_full",
            STORAGE,
        ),
    },
)


def _openai(status: int, entry: Status) -> dict[str, Any]:
    kind = "timeout" if status == 504 else "server_error" if status >= 500 else "invalid_request_error"
    param = {400: "n"}.get(status)
    return {"error": {"message": entry.message, "type": kind, "param": param, "code": entry.code}}


OPENAI = Dialect(
    prefixes=(
        "/v1/images/generations",
        "/v1/chat/completions",
        "/v1/completions",
        "/v1/embeddings",
        "/v1/files",
        "/v1/fine_tuning",
    ),
    model=OpenAIError,
    example=_openai,
    statuses={
        400: Status(
            "The body is not a JSON object (`invalid_json`), nests too deep (`too_deep`), or a value is missing, "
            "malformed or out of range (`invalid_parameters`, `empty_prompt`, `invalid_size`, ...), or the prompt and "
            "`max_tokens` exceed the language model's context (`context_length_exceeded`), or an LLM adapter does not "
            "fit the model (`adapter_mismatch`); `param` names the field.",
            "invalid_parameters",
            "n: Input should be a valid integer",
        ),
        401: Status(
            f"API keys are configured and the request carries no valid one {KEY} (`invalid_api_key`).",
            "invalid_api_key",
            NO_KEY,
        ),
        404: Status(
            "`model` names no registered model and none of OpenAI's (`model_not_found`), or a `<lora:name:w>` tag "
            "names no registered LoRA (`unknown_model`); for text, `model` names no served language model, variant or "
            "LLM adapter, or not the embedder (`model_not_found`).",
            "model_not_found",
            "The model 'sd15' does not exist; use a registered model (GET /v1/models) or omit it.",
        ),
        409: Status(
            "`NAME+knowledge` with `retrieval` auto and a stored calibration too old to hold the state probe "
            "(`not_calibrated`: calibrate again).",
            "not_calibrated",
            "The calibration of 'smollm2-135m-instruct' has no state probe: run `atelier knowledge calibrate "
            "DATASET` again.",
        ),
        413: Status("The body is larger than the server accepts.", "request_too_large", TOO_LARGE),
        429: Status(LIMITS, "rate_limited", RATE),
        500: Status(
            "The job failed or was cancelled before it finished (`server_error`); `code` is its failure "
            "(`generation_failed`, `model_unavailable`, `time_budget_exceeded`, `cancelled`, ...); text generation "
            "failed (`generation_failed`).",
            "generation_failed",
            FAILED,
        ),
        503: Status(
            "The database cannot be reached right now (`server_error`, `database_unavailable`).",
            "database_unavailable",
            UNAVAILABLE,
        ),
        504: Status(
            "The job did not finish within the deployment's wait (`timeout`, `wait_timeout`); it keeps running: "
            "follow it at `/v1/jobs/{id}`.",
            "wait_timeout",
            TIMEOUT,
        ),
    },
)


def _diffusers(status: int, entry: Status) -> dict[str, Any]:
    return {"success": 0, "task_id": "t-1", "error_code": status, "error_msg": entry.message}


DIFFUSERS_API = Dialect(
    prefixes=("/api/predict",),
    model=DiffusersApiError,
    example=_diffusers,
    statuses={
        401: Status(f"API keys are configured and the request carries no valid one {KEY}.", "", NO_KEY),
        413: Status("The body is larger than the server accepts.", "", TOO_LARGE),
        429: Status(
            "Too many requests a minute with this key, or too many of its jobs queued or running at once; "
            "`Retry-After` says when to try again.",
            "",
            RATE,
        ),
        460: Status(
            "Bad input: the body is not a JSON object or nests too deep, a value is missing, malformed or out of "
            "range, or a model or LoRA it names is not registered.",
            "",
            "func_name i2i needs image_base64 (or image_link).",
        ),
        462: Status(
            "An input image (`image_base64`, `mask_base64`, or a link's download) cannot be decoded or fetched.",
            "",
            "The image is not valid base64.",
        ),
        469: Status(
            "The server could not answer: the job failed, the database or a model is unavailable, an inline image "
            "cannot be stored, or the job did not finish within the deployment's wait (it keeps running: "
            "`/v1/jobs/{id}`).",
            "",
            TIMEOUT,
        ),
    },
    renumbered={400: 460, 422: 460},
)

DIALECTS = (A1111, OPENAI, DIFFUSERS_API)
ERROR_MODELS: tuple[type[BaseModel], ...] = (A1111Error, OpenAIError, DiffusersApiError)


def dialect_of(path: str) -> Dialect | None:
    """The compatible API that owns ``path`` (the same prefixes ``errors.dialect_error`` reads), or None."""
    return next((d for d in DIALECTS if path.startswith(d.prefixes)), None)


def request_body(model: type[BaseModel]) -> dict[str, Any]:
    """The documented body: the model's JSON Schema with its nested models written in place (a ``#/$defs`` reference
    would not resolve inside the OpenAPI document)."""
    schema = model.model_json_schema()
    defs = schema.pop("$defs", {})

    def inline(node: Any) -> Any:
        if isinstance(node, dict):
            ref = node.get("$ref", "")
            if ref.startswith("#/$defs/"):
                return inline(defs[ref.removeprefix("#/$defs/")])
            return {key: inline(value) for key, value in node.items()}
        if isinstance(node, list):
            return [inline(item) for item in node]
        return node

    return {"requestBody": {"required": True, "content": {"application/json": {"schema": inline(schema)}}}}
