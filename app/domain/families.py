"""Text-to-image model families and what Atelier can do with each: the capability table.

A family is what a model folder's ``model_index.json`` names (its pipeline class) or what a single-file
checkpoint's keys reveal. Each family has a profile: its capabilities, how guidance works for it, and the
defaults its authors recommend (size, steps, guidance, scheduler). A request asking a family for something
outside its profile is refused with a sentence naming the family and the capability (``unsupported_capability``),
never run as a silent no-op.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum

from app.domain.errors import InvalidParameters
from app.domain.specs import Mode


class Family(StrEnum):
    SD = "sd"  # Stable Diffusion 1.x / 2.x and PAI-Diffusion (CLIP or Chinese BERT)
    INSTRUCT_PIX2PIX = "instruct-pix2pix"  # SD 1.5 fine-tuned to edit an image as instructed
    SDXL = "sdxl"
    SDXL_REFINER = "sdxl-refiner"
    KOLORS = "kolors"
    HUNYUANDIT = "hunyuandit"
    SD3 = "sd3"
    FLUX = "flux"
    QWEN_IMAGE = "qwen-image"
    QWEN_IMAGE_EDIT = "qwen-image-edit"
    Z_IMAGE = "z-image"
    COGVIEW4 = "cogview4"
    PIXART_SIGMA = "pixart-sigma"
    SANA = "sana"


class Capability(StrEnum):
    TXT2IMG = "txt2img"
    IMG2IMG = "img2img"
    INPAINT = "inpaint"
    OUTPAINT = "outpaint"
    CONTROLNET = "controlnet"
    LORA = "lora"
    INSTRUCT = "instruct"  # image + instruction -> image
    LONG_PROMPTS = "long_prompts"  # prompts beyond one 77-token CLIP window are read whole
    PROMPT_WEIGHTING = "prompt_weighting"  # A1111's (word:1.2) attention syntax
    NEGATIVE_PROMPT = "negative_prompt"
    HIRES = "hires"  # A1111's hires fix: generate, enlarge, denoise again (needs text-to-image and img2img)
    LATENT_UPSCALE = "latent_upscale"  # hires fix enlarging the latents (A1111's "Latent" upscalers)
    CLIP_SKIP = "clip_skip"  # read an earlier layer of the CLIP text encoder
    LORA_TRAINING = "lora_training"  # LoRAs of it can be trained from captioned images (docs/training.md)


class GuidanceKind(StrEnum):
    CFG = "cfg"  # classifier-free guidance: a conditional and an unconditional pass per step
    DISTILLED = "distilled"  # the scale is an input of a guidance-distilled model (one pass per step)
    TRUE_CFG = "true_cfg"  # CFG on a model whose default is one pass; on with a scale above 1
    NONE = "none"  # the model takes no guidance scale (a step-distilled turbo model)


_MODE_CAPABILITY = {
    Mode.TXT2IMG: Capability.TXT2IMG,
    Mode.IMG2IMG: Capability.IMG2IMG,
    Mode.INPAINT: Capability.INPAINT,
    Mode.OUTPAINT: Capability.OUTPAINT,
    Mode.CONTROLNET: Capability.CONTROLNET,
    Mode.INSTRUCT: Capability.INSTRUCT,
}


@dataclass(frozen=True)
class FamilyProfile:
    """A family's capabilities, guidance kind and recommended defaults."""

    family: Family
    label: str
    capabilities: frozenset[Capability]
    guidance: GuidanceKind
    size: int
    steps: int
    guidance_scale: float
    scheduler: str | None = None  # None: the model's own scheduler
    # The A1111 sampler names a request may pick; None: all of them. Flow-matching models run their own
    # flow-matching Euler ("Euler"), and Sana its own flow DPM-Solver (no name to pick).
    samplers: tuple[str, ...] | None = None

    def supports(self, capability: Capability) -> bool:
        return capability in self.capabilities

    def modes(self) -> list[Mode]:
        """The generation modes this family runs, in the order of :class:`Mode`."""
        return [mode for mode in Mode if _MODE_CAPABILITY[mode] in self.capabilities]


def _caps(*names: Capability) -> frozenset[Capability]:
    return frozenset(names)


