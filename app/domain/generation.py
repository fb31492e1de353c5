"""Generation parameters: a validated value object, with the A1111 conventions it is read and written in
(scheduler names, ``WIDTHxHEIGHT`` sizes, the ``parameters`` infotext) and the key of jobs that may share a
pipeline call.

Limits follow what Stable-Diffusion servers accept (A1111: steps up to 150,
sizes that are multiples of 8); every violation raises ``InvalidParameters``
with a stable ``code`` and the offending ``field``.
"""

from __future__ import annotations

import json
import re
import secrets
from dataclasses import asdict, dataclass, replace
from enum import StrEnum
from typing import Any

from app.domain.errors import InvalidParameters
from app.domain.specs import (
    MAX_CONTROLS,
    MAX_LORAS,
    ControlSpec,
    HiresSpec,
    HiresUpscaler,
    LoraSpec,
    Mode,
    OutpaintSpec,
    ResizeMode,
    parse_enum,
    validate_input_id,
    validate_model_name,
)
from app.domain.text import require_text

MAX_CALLBACK_URL = 2048
MAX_PROMPT_CHARS = 4000
MIN_SIZE, MAX_SIZE = 64, 2048
MAX_PIXELS = 2048 * 2048
MAX_STEPS = 150
MAX_IMAGES = 8
MAX_GUIDANCE = 30.0
DEFAULT_GUIDANCE = 7.5  # A1111's, for a model that recommends none
DEFAULT_STEPS = 20  # A1111's
# A1111's names of the hires upscalers (its infotext and /sdapi/v1/upscalers, latent_upscale_modes).
A1111_UPSCALERS = {
    HiresUpscaler.LATENT: "Latent",
    HiresUpscaler.LATENT_NEAREST: "Latent (nearest)",
    HiresUpscaler.LANCZOS: "Lanczos",
    HiresUpscaler.NEAREST: "Nearest",
}
MAX_CLIP_SKIP = 12
MAX_SEED = 2**63 - 1
MIN_REFINER_SWITCH, MAX_REFINER_SWITCH = 0.01, 0.99  # the base and the refiner each get a share of the schedule

