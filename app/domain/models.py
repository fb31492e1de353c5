"""Models known to Atelier by name."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from enum import StrEnum

from app.domain.families import Family, FamilyProfile, profile
from app.domain.specs import validate_model_name


class ModelKind(StrEnum):
    BASE = "base"
    LORA = "lora"
    CONTROLNET = "controlnet"
    VAE = "vae"  # an image autoencoder that replaces a base model's own for a request (A1111's sd_vae)
    LLM = "llm"  # a causal language model (a transformers folder), served to chat and completion clients
    LLM_LORA = "llm-lora"  # a PEFT LoRA adapter of a language model, applied per request as ``LLM:ADAPTER``

    @property
    def is_text(self) -> bool:
        return self in (ModelKind.LLM, ModelKind.LLM_LORA)


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
    family: Family = Family.SD  # a base model's family (for a LoRA or ControlNet: the family it was made for)
    default_steps: int | None = None  # the model's recommended steps, when its folder states them
    # A LoRA's: the family its file shows it was made for (metadata, layer names, widths); None when it does not
    # tell, or it was registered before Atelier read it.
    made_for: Family | None = None
    # The layers a LoRA changes, or a base model's denoiser has, as hashes of name and sizes (None: not read).
    # A LoRA fits a model whose layers include all of its own (app.usecases.lora_fit).
    layers: frozenset[int] | None = field(default=None, repr=False)
    # The latent space of a base model's VAE, or of a VAE: its class, latent channels and downscale factor
    # (``AutoencoderKL:4:8``). A VAE fits a model with the same (None: not read).
    latent: str | None = None
    # A language model's: tokens of prompt and answer together (None: no stated limit) and its architecture
    # (``LlamaForCausalLM``); an LLM adapter's: the model it was trained on, as its config names it.
    context_length: int | None = None
    architecture: str | None = None
    base_model: str | None = None

    def __post_init__(self) -> None:
        validate_model_name(self.name)
        object.__setattr__(self, "family", Family(self.family))
        if self.made_for is not None:
            object.__setattr__(self, "made_for", Family(self.made_for))
        if self.layers is not None:
            object.__setattr__(self, "layers", frozenset(self.layers))

    @property
    def profile(self) -> FamilyProfile:
        return profile(self.family)

    @property
    def recommended_guidance(self) -> float:
        return self.profile.guidance_scale if self.default_guidance is None else self.default_guidance

    @property
    def recommended_steps(self) -> int:
        return self.profile.steps if self.default_steps is None else self.default_steps