C = Capability
_EDITS = (C.IMG2IMG, C.INPAINT, C.OUTPAINT)
PROFILES: dict[Family, FamilyProfile] = {
    profile.family: profile
    for profile in (
        FamilyProfile(
            Family.SD,
            "Stable Diffusion 1.x/2.x",
            _caps(
                C.TXT2IMG,
                *_EDITS,
                C.CONTROLNET,
                C.LORA,
                C.LONG_PROMPTS,
                C.PROMPT_WEIGHTING,
                C.NEGATIVE_PROMPT,
                C.HIRES,
                C.LATENT_UPSCALE,
                C.CLIP_SKIP,
                C.LORA_TRAINING,
            ),
            GuidanceKind.CFG,
            size=512,
            steps=20,
            guidance_scale=7.5,
        ),
        FamilyProfile(
            Family.INSTRUCT_PIX2PIX,
            "InstructPix2Pix",
            _caps(C.INSTRUCT, C.LORA, C.LONG_PROMPTS, C.PROMPT_WEIGHTING, C.NEGATIVE_PROMPT, C.CLIP_SKIP),
            GuidanceKind.CFG,
            size=512,
            steps=20,
            guidance_scale=7.5,
        ),
        FamilyProfile(
            Family.SDXL,
            "Stable Diffusion XL",
            _caps(
                C.TXT2IMG,
                *_EDITS,
                C.CONTROLNET,
                C.LORA,
                C.LONG_PROMPTS,
                C.PROMPT_WEIGHTING,
                C.NEGATIVE_PROMPT,
                C.HIRES,
                C.LATENT_UPSCALE,
                C.CLIP_SKIP,
                C.LORA_TRAINING,
            ),
            GuidanceKind.CFG,
            size=1024,
            steps=30,
            guidance_scale=5.0,
        ),
        FamilyProfile(
            Family.SDXL_REFINER,
            "Stable Diffusion XL refiner",
            _caps(*_EDITS, C.LONG_PROMPTS, C.PROMPT_WEIGHTING, C.NEGATIVE_PROMPT, C.CLIP_SKIP),
            GuidanceKind.CFG,
            size=1024,
            steps=30,
            guidance_scale=5.0,
        ),
        FamilyProfile(
            Family.KOLORS,
            "Kolors",
            _caps(
                C.TXT2IMG,
                C.IMG2IMG,
                C.LORA,
                C.LONG_PROMPTS,
                C.NEGATIVE_PROMPT,
                C.HIRES,
                C.LATENT_UPSCALE,
                C.LORA_TRAINING,
            ),
            GuidanceKind.CFG,
            size=1024,
            steps=50,
            guidance_scale=5.0,
        ),
        FamilyProfile(
            Family.HUNYUANDIT,
            "HunyuanDiT",
            _caps(C.TXT2IMG, C.LONG_PROMPTS, C.NEGATIVE_PROMPT),
            GuidanceKind.CFG,
            size=1024,
            steps=50,
            guidance_scale=5.0,
        ),
        FamilyProfile(
            Family.SD3,
            "Stable Diffusion 3",
            _caps(
                C.TXT2IMG,
                *_EDITS,
                C.CONTROLNET,
                C.LORA,
                C.LONG_PROMPTS,
                C.NEGATIVE_PROMPT,
                C.HIRES,
                C.CLIP_SKIP,
                C.LORA_TRAINING,
            ),
            GuidanceKind.CFG,
            size=1024,
            steps=28,
            guidance_scale=7.0,
            samplers=("Euler",),
        ),
        FamilyProfile(
            Family.FLUX,
            "FLUX.1",
            _caps(C.TXT2IMG, *_EDITS, C.CONTROLNET, C.LORA, C.LONG_PROMPTS, C.HIRES, C.LORA_TRAINING),
            GuidanceKind.DISTILLED,
            size=1024,
            steps=28,
            guidance_scale=3.5,
            samplers=("Euler",),
        ),
        FamilyProfile(
            Family.QWEN_IMAGE,
            "Qwen-Image",
            _caps(
                C.TXT2IMG, *_EDITS, C.CONTROLNET, C.LORA, C.LONG_PROMPTS, C.NEGATIVE_PROMPT, C.HIRES, C.LORA_TRAINING
            ),
            GuidanceKind.TRUE_CFG,
            size=1328,
            steps=50,
            guidance_scale=4.0,
            samplers=("Euler",),
        ),
        FamilyProfile(
            Family.QWEN_IMAGE_EDIT,
            "Qwen-Image-Edit",
            _caps(C.INSTRUCT, C.LORA, C.LONG_PROMPTS, C.NEGATIVE_PROMPT),
            GuidanceKind.TRUE_CFG,
            size=1024,
            steps=50,
            guidance_scale=4.0,
            samplers=("Euler",),
        ),
        FamilyProfile(
            Family.Z_IMAGE,
            "Z-Image",
            _caps(C.TXT2IMG, *_EDITS, C.LORA, C.LONG_PROMPTS, C.NEGATIVE_PROMPT, C.HIRES, C.LORA_TRAINING),
            GuidanceKind.CFG,
            size=1024,
            steps=9,
            guidance_scale=1.0,
            samplers=("Euler",),
        ),
        FamilyProfile(
            Family.COGVIEW4,
            "CogView4",
            _caps(C.TXT2IMG, C.LORA, C.LONG_PROMPTS, C.NEGATIVE_PROMPT, C.LORA_TRAINING),
            GuidanceKind.CFG,
            size=1024,
            steps=50,
            guidance_scale=3.5,
            samplers=("Euler",),
        ),
        FamilyProfile(
            Family.PIXART_SIGMA,
            "PixArt-Σ",
            _caps(C.TXT2IMG, C.LONG_PROMPTS, C.NEGATIVE_PROMPT),
            GuidanceKind.CFG,
            size=1024,
            steps=20,
            guidance_scale=4.5,
        ),
        FamilyProfile(
            Family.SANA,
            "Sana",
            _caps(C.TXT2IMG, C.LORA, C.LONG_PROMPTS, C.NEGATIVE_PROMPT, C.LORA_TRAINING),
            GuidanceKind.CFG,
            size=1024,
            steps=20,
            guidance_scale=4.5,
            samplers=(),
        ),
    )
}