# Canonical scheduler names (A1111 spelling). Aliases are matched after
# lower-casing and dropping spaces, '_', '-', '+' and '.': "euler_a", "DPM++ 2M Karras",
# "dpmpp_2m_karras" all work.
SCHEDULERS = (
    "Euler a",
    "Euler",
    "Heun",
    "DPM++ 2M",
    "DPM++ 2M Karras",
    "DPM++ 2M SDE",
    "DPM++ 2M SDE Karras",
    "DPM++ SDE",
    "DPM++ SDE Karras",
    "LCM",
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


def validate_size(width: int | None, height: int | None) -> None:
    """Sizes the pipelines accept: each given side MIN_SIZE-MAX_SIZE and a multiple of 8, at most MAX_PIXELS
    together. ``None`` leaves a side open (it follows the input image or the model)."""
    if width is not None:
        _check_size(width, "width")
    if height is not None:
        _check_size(height, "height")
    if width is not None and height is not None and width * height > MAX_PIXELS:
        raise InvalidParameters(
            f"{width}x{height} is too large; at most {MAX_PIXELS} pixels.", code="invalid_size", field="width"
        )


def size_from_input(width: int, height: int) -> tuple[int, int]:
    """The size an input image gives a request that leaves it open: each side rounded down to a multiple
    of 8 and kept within MIN_SIZE-MAX_SIZE (what :meth:`GenerationParams.resolved` does)."""
    return _fit(width), _fit(height)


@dataclass(frozen=True)
class GenerationParams:
    """What to generate. ``width``/``height``/``seed``/``mode`` may be left open (``None``) and
    are fixed by :meth:`resolved` when a job is submitted. ``mode`` is inferred from the inputs
    when omitted: a control image means ControlNet, ``outpaint`` outpainting, a mask inpainting,
    an init image image-to-image, nothing text-to-image."""

    prompt: str
    model: str
    negative_prompt: str = ""
    width: int | None = None
    height: int | None = None
    steps: int | None = None  # None: the model's recommended number (its family's), fixed by resolved()
    guidance_scale: float | None = None  # None: the model's recommended scale, else DEFAULT_GUIDANCE
    seed: int | None = None
    num_images: int = 1
    scheduler: str | None = None
    mode: Mode | None = None
    init_image: str | None = None
    mask_image: str | None = None
    strength: float = 0.75
    resize_mode: ResizeMode = ResizeMode.STRETCH
    outpaint: OutpaintSpec | None = None
    controls: tuple[ControlSpec, ...] = ()  # ControlNet units, applied together (A1111's multi-ControlNet)
    loras: tuple[LoraSpec, ...] = ()
    refiner: str | None = None  # a registered SDXL refiner that runs the last steps of text-to-image
    refiner_switch: float = 0.8  # the fraction of the steps the base model runs first (A1111's refiner_switch_at)
    hires: HiresSpec | None = None  # A1111's hires fix (text-to-image only)
    clip_skip: int = 1  # A1111's: 1 reads the CLIP text encoder's last layer, 2 the one before, ...
    vae: str | None = None  # a registered VAE that replaces the model's own (A1111's sd_vae); None: the model's
    callback_url: str | None = None  # called once when the job ends (allow-listed hosts, signed; docs/deployment.md)

    def __post_init__(self) -> None:
        self._check_text()
        validate_model_name(self.model)
        validate_size(self.width, self.height)
        if self.steps is not None:
            _check_int(self.steps, "steps", 1, MAX_STEPS)
        _check_int(self.num_images, "num_images", 1, MAX_IMAGES)
        if self.guidance_scale is not None:
            object.__setattr__(
                self, "guidance_scale", _check_float(self.guidance_scale, "guidance_scale", 0.0, MAX_GUIDANCE)
            )
        if self.seed is not None:
            _check_int(self.seed, "seed", 0, MAX_SEED)
        if self.scheduler is not None:
            object.__setattr__(self, "scheduler", canonical_scheduler(self.scheduler))
        self._check_inputs()
        self._check_refiner()
        _check_int(self.clip_skip, "clip_skip", 1, MAX_CLIP_SKIP)
        if self.vae is not None:
            validate_model_name(self.vae, "vae")
        if self.callback_url is not None and (
            not isinstance(self.callback_url, str)
            or not self.callback_url.startswith(("http://", "https://"))
            or len(self.callback_url) > MAX_CALLBACK_URL
        ):
            raise InvalidParameters(
                f"callback_url must be an http(s) URL of at most {MAX_CALLBACK_URL} characters.",
                code="invalid_callback_url",
                field="callback_url",
            )
        if self.hires is not None:
            if self.mode is not Mode.TXT2IMG:
                raise InvalidParameters(
                    f"Hires fix is part of text-to-image; mode {self.mode} takes no hires settings.",
                    code="invalid_hires",
                    field="hires",
                )
            if self.width is not None and self.height is not None:
                width, height = self.hires.target(self.width, self.height)
                try:
                    validate_size(width, height)
                except InvalidParameters as e:
                    raise InvalidParameters(
                        f"Hires fix would make {width}x{height} images: {e} Lower hr_scale or the size.",
                        code="invalid_hires",
                        field="hires",
                    ) from e

    @property
    def output_size(self) -> tuple[int | None, int | None]:
        """The size of the images the job returns: the second pass's with hires fix."""
        if self.hires is not None and self.width is not None and self.height is not None:
            return self.hires.target(self.width, self.height)
        return self.width, self.height

    def _check_refiner(self) -> None:
        switch = _check_float(self.refiner_switch, "refiner_switch", MIN_REFINER_SWITCH, MAX_REFINER_SWITCH)
        object.__setattr__(self, "refiner_switch", switch)
        if self.refiner is None:
            return
        validate_model_name(self.refiner, "refiner")
        if self.mode is not Mode.TXT2IMG:
            raise InvalidParameters(
                f"A refiner continues a text-to-image run; mode {self.mode} has none. Leave refiner out.",
                code="refiner_needs_txt2img",
                field="refiner",
            )
        if self.hires is not None:
            raise InvalidParameters(
                "A refiner and hires fix cannot be combined yet; leave one of them out.",
                code="invalid_refiner",
                field="refiner",
            )

    def _check_text(self) -> None:
        if not isinstance(self.prompt, str) or not self.prompt.strip():
            raise InvalidParameters("The prompt is empty.", code="empty_prompt", field="prompt")
        for field in ("prompt", "negative_prompt"):
            text = getattr(self, field)
            if not isinstance(text, str):
                raise InvalidParameters(f"{field} must be text.", code=f"invalid_{field}", field=field)
            require_text(text, field)
            if len(text) > MAX_PROMPT_CHARS:
                raise InvalidParameters(
                    f"{field} has {len(text)} characters; at most {MAX_PROMPT_CHARS} are accepted.",
                    code="prompt_too_long",
                    field=field,
                )

    def _check_inputs(self) -> None:
        for field in ("init_image", "mask_image"):
            if getattr(self, field) is not None:
                validate_input_id(getattr(self, field), field)
        object.__setattr__(self, "strength", _check_float(self.strength, "strength", 0.01, 1.0))
        object.__setattr__(self, "resize_mode", parse_enum(ResizeMode, self.resize_mode, "resize_mode"))
        if not isinstance(self.loras, tuple):
            object.__setattr__(self, "loras", tuple(self.loras))
        if not isinstance(self.controls, (list, tuple)):
            raise InvalidParameters(
                "controls must be a list of ControlNet units.", code="invalid_controls", field="controls"
            )
        object.__setattr__(self, "controls", tuple(ControlSpec.of(unit) for unit in self.controls))
        if len(self.controls) > MAX_CONTROLS:
            raise InvalidParameters(
                f"At most {MAX_CONTROLS} ControlNet units per request; got {len(self.controls)}.",
                code="invalid_controls",
                field="controls",
            )
        if len(self.loras) > MAX_LORAS or len({lora.name for lora in self.loras}) != len(self.loras):
            raise InvalidParameters(
                f"At most {MAX_LORAS} different LoRAs per request.", code="invalid_loras", field="loras"
            )
        mode = self._inferred_mode() if self.mode is None else parse_enum(Mode, self.mode, "mode")
        object.__setattr__(self, "mode", mode)
        needs = {
            Mode.IMG2IMG: ("init_image",),
            Mode.INPAINT: ("init_image", "mask_image"),
            Mode.OUTPAINT: ("init_image", "outpaint"),
            Mode.CONTROLNET: ("controls",),
            Mode.INSTRUCT: ("init_image",),
        }.get(mode, ())
        for field in needs:
            if not getattr(self, field):
                raise InvalidParameters(f"Mode {mode.value} needs {field}.", code=f"missing_{field}", field=field)

    def _inferred_mode(self) -> Mode:
        if self.controls:
            return Mode.CONTROLNET
        if self.outpaint is not None:
            return Mode.OUTPAINT
        if self.mask_image is not None:
            return Mode.INPAINT
        if self.init_image is not None:
            return Mode.IMG2IMG
        return Mode.TXT2IMG

    @property
    def input_ids(self) -> list[str]:
        """Every uploaded image the request refers to."""
        ids = [self.init_image, self.mask_image, *(unit.image for unit in self.controls)]
        return list(dict.fromkeys(i for i in ids if i is not None))

    def resolved(
        self,
        *,
        default_size: int,
        input_size: tuple[int, int] | None = None,
        default_guidance: float | None = None,
        default_steps: int = DEFAULT_STEPS,
    ) -> GenerationParams:
        """Fill the open values and record a random seed. The size defaults to the input image's
        (grown by the outpaint borders, rounded down to a multiple of 8) or the model's native size;
        the guidance scale to the model's recommended one, else A1111's 7.5; the steps to the model's."""
        width, height = default_size, default_size
        if input_size is not None:
            width, height = input_size
            if self.outpaint is not None and self.mode is Mode.OUTPAINT:
                width += self.outpaint.left + self.outpaint.right
                height += self.outpaint.up + self.outpaint.down
            width, height = size_from_input(width, height)
        return replace(
            self,
            width=self.width or width,
            height=self.height or height,
            seed=random_seed() if self.seed is None else self.seed,
            steps=default_steps if self.steps is None else self.steps,
            guidance_scale=self.guidance_scale
            if self.guidance_scale is not None
            else (default_guidance if default_guidance is not None else DEFAULT_GUIDANCE),
        )

    @property
    def step_count(self) -> int:
        """The resolved number of denoising steps."""
        if self.steps is None:
            raise InvalidParameters("The steps are not resolved yet.", code="unresolved_steps", field="steps")
        return self.steps

    def image_seeds(self) -> list[int]:
        """Seed of each image: consecutive from the job's seed (as A1111 does), wrapping at 2^63."""
        if self.seed is None:
            raise InvalidParameters("The seed is not resolved yet.", code="unresolved_seed", field="seed")
        return [(self.seed + i) % (MAX_SEED + 1) for i in range(self.num_images)]

    def to_dict(self) -> dict[str, Any]:
        """JSON-native: enums as their values, tuples as lists."""
        return _plain(asdict(self))  # type: ignore[no-any-return]

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> GenerationParams:
        """Inverse of :meth:`to_dict` (also for JSON); unknown keys are ignored."""
        known = {k: v for k, v in data.items() if k in cls.__dataclass_fields__}
        outpaint = known.get("outpaint")
        if isinstance(outpaint, dict):
            known["outpaint"] = OutpaintSpec(**outpaint)
        elif isinstance(outpaint, str):
            known["outpaint"] = OutpaintSpec.parse(outpaint)
        legacy = data.get("control")  # jobs stored before several units: one ``control`` object
        if isinstance(legacy, dict) and not known.get("controls"):
            known["controls"] = [legacy]
        known["controls"] = tuple(ControlSpec.of(unit) for unit in known.get("controls") or ())
        if isinstance(known.get("hires"), dict):
            known["hires"] = HiresSpec(**known["hires"])
        known["loras"] = tuple(LoraSpec.of(lora) for lora in known.get("loras") or ())
        return cls(**known)


def _plain(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    if isinstance(value, StrEnum):
        return value.value
    return value


def _fit(value: int) -> int:
    return max(MIN_SIZE, min(MAX_SIZE, value - value % 8))


def _check_float(value: Any, field: str, low: float, high: float) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise InvalidParameters(f"{field} must be a number.", code=f"invalid_{field}", field=field)
    if not low <= float(value) <= high:
        raise InvalidParameters(f"{field} must be between {low:g} and {high:g}.", code=f"invalid_{field}", field=field)
    return float(value)


def parse_size(text: str) -> tuple[int, int]:
    """Parse ``"512x768"`` (or a single ``"512"``) into (width, height)."""
    match = re.fullmatch(r"\s*(\d{1,5})\s*(?:[xX*×]\s*(\d{1,5}))?\s*", text)
    if not match:
        raise InvalidParameters(f"Size {text!r} is not WIDTHxHEIGHT, e.g. 512x512.", code="invalid_size", field="size")
    width = int(match.group(1))
    height = int(match.group(2) or match.group(1))
    return width, height


def batch_key(params: GenerationParams) -> str | None:
    """Jobs with equal keys can share one pipeline call: text-to-image with the same model, size,
    steps, scheduler, guidance, LoRA set, clip skip and hires settings (prompts, negative prompts, seeds and
    image counts may differ). Other modes carry per-job input images and run alone."""
    if params.mode is not Mode.TXT2IMG:
        return None
    loras = sorted((lora.name, lora.weight) for lora in params.loras)
    fields = [params.model, params.width, params.height, params.steps, params.scheduler, params.guidance_scale, loras]
    fields += [params.clip_skip, _plain(asdict(params.hires)) if params.hires else None]
    if params.refiner is not None:  # jobs of one call share the refiner and the switch
        fields += [params.refiner, params.refiner_switch]
    if params.vae is not None:
        fields.append(params.vae)
    return json.dumps(fields, separators=(",", ":"))


_LORA_TAG = re.compile(r"<lora:(?P<name>[\w.\-]+)(?::\s*(?P<weight>[+-]?(?:\d+(?:\.\d*)?|\.\d+))\s*)?>")
SHORT_HASH = 12  # A1111's short hash: the first 12 hex digits of the file's sha256


def _weight(value: float) -> str:
    return f"{value:.4f}".rstrip("0").rstrip(".")


def _prompt_line(prompt: str, loras: tuple[LoraSpec, ...]) -> str:
    """The prompt as A1111 writes it: each LoRA the job used as a ``<lora:name:weight>`` tag, with the weight that
    was applied (an explicit LoRA overrides a tag's weight; a LoRA given as a list gets its tag appended)."""
    weights = {lora.name: lora.weight for lora in loras}

    def used(tag: re.Match[str]) -> str:
        name = tag["name"]
        if name in weights and float(tag["weight"] or 1.0) != weights[name]:
            return f"<lora:{name}:{_weight(weights[name])}>"
        return tag[0]

    tagged = {tag["name"] for tag in _LORA_TAG.finditer(prompt)}
    missing = " ".join(f"<lora:{lora.name}:{_weight(lora.weight)}>" for lora in loras if lora.name not in tagged)
    text = _LORA_TAG.sub(used, prompt)
    return f"{text} {missing}" if missing else text


def _quoted(value: str) -> str:
    """A1111 quotes an infotext value holding a comma, a colon or a line break (as JSON)."""
    return json.dumps(value, ensure_ascii=False) if any(c in value for c in ",:\n") else value


def infotext(
    params: GenerationParams,
    seed: int,
    *,
    sampler: str | None = None,
    lora_hashes: dict[str, str] | None = None,
) -> str:
    """The A1111 ``parameters`` text a PNG carries, so other tools can read it back.

    ``Sampler`` is the requested scheduler, else ``sampler``: the A1111 name of the model's own scheduler, which
    only the image generator knows; with neither, the field is left out rather than naming a sampler that did not
    run. ``lora_hashes`` maps LoRA names to the sha256 of their files; A1111 writes ``Lora hashes: "name: <first 12
    hex digits>"``, and a LoRA without a known hash is left out of it, as A1111 does (its reader splits each entry
    at the colon), while its ``<lora:name:weight>`` tag still names it."""
    lines = [_prompt_line(params.prompt, params.loras)]
    if params.negative_prompt:
        lines.append(f"Negative prompt: {params.negative_prompt}")
    fields = [f"Steps: {params.step_count}"]
    if params.scheduler or sampler:
        fields.append(f"Sampler: {params.scheduler or sampler}")
    fields += [
        f"CFG scale: {DEFAULT_GUIDANCE if params.guidance_scale is None else params.guidance_scale:g}",
        f"Seed: {seed}",
        f"Size: {params.width}x{params.height}",
        f"Model: {params.model}",
    ]
    if params.mode is not Mode.TXT2IMG:
        fields.append(f"Mode: {params.mode}")
    if params.mode in (Mode.IMG2IMG, Mode.INPAINT, Mode.OUTPAINT):
        fields.append(f"Denoising strength: {params.strength:g}")
    known = lora_hashes or {}
    hashes = [f"{lora.name}: {known[lora.name][:SHORT_HASH]}" for lora in params.loras if known.get(lora.name)]
    if hashes:
        fields.append(f"Lora hashes: {_quoted(', '.join(hashes))}")
    for k, unit in enumerate(params.controls):  # as A1111's ControlNet extension writes its units
        described = f"Module: {unit.kind}, Model: {unit.model or unit.kind}, Weight: {unit.scale:g}"
        described += f", Guidance Start: {unit.start:g}, Guidance End: {unit.end:g}"
        fields.append(f"ControlNet {k}: {_quoted(described)}")
    if params.refiner is not None:  # as A1111 writes them
        fields += [f"Refiner: {params.refiner}", f"Refiner switch at: {params.refiner_switch:g}"]
    if params.clip_skip > 1:
        fields.append(f"Clip skip: {params.clip_skip}")
    if params.vae is not None:
        fields.append(f"VAE: {params.vae}")
    if params.hires is not None:
        hires = params.hires
        fields.append(f"Denoising strength: {hires.denoise:g}")
        if hires.width or hires.height:
            fields.append(f"Hires resize: {hires.width}x{hires.height}")
        else:
            fields.append(f"Hires upscale: {hires.scale:g}")
        if hires.steps:
            fields.append(f"Hires steps: {hires.steps}")
        fields.append(f"Hires upscaler: {A1111_UPSCALERS[hires.upscaler]}")
    lines.append(", ".join(fields))
    return "\n".join(lines)
