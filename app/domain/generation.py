"""Generation parameters: a validated value object.

Limits follow what Stable-Diffusion servers accept (A1111: steps up to 150,
sizes that are multiples of 8); every violation raises ``InvalidParameters``
with a stable ``code`` and the offending ``field``.
"""

from __future__ import annotations

import re
import secrets
from dataclasses import asdict, dataclass, replace
from typing import Any

from app.domain.errors import InvalidParameters

MAX_PROMPT_CHARS = 4000
MIN_SIZE, MAX_SIZE = 64, 2048
MAX_PIXELS = 2048 * 2048
MAX_STEPS = 150
MAX_IMAGES = 8
MAX_GUIDANCE = 30.0
MAX_SEED = 2**63 - 1
MODEL_NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$")

# Canonical scheduler names (A1111 spelling). Aliases are matched after
# lower-casing and dropping spaces, '_', '-', '+' and '.': "euler_a", "DPM++ 2M Karras",
# "dpmpp_2m_karras" all work.
SCHEDULERS = (
    "Euler a",
    "Euler",
    "Heun",
    "DPM++ 2M",
    "DPM++ 2M Karras",
    "DDIM",
    "DDPM",
    "PNDM",
    "UniPC",
)


def _scheduler_key(name: str) -> str:
    key = re.sub(r"[\s_\-+.]", "", name.lower())
    return key.replace("dpmpp", "dpm")


_SCHEDULER_KEYS = {_scheduler_key(name): name for name in SCHEDULERS}


def canonical_scheduler(name: str) -> str:
    """Return the canonical spelling of a scheduler name or raise ``InvalidParameters``."""
    canonical = _SCHEDULER_KEYS.get(_scheduler_key(name))
    if canonical is None:
        raise InvalidParameters(
            f"Unknown scheduler {name!r}; choose one of: {', '.join(SCHEDULERS)}.",
            code="unknown_scheduler",
            field="scheduler",
        )
    return canonical


def validate_model_name(name: str) -> str:
    if not isinstance(name, str) or not MODEL_NAME_RE.match(name):
        raise InvalidParameters(
            "A model name has 1-64 characters: letters, digits, '.', '_' or '-', starting with a letter or digit.",
            code="invalid_model_name",
            field="model",
        )
    return name


def random_seed() -> int:
    """A fresh 63-bit seed (fits a signed 64-bit database column)."""
    return secrets.randbits(63)


def _check_int(value: Any, field: str, low: int, high: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise InvalidParameters(f"{field} must be an integer.", code=f"invalid_{field}", field=field)
    if not low <= value <= high:
        raise InvalidParameters(
            f"{field} must be between {low} and {high}, got {value}.", code=f"invalid_{field}", field=field
        )
    return value


def _check_size(value: int, field: str) -> None:
    _check_int(value, field, MIN_SIZE, MAX_SIZE)
    if value % 8:
        raise InvalidParameters(f"{field} must be a multiple of 8, got {value}.", code=f"invalid_{field}", field=field)


@dataclass(frozen=True)
class GenerationParams:
    """What to generate. ``width``/``height``/``seed``/``scheduler`` may be left open
    (``None``) and are fixed by :meth:`resolved` when a job is submitted."""

    prompt: str
    model: str
    negative_prompt: str = ""
    width: int | None = None
    height: int | None = None
    steps: int = 20
    guidance_scale: float = 7.5
    seed: int | None = None
    num_images: int = 1
    scheduler: str | None = None

    def __post_init__(self) -> None:
        if not isinstance(self.prompt, str) or not self.prompt.strip():
            raise InvalidParameters("The prompt is empty.", code="empty_prompt", field="prompt")
        for field in ("prompt", "negative_prompt"):
            text = getattr(self, field)
            if not isinstance(text, str):
                raise InvalidParameters(f"{field} must be text.", code=f"invalid_{field}", field=field)
            if len(text) > MAX_PROMPT_CHARS:
                raise InvalidParameters(
                    f"{field} has {len(text)} characters; at most {MAX_PROMPT_CHARS} are accepted.",
                    code="prompt_too_long",
                    field=field,
                )
        validate_model_name(self.model)
        if self.width is not None:
            _check_size(self.width, "width")
        if self.height is not None:
            _check_size(self.height, "height")
        if self.width is not None and self.height is not None and self.width * self.height > MAX_PIXELS:
            raise InvalidParameters(
                f"{self.width}x{self.height} is too large; at most {MAX_PIXELS} pixels.",
                code="invalid_size",
                field="width",
            )
        _check_int(self.steps, "steps", 1, MAX_STEPS)
        _check_int(self.num_images, "num_images", 1, MAX_IMAGES)
        if isinstance(self.guidance_scale, bool) or not isinstance(self.guidance_scale, (int, float)):
            raise InvalidParameters(
                "guidance_scale must be a number.", code="invalid_guidance_scale", field="guidance_scale"
            )
        if not 0.0 <= float(self.guidance_scale) <= MAX_GUIDANCE:
            raise InvalidParameters(
                f"guidance_scale must be between 0 and {MAX_GUIDANCE}.",
                code="invalid_guidance_scale",
                field="guidance_scale",
            )
        object.__setattr__(self, "guidance_scale", float(self.guidance_scale))
        if self.seed is not None:
            _check_int(self.seed, "seed", 0, MAX_SEED)
        if self.scheduler is not None:
            object.__setattr__(self, "scheduler", canonical_scheduler(self.scheduler))

    def resolved(self, *, default_size: int, default_scheduler: str | None = None) -> GenerationParams:
        """Fill the open values: the model's native size and a recorded random seed."""
        return replace(
            self,
            width=self.width or default_size,
            height=self.height or default_size,
            seed=random_seed() if self.seed is None else self.seed,
            scheduler=self.scheduler or default_scheduler,
        )

    def image_seeds(self) -> list[int]:
        """Seed of each image: consecutive from the job's seed (as A1111 does), wrapping at 2^63."""
        if self.seed is None:
            raise InvalidParameters("The seed is not resolved yet.", code="unresolved_seed", field="seed")
        return [(self.seed + i) % (MAX_SEED + 1) for i in range(self.num_images)]

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> GenerationParams:
        known = {k: v for k, v in data.items() if k in cls.__dataclass_fields__}
        return cls(**known)


def parse_size(text: str) -> tuple[int, int]:
    """Parse ``"512x768"`` (or a single ``"512"``) into (width, height)."""
    match = re.fullmatch(r"\s*(\d{1,5})\s*(?:[xX*×]\s*(\d{1,5}))?\s*", text)
    if not match:
        raise InvalidParameters(f"Size {text!r} is not WIDTHxHEIGHT, e.g. 512x512.", code="invalid_size", field="size")
    width = int(match.group(1))
    height = int(match.group(2) or match.group(1))
    return width, height


def infotext(params: GenerationParams, seed: int) -> str:
    """The A1111 ``parameters`` text a PNG carries, so other tools can read it back."""
    lines = [params.prompt]
    if params.negative_prompt:
        lines.append(f"Negative prompt: {params.negative_prompt}")
    fields = [
        f"Steps: {params.steps}",
        f"Sampler: {params.scheduler or 'default'}",
        f"CFG scale: {params.guidance_scale:g}",
        f"Seed: {seed}",
        f"Size: {params.width}x{params.height}",
        f"Model: {params.model}",
    ]
    lines.append(", ".join(fields))
    return "\n".join(lines)