# Families whose several ControlNet units share one (union) ControlNet that reads each control image in turn.
ONE_CONTROLNET_FAMILIES = frozenset({Family.QWEN_IMAGE})


def profile(family: Family | str) -> FamilyProfile:
    """The profile of a family given as a member or its value."""
    try:
        return PROFILES[Family(family)]
    except ValueError as e:
        raise InvalidParameters(
            f"Unknown model family {family!r}; supported: {supported_families()}.",
            code="unknown_family",
            field="family",
        ) from e


def supported_families() -> str:
    return ", ".join(p.label for p in PROFILES.values())


def require_lora_training(family: Family | str) -> None:
    """Refuse (``unsupported_training``) a base model whose family's LoRAs cannot be trained here."""
    if not profile(family).supports(Capability.LORA_TRAINING):
        trainable = ", ".join(p.label for p in PROFILES.values() if p.supports(Capability.LORA_TRAINING))
        raise InvalidParameters(
            f"LoRAs of {profile(family).label} models cannot be trained yet; trainable families: {trainable}.",
            code="unsupported_training",
            field="base_model",
        )


def unsupported(family: Family, capability: Capability, field: str, hint: str = "") -> InvalidParameters:
    """The error for asking ``family`` for ``capability``."""
    label = PROFILES[family].label
    return InvalidParameters(
        f"{label} models cannot do {capability.value.replace('_', ' ')}.{' ' + hint if hint else ''}",
        code="unsupported_capability",
        field=field,
    )


def require_sampler(family: Family, sampler: str | None) -> None:
    """Refuse a sampler the family's scheduler cannot be swapped for (``sampler`` in canonical A1111 spelling)."""
    allowed = PROFILES[family].samplers
    if sampler is None or allowed is None or sampler in allowed:
        return
    choices = f"choose {', '.join(allowed)} or none" if allowed else "leave it empty: the model runs its own"
    raise InvalidParameters(
        f"{PROFILES[family].label} models cannot use the {sampler} sampler; {choices}.",
        code="unsupported_capability",
        field="scheduler",
    )


def require_mode(family: Family, mode: Mode) -> None:
    """Refuse a generation mode the family lacks, naming the modes it has."""
    capability = _MODE_CAPABILITY[mode]
    fam = PROFILES[family]
    if not fam.supports(capability):
        raise unsupported(family, capability, "mode", f"Its modes: {', '.join(m.value for m in fam.modes())}.")
