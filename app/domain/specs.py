"""Value objects a generation request is built from: mode, input images, LoRAs, ControlNet, outpainting."""

from __future__ import annotations

import re
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

from app.domain.errors import InvalidParameters

MAX_LORAS = 8
MAX_LORA_WEIGHT = 5.0
MAX_EXPAND = 1024
MODEL_NAME_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,63}")
# An uploaded input image: "upload-" and the first 32 hex digits of its content's sha256.
_INPUT_ID = re.compile(r"upload-[0-9a-f]{32}")


def validate_model_name(name: Any, field: str = "model") -> str:
    """Names of models, LoRAs and ControlNets: 1-64 of letters, digits, '.', '_', '-'."""
    if not isinstance(name, str) or not MODEL_NAME_RE.fullmatch(name):
        raise InvalidParameters(
            f"{name!r} is not a valid name: 1-64 letters, digits, '.', '_' or '-', starting with a letter or digit.",
            code="invalid_model_name",
            field=field,
        )
    return name


class Mode(StrEnum):
    TXT2IMG = "txt2img"
    IMG2IMG = "img2img"
    INPAINT = "inpaint"
    OUTPAINT = "outpaint"
    CONTROLNET = "controlnet"
    INSTRUCT = "instruct"  # edit the init image as the prompt instructs (Qwen-Image-Edit, InstructPix2Pix)


class ResizeMode(StrEnum):
    """How an input image is fitted to the requested size (A1111 / Diffusers-API 0, 1, 2)."""

    STRETCH = "stretch"
    CROP = "crop"
    PAD = "pad"


def parse_enum(kind: type[StrEnum], value: Any, field: str) -> Any:
    try:
        return kind(str(value).lower())
    except ValueError as e:
        choices = ", ".join(member.value for member in kind)
        raise InvalidParameters(
            f"{field} must be one of: {choices}; got {value!r}.", code=f"invalid_{field}", field=field
        ) from e


def validate_input_id(value: Any, field: str) -> str:
    if not isinstance(value, str) or not _INPUT_ID.fullmatch(value):
        raise InvalidParameters(
            f"{field} must be the id of an uploaded image (upload-…), got {value!r}.",
            code=f"invalid_{field}",
            field=field,
        )
    return value


def _number(value: Any, field: str, low: float, high: float) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not low <= float(value) <= high:
        raise InvalidParameters(
            f"{field} must be a number between {low:g} and {high:g}.", code=f"invalid_{field}", field=field
        )
    return float(value)


@dataclass(frozen=True)
class LoraSpec:
    """A registered LoRA and the weight it is applied with."""

    name: str
    weight: float = 1.0

    def __post_init__(self) -> None:
        validate_model_name(self.name, field="loras")
        object.__setattr__(self, "weight", _number(self.weight, "lora_weight", -MAX_LORA_WEIGHT, MAX_LORA_WEIGHT))

    @classmethod
    def of(cls, value: Any) -> LoraSpec:
        """From a LoraSpec, ``{"name", "weight"}``, ``(name, weight)`` or ``"name:weight"``."""
        if isinstance(value, LoraSpec):
            return value
        if isinstance(value, dict):
            return cls(**value)
        if isinstance(value, (list, tuple)) and len(value) == 2:
            return cls(value[0], value[1])
        if isinstance(value, str):
            name, _, weight = value.partition(":")
            try:
                return cls(name.strip(), float(weight) if weight.strip() else 1.0)
            except ValueError as e:
                raise InvalidParameters(
                    f"LoRA {value!r} is not NAME:WEIGHT.", code="invalid_loras", field="loras"
                ) from e
        raise InvalidParameters(f"LoRA {value!r} is not NAME:WEIGHT.", code="invalid_loras", field="loras")


class ControlKind(StrEnum):
    """How the control image is preprocessed: edges, depth, or used as it is."""

    CANNY = "canny"
    DEPTH = "depth"
    NONE = "none"


MAX_CONTROLS = 4  # ControlNet units per request (A1111's default allows 3)


@dataclass(frozen=True)
class ControlSpec:
    """One ControlNet unit: an uploaded image, its preprocessor, the ControlNet model, its scale, and the part of
    the denoising it acts on (A1111's ``guidance_start``/``guidance_end``, fractions of the steps).
    ``model`` None means the ControlNet registered under the preprocessor's name (``canny``, ``depth``)."""

    image: str
    kind: ControlKind = ControlKind.CANNY
    model: str | None = None
    scale: float = 1.0
    start: float = 0.0
    end: float = 1.0

    def __post_init__(self) -> None:
        validate_input_id(self.image, "control_image")
        object.__setattr__(self, "kind", parse_enum(ControlKind, self.kind, "control_kind"))
        if self.model is not None:
            validate_model_name(self.model, field="control_model")
        object.__setattr__(self, "scale", _number(self.scale, "control_scale", 0.0, 2.0))
        object.__setattr__(self, "start", _number(self.start, "control_start", 0.0, 1.0))
        object.__setattr__(self, "end", _number(self.end, "control_end", 0.0, 1.0))
        if self.start >= self.end:
            raise InvalidParameters(
                f"A ControlNet unit acts from control_start to control_end; {self.start:g} is not before {self.end:g}.",
                code="invalid_control_end",
                field="control_end",
            )

    @classmethod
    def of(cls, value: Any) -> ControlSpec:
        """From a ControlSpec or a mapping of its fields."""
        if isinstance(value, ControlSpec):
            return value
        if isinstance(value, dict):
            unknown = set(value) - set(cls.__dataclass_fields__)
            if unknown:
                raise InvalidParameters(
                    f"A ControlNet unit has no field {sorted(unknown)[0]!r}.", code="invalid_controls", field="controls"
                )
            return cls(**value)
        raise InvalidParameters(
            f"A ControlNet unit is an object with an image, got {value!r}.", code="invalid_controls", field="controls"
        )


