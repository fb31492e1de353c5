"""Models known to Atelier by name."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum

from app.domain.specs import validate_model_name


class ModelKind(StrEnum):
    BASE = "base"
    LORA = "lora"
    CONTROLNET = "controlnet"


@dataclass(frozen=True)
class ModelInfo:
    """A registered model: ``path`` is a local diffusers folder; ``source`` is what the
    user registered (the same path, or a hub id that was downloaded to ``path``)."""

    name: str
    path: str
    source: str
    kind: ModelKind = ModelKind.BASE
    default_size: int = 512
    tokenizer: str = "unknown"
    registered_at: datetime | None = None
    default_guidance: float | None = None  # the model's recommended guidance scale, when it states one
    sha256: str | None = None  # of a LoRA's weights file (A1111's "Lora hashes"), recorded at registration

    def __post_init__(self) -> None:
        validate_model_name(self.name)
