"""Resolving what a request refers to: uploaded images, LoRAs (also ``<lora:name:w>`` in the
prompt), ControlNets. Done once at submission, so the job records exactly what will run,
and again at run time to turn names and ids into registry entries and paths."""

from __future__ import annotations

from dataclasses import replace

from app.domain.errors import ImageNotFound, InvalidParameters
from app.domain.families import (
    ONE_CONTROLNET_FAMILIES,
    PROFILES,
    Capability,
    Family,
    require_mode,
    require_sampler,
    unsupported,
)
from app.domain.generation import GenerationParams
from app.domain.models import ModelInfo, ModelKind
from app.domain.prompt_syntax import parse_prompt
from app.domain.specs import ControlKind, ControlSpec, LoraSpec
from app.ports.generation import GenerationRequest, ImageStore, InputImage, ModelCatalog
from app.usecases.lora_fit import check_lora_fit


def _input(images: ImageStore, input_id: str, field: str, owner: str | None) -> InputImage:
    try:
        return images.input_image(input_id, owner)
    except ImageNotFound as e:
        raise InvalidParameters(
            f"{field} {input_id} is not an uploaded image; upload it first.", code="unknown_input_image", field=field
        ) from e


def prepare(
    params: GenerationParams, catalog: ModelCatalog, images: ImageStore, owner: str | None = None
) -> GenerationParams:
    """Check every reference and fix the open values (size, seed, LoRA list, ControlNet model). With
    ``owner``, uploaded images must be that owner's."""
    model = catalog.get(params.model, ModelKind.BASE)
    check_capabilities(model, params)
    fields = {"init_image": params.init_image, "mask_image": params.mask_image}
    fields |= {f"controls[{k}].image": unit.image for k, unit in enumerate(params.controls)}
    found = {field: _input(images, value, field, owner) for field, value in fields.items() if value is not None}
    first = found.get("init_image") or found.get("controls[0].image")
    loras = {lora.name: lora for lora in (LoraSpec(n, w) for n, w in parse_prompt(params.prompt).loras)}
    loras.update({lora.name: lora for lora in params.loras})  # explicit values win over prompt tags
    for name in loras:
        catalog.get(name, ModelKind.LORA)
    if loras and not model.profile.supports(Capability.LORA):
        raise unsupported(model.family, Capability.LORA, "loras")
    check_lora_fit(model, [catalog.get(name, ModelKind.LORA) for name in loras])
    if params.refiner is not None:
        check_refiner(model, catalog.get(params.refiner, ModelKind.BASE))
    if params.vae is not None:
        check_vae(model, catalog.get(params.vae, ModelKind.VAE))
    controls = check_controls(model, params.controls, catalog)
    prepared = replace(params, loras=tuple(loras.values()), controls=controls)
    return prepared.resolved(
        default_size=model.default_size,
        input_size=(first.width, first.height) if first else None,
        default_guidance=model.recommended_guidance,
        default_steps=model.recommended_steps,
    )


def check_capabilities(model: ModelInfo, params: GenerationParams) -> None:
    """Refuse what the model's family cannot do (a mode, a negative prompt, A1111 weights), naming both."""
    assert params.mode is not None
    require_mode(model.family, params.mode)
    require_sampler(model.family, params.scheduler)
    fam = model.profile
    if params.hires is not None:
        if not fam.supports(Capability.HIRES):
            raise unsupported(model.family, Capability.HIRES, "hires", "It needs text-to-image and img2img.")
        if params.hires.upscaler.in_latent_space and not fam.supports(Capability.LATENT_UPSCALE):
            raise unsupported(
                model.family, Capability.LATENT_UPSCALE, "hr_upscaler", "Use the Lanczos or Nearest upscaler."
            )
    if params.clip_skip > 1 and not fam.supports(Capability.CLIP_SKIP):
        raise unsupported(model.family, Capability.CLIP_SKIP, "clip_skip", "Its text encoder is not CLIP; use 1.")
    if params.negative_prompt.strip() and not fam.supports(Capability.NEGATIVE_PROMPT):
        raise unsupported(model.family, Capability.NEGATIVE_PROMPT, "negative_prompt", "Leave it empty.")
    if not fam.supports(Capability.PROMPT_WEIGHTING):
        parsed = parse_prompt(params.prompt)
        if any(fragment.is_break or fragment.weight != 1.0 for fragment in parsed.fragments):
            raise unsupported(
                model.family,
                Capability.PROMPT_WEIGHTING,
                "prompt",
                "Write the prompt without (text:1.2), [text] or BREAK; escape literal brackets as \\( \\).",
            )


