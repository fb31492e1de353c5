"""Training jobs: fine-tuning a language model, or training an image LoRA, from a user's data.

A training job goes through the generation job's states (queued, running, succeeded, failed, cancelled) and, like
it, may be started again after its worker died: it then resumes from its last checkpoint. It reports the step it
reached and the loss; its events (losses, validation losses, messages) are kept for the progress view. The result
is registered as a model under ``result_name`` when it succeeds.
"""

from __future__ import annotations

import re
import uuid
from dataclasses import dataclass, field
from datetime import datetime
from enum import StrEnum
from typing import Any, ClassVar

from app.domain.errors import IllegalTransition, InvalidParameters, NotFound, require
from app.domain.jobs import JobStatus, Lifecycle
from app.domain.specs import validate_model_name


class TrainingJobNotFound(NotFound):
    code = "training_job_not_found"
    default_message = "No such training job."


class TrainingKind(StrEnum):
    LLM_FINETUNE = "llm-finetune"  # a language model on chat records: a LoRA adapter, or every weight
    IMAGE_LORA = "image-lora"  # a LoRA of an image model's denoiser on captioned images


@dataclass(frozen=True)
class Hyperparameters:
    epochs: int
    learning_rate: float
    batch_size: int
    lora_rank: int


# The defaults of each kind, read by every entrypoint: an image LoRA learns from few images over many epochs at a
# lower rate; a language model's LoRA sees more records in fewer passes.
DEFAULTS: dict[TrainingKind, Hyperparameters] = {
    TrainingKind.IMAGE_LORA: Hyperparameters(epochs=10, learning_rate=1e-4, batch_size=4, lora_rank=8),
    TrainingKind.LLM_FINETUNE: Hyperparameters(epochs=3, learning_rate=1e-3, batch_size=8, lora_rank=16),
}
CHECKPOINT_EVERY = 50  # steps between an image LoRA's checkpoints and sample images
SAMPLE_STEPS = 20  # denoising steps of each sample image
_LLM = DEFAULTS[TrainingKind.LLM_FINETUNE]


@dataclass(frozen=True)
class TrainingSpec:
    """What to train: the registered base model, the data (uploaded file ids or a server folder) and the
    hyperparameters; ``result_name`` is the name the result is registered under."""

    kind: TrainingKind
    base_model: str
    result_name: str
    training_file: str
    validation_file: str | None = None
    epochs: int = _LLM.epochs
    learning_rate: float = _LLM.learning_rate
    batch_size: int = _LLM.batch_size
    lora_rank: int = _LLM.lora_rank  # 0: every weight (language models only)
    seed: int = 0
    extra: dict[str, Any] = field(default_factory=dict)  # kind-specific options (trigger word, resolution, ...)

    def __post_init__(self) -> None:
        object.__setattr__(self, "kind", TrainingKind(self.kind))
        if isinstance(self.base_model, str) and any(mark in self.base_model for mark in "@:+"):
            raise InvalidParameters(
                f"{self.base_model!r} is a variant of a served model: train from the model itself (its name before "
                "'@', ':' or '+').",
                field="base_model",
            )
        validate_model_name(self.base_model, "base_model")
        validate_model_name(self.result_name, "result_name")
        require(
            (1 <= self.epochs <= 100, "epochs must be 1 to 100.", "epochs"),
            (0 < self.learning_rate <= 1, "learning_rate must be in (0, 1].", "learning_rate"),
            (1 <= self.batch_size <= 256, "batch_size must be 1 to 256.", "batch_size"),
            (0 <= self.lora_rank <= 256, "lora_rank must be 0 (every weight) to 256.", "lora_rank"),
            (bool(self.training_file), "training_file is required.", "training_file"),
        )
        if self.kind is TrainingKind.IMAGE_LORA and self.lora_rank == 0:
            message = "An image model is trained as a LoRA: lora_rank must be 1 or more."
            raise InvalidParameters(message, field="lora_rank")
        if self.kind is TrainingKind.IMAGE_LORA:
            _check_image_options(self.extra)


IMAGE_CROPS = ("center", "bucket")
IMAGE_OPTIONS = (
    "resolution",
    "crop",
    "trigger_word",
    "train_text_encoder",
    "sample_prompts",
    "sample_steps",
    "checkpoint_every",
)


def _check_image_options(extra: dict[str, Any]) -> None:
    """The options of an image LoRA (``TrainingSpec.extra``): each of the right type and range, no unknown one."""

    def integer(value: Any, low: int, high: int) -> bool:
        return value is None or (isinstance(value, int) and not isinstance(value, bool) and low <= value <= high)

    unknown = sorted(set(extra) - set(IMAGE_OPTIONS))
    trigger, prompts = extra.get("trigger_word"), extra.get("sample_prompts") or []
    require(
        (not unknown, f"Unknown option {unknown[0] if unknown else ''!r} for an image LoRA.", "extra"),
        (integer(extra.get("resolution"), 32, 2048), "resolution must be 32 to 2048.", "resolution"),
        (extra.get("crop") in (None, *IMAGE_CROPS), f"crop must be one of {', '.join(IMAGE_CROPS)}.", "crop"),
        (
            trigger is None or (isinstance(trigger, str) and 0 < len(trigger.strip()) <= 64),
            "trigger_word: 1 to 64 characters.",
            "trigger_word",
        ),
        (
            isinstance(extra.get("train_text_encoder", False), bool),
            "train_text_encoder must be true or false.",
            "train_text_encoder",
        ),
        (
            isinstance(prompts, list | tuple)
            and len(prompts) <= 8
            and all(isinstance(p, str) and 0 < len(p) <= 1000 for p in prompts),
            "sample_prompts: at most 8 prompts of 1 to 1000 characters.",
            "sample_prompts",
        ),
        (integer(extra.get("sample_steps"), 1, 100), "sample_steps must be 1 to 100.", "sample_steps"),
        (integer(extra.get("checkpoint_every"), 1, 100_000), "checkpoint_every: 1 to 100000.", "checkpoint_every"),
    )