class OutpaintFill(StrEnum):
    COPY = "copy"
    REFLECT = "reflect"


@dataclass(frozen=True)
class OutpaintSpec:
    """Pixels to add on each side before the new border is inpainted."""

    left: int = 0
    right: int = 0
    up: int = 0
    down: int = 0
    fill: OutpaintFill = OutpaintFill.COPY

    def __post_init__(self) -> None:
        for side in ("left", "right", "up", "down"):
            value = getattr(self, side)
            if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value <= MAX_EXPAND:
                raise InvalidParameters(
                    f"outpaint {side} must be 0-{MAX_EXPAND} pixels, got {value!r}.",
                    code="invalid_outpaint",
                    field="outpaint",
                )
        if not (self.left or self.right or self.up or self.down):
            raise InvalidParameters(
                "outpaint needs at least one side to expand.", code="invalid_outpaint", field="outpaint"
            )
        object.__setattr__(self, "fill", parse_enum(OutpaintFill, self.fill, "outpaint_fill"))

    @classmethod
    def parse(cls, text: str, fill: str = "copy") -> OutpaintSpec:
        """``"l,r,u,d"`` in pixels, e.g. ``"128,128,0,0"``."""
        parts = [p.strip() for p in text.split(",")]
        if len(parts) != 4 or not all(p.isdigit() for p in parts):
            raise InvalidParameters(
                f"outpaint {text!r} is not LEFT,RIGHT,UP,DOWN pixels.", code="invalid_outpaint", field="outpaint"
            )
        left, right, up, down = (int(p) for p in parts)
        return cls(left, right, up, down, parse_enum(OutpaintFill, fill, "outpaint_fill"))


class HiresUpscaler(StrEnum):
    """How the first pass is enlarged before the second (A1111's ``hr_upscaler``): the latents, bilinearly or
    by nearest neighbour, or the decoded image by Lanczos or nearest neighbour."""

    LATENT = "latent"
    LATENT_NEAREST = "latent-nearest"
    LANCZOS = "lanczos"
    NEAREST = "nearest"

    @property
    def in_latent_space(self) -> bool:
        return self in (HiresUpscaler.LATENT, HiresUpscaler.LATENT_NEAREST)

    @classmethod
    def parse(cls, value: Any) -> HiresUpscaler:
        """Atelier's names and A1111's (``Latent``, ``Latent (nearest)``, ``Lanczos``, ``Nearest``)."""
        text = str(value).strip().lower().replace(" (nearest)", "-nearest").replace(" ", "-")
        return parse_enum(cls, text, "hr_upscaler")  # type: ignore[no-any-return]


MAX_HIRES_SCALE = 4.0


@dataclass(frozen=True)
class HiresSpec:
    """A1111's hires fix: generate, enlarge ``scale`` times (or to ``width`` x ``height``), then denoise the
    enlarged picture again with ``denoise`` strength for ``steps`` steps (0: the first pass's)."""

    scale: float = 2.0
    upscaler: HiresUpscaler = HiresUpscaler.LATENT
    steps: int = 0
    denoise: float = 0.7
    width: int = 0
    height: int = 0

    def __post_init__(self) -> None:
        object.__setattr__(self, "scale", _number(self.scale, "hr_scale", 1.0, MAX_HIRES_SCALE))
        object.__setattr__(self, "upscaler", HiresUpscaler.parse(self.upscaler))
        object.__setattr__(self, "denoise", _number(self.denoise, "denoising_strength", 0.01, 1.0))
        for name, high in (("steps", 150), ("width", 2048), ("height", 2048)):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value <= high:
                field = {"steps": "hr_second_pass_steps", "width": "hr_resize_x", "height": "hr_resize_y"}[name]
                raise InvalidParameters(
                    f"{field} must be an integer from 0 to {high}, got {value!r}.", code=f"invalid_{field}", field=field
                )
        if self.scale == 1.0 and not (self.width or self.height):
            raise InvalidParameters(
                "Hires fix needs hr_scale above 1 or a target size (hr_resize_x, hr_resize_y).",
                code="invalid_hr_scale",
                field="hr_scale",
            )

    def target(self, width: int, height: int) -> tuple[int, int]:
        """The second pass's size for a first pass of ``width`` x ``height``: the explicit size (one side given:
        the other keeps the aspect ratio), else ``scale`` times, each side rounded down to a multiple of 8."""
        if self.width or self.height:
            w = self.width or round(self.height * width / height)
            h = self.height or round(self.width * height / width)
        else:
            w, h = round(width * self.scale), round(height * self.scale)
        return w - w % 8, h - h % 8