def check_controls(
    model: ModelInfo, controls: tuple[ControlSpec, ...], catalog: ModelCatalog
) -> tuple[ControlSpec, ...]:
    """Each unit with its ControlNet named; every ControlNet made for the base model's family."""
    named: list[ControlSpec] = []
    for k, unit in enumerate(controls):
        field = f"controls[{k}].model"
        if unit.model is None and unit.kind is ControlKind.NONE:
            raise InvalidParameters(
                "A control image without a preprocessor needs control_model.", code="missing_control_model", field=field
            )
        controlnet = catalog.get(unit.model or unit.kind.value, ModelKind.CONTROLNET)
        if controlnet.family is not model.family:
            raise InvalidParameters(
                f"The ControlNet {controlnet.name!r} was made for {controlnet.profile.label} models; {model.name!r} "
                f"is a {model.profile.label} model. Use a ControlNet made for it.",
                code="controlnet_family_mismatch",
                field=field,
            )
        named.append(replace(unit, model=controlnet.name))
    if len({unit.model for unit in named}) > 1 and model.family in ONE_CONTROLNET_FAMILIES:
        raise InvalidParameters(
            f"{model.profile.label} models take several control images through one (union) ControlNet; these units "
            f"name {', '.join(sorted(str(unit.model) for unit in named))}. Use the same ControlNet in every unit.",
            code="unsupported_capability",
            field="controls",
        )
    return tuple(named)


def check_vae(model: ModelInfo, vae: ModelInfo) -> None:
    """A VAE replaces the model's own when it works in the same latent space (class, channels, downscale)."""
    if model.latent is None or vae.latent is None or model.latent == vae.latent:
        return
    raise InvalidParameters(
        f"The VAE {vae.name!r} ({_latent_words(vae.latent)}) does not fit {model.name!r}, a {model.profile.label} "
        f"model whose VAE is {_latent_words(model.latent)}. Use a VAE made for it.",
        code="vae_mismatch",
        field="vae",
    )


def _latent_words(latent: str) -> str:
    kind, _, rest = latent.partition(":")
    channels, _, factor = rest.partition(":")
    return f"{kind}, {channels} latent channel{'' if channels == '1' else 's'}, {factor}x downscale"


def check_refiner(model: ModelInfo, refiner: ModelInfo) -> None:
    """A refiner is an SDXL refiner model, and it continues what an SDXL base model started."""
    wanted = PROFILES[Family.SDXL_REFINER].label
    if refiner.family is not Family.SDXL_REFINER:
        raise InvalidParameters(
            f"The refiner {refiner.name!r} is a {refiner.profile.label} model; a refiner must be a {wanted} model.",
            code="invalid_refiner",
            field="refiner",
        )
    if model.family is not Family.SDXL:
        raise InvalidParameters(
            f"A {wanted} continues a {PROFILES[Family.SDXL].label} base model; {model.name!r} is a "
            f"{model.profile.label} model.",
            code="invalid_refiner",
            field="refiner",
        )


def build_request(params: GenerationParams, catalog: ModelCatalog, images: ImageStore) -> GenerationRequest:
    """Registry entries and local paths for a prepared job."""
    inputs: dict[str, str] = {}
    if params.init_image is not None:
        inputs["init"] = images.input_image(params.init_image).path
    if params.mask_image is not None:
        inputs["mask"] = images.input_image(params.mask_image).path
    for k, unit in enumerate(params.controls):
        inputs[f"control{k}"] = images.input_image(unit.image).path
    controlnets = tuple(catalog.get(unit.model or unit.kind.value, ModelKind.CONTROLNET) for unit in params.controls)
    return GenerationRequest(
        model=catalog.get(params.model, ModelKind.BASE),
        params=params,
        inputs=inputs,
        loras=tuple((catalog.get(lora.name, ModelKind.LORA), lora.weight) for lora in params.loras),
        controlnets=controlnets,
        refiner=catalog.get(params.refiner, ModelKind.BASE) if params.refiner is not None else None,
        vae=catalog.get(params.vae, ModelKind.VAE) if params.vae is not None else None,
    )