_ID = re.compile(r"[0-9a-f]{32}")


def new_training_id() -> str:
    return uuid.uuid4().hex


@dataclass
class TrainingJob(Lifecycle):
    id: str
    owner: str
    spec: TrainingSpec
    created_at: datetime
    updated_at: datetime
    status: JobStatus = JobStatus.QUEUED
    step: int = 0
    total_steps: int | None = None
    loss: float | None = None
    started_at: datetime | None = None
    finished_at: datetime | None = None
    error_code: str | None = None
    error_message: str | None = None
    cancel_requested: bool = False
    worker_id: str | None = None
    attempts: int = 0
    result_model: str | None = None  # the registered name, once it succeeded
    LABEL: ClassVar[str] = "Training job"

    @classmethod
    def create(cls, owner: str, spec: TrainingSpec, now: datetime, job_id: str | None = None) -> TrainingJob:
        if not owner:
            raise InvalidParameters("A job needs an owner.", code="invalid_owner", field="owner")
        if job_id is not None and not _ID.fullmatch(job_id):
            raise InvalidParameters("A training job id is 32 hex digits.", field="id")
        return cls(id=job_id or new_training_id(), owner=owner, spec=spec, created_at=now, updated_at=now)

    @property
    def progress(self) -> float:
        if self.status is JobStatus.SUCCEEDED:
            return 1.0
        return min(1.0, self.step / self.total_steps) if self.total_steps else 0.0

    def start(self, now: datetime, worker_id: str | None = None) -> None:
        self._move(JobStatus.RUNNING, now)
        self.started_at = self.started_at or now
        self.worker_id = worker_id
        self.attempts += 1

    def report(self, step: int, total_steps: int, loss: float | None, now: datetime) -> None:
        if self.status is not JobStatus.RUNNING:
            raise IllegalTransition(f"Training job {self.id} is {self.status.value}; only a running job reports.")
        self.step, self.total_steps = step, total_steps
        self.loss = loss if loss is not None else self.loss
        self.updated_at = now

    def succeed(self, result_model: str, now: datetime) -> None:
        self._move(JobStatus.SUCCEEDED, now)
        self.result_model = result_model

    def requeue(self, now: datetime) -> None:
        """A job left running by a worker that died goes back to the queue; its checkpoint stays."""
        self._back_to_queue(now)


class EventKind(StrEnum):
    METRICS = "metrics"  # a step's training loss (and a validation loss, when measured)
    MESSAGE = "message"  # a stage began or ended, a checkpoint was written, the job resumed
    SAMPLE = "sample"  # sample images rendered at a checkpoint (an image LoRA with sample prompts)


@dataclass(frozen=True)
class TrainingEvent:
    job_id: str
    seq: int  # the job's own counter, from 1
    created_at: datetime
    kind: EventKind
    message: str
    step: int | None = None
    loss: float | None = None
    validation_loss: float | None = None
    images: tuple[str, ...] = ()  # a sample event's image file names, in the order of the sample prompts


class FileNotFound(NotFound):
    code = "file_not_found"
    default_message = "No such file."


@dataclass(frozen=True)
class StoredFile:
    """An uploaded data file (OpenAI's ``POST /v1/files``): for ``fine-tune``, chat records, one JSON per line."""

    id: str
    owner: str
    filename: str
    purpose: str
    bytes: int
    created_at: datetime
    records: int


FILE_PURPOSES = ("fine-tune", "image-lora")  # chat records (JSONL); captioned images (a zip archive)
PURPOSE_OF = {TrainingKind.LLM_FINETUNE: "fine-tune", TrainingKind.IMAGE_LORA: "image-lora"}
ROLES = ("system", "developer", "user", "assistant")
MAX_RECORDS = 100_000


def parse_chat_records(data: bytes, field_name: str = "file") -> list[list[dict[str, str]]]:
    """Chat records, one JSON object per line: ``{"messages": [{"role", "content"}, ...]}`` with at least one
    assistant message (what is learned). A bad line is refused with its number; blank lines are skipped."""
    import json

    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as e:
        raise InvalidParameters("The file is not UTF-8 text.", field=field_name) from e
    records: list[list[dict[str, str]]] = []
    for number, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue

        def refuse(why: str, number: int = number) -> InvalidParameters:
            return InvalidParameters(f"Line {number}: {why}", code="invalid_file", field=field_name)

        try:
            record = json.loads(line)
        except ValueError:
            raise refuse("not valid JSON.") from None
        messages = record.get("messages") if isinstance(record, dict) else None
        if not isinstance(messages, list) or not messages:
            raise refuse('expected {"messages": [{"role": ..., "content": ...}, ...]}.')
        turns = []
        for message in messages:
            if not isinstance(message, dict) or message.get("role") not in ROLES:
                raise refuse(f"every message needs a role among {', '.join(ROLES)}.")
            if not isinstance(message.get("content"), str) or not message["content"].strip():
                raise refuse("every message needs a non-empty text content.")
            turns.append({"role": str(message["role"]), "content": message["content"]})
        if not any(turn["role"] == "assistant" for turn in turns):
            raise refuse("a record needs an assistant message to learn from.")
        records.append(turns)
        if len(records) > MAX_RECORDS:
            raise refuse(f"more than {MAX_RECORDS} records.")
    if not records:
        raise InvalidParameters("The file holds no records.", code="invalid_file", field=field_name)
    return records
