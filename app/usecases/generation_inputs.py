"""Resolving what a request refers to: uploaded images, LoRAs (also ``<lora:name:w>`` in the
prompt), ControlNets. Done once at submission, so the job records exactly what will run,
and again at run time to turn names and ids into registry entries and paths."""

from __future__ import annotations

from dataclasses import replace

from app.domain.errors import ImageNotFound, InvalidParameters
from app.domain.families import Capability, require_mode, unsupported
from app.domain.generation import GenerationParams
from app.domain.models import ModelInfo, ModelKind
from app.domain.prompt_syntax import parse_prompt
from app.domain.specs import ControlKind, LoraSpec
from app.ports.generation import GenerationRequest, ImageStore, InputImage, ModelCatalog


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
    if params.control is not None:
        fields["control_image"] = params.control.image
    found = {field: _input(images, value, field, owner) for field, value in fields.items() if value is not None}
    first = found.get("init_image") or found.get("control_image")
    loras = {lora.name: lora for lora in (LoraSpec(n, w) for n, w in parse_prompt(params.prompt).loras)}
    loras.update({lora.name: lora for lora in params.loras})  # explicit values win over prompt tags
    for name in loras:
        catalog.get(name, ModelKind.LORA)
    if loras and not model.profile.supports(Capability.LORA):
        raise unsupported(model.family, Capability.LORA, "loras")
    control = params.control
    if control is not None:
        if control.model is None and control.kind is ControlKind.NONE:
            raise InvalidParameters(
                "A control image without a preprocessor needs control_model.",
                code="missing_control_model",
                field="control",
            )
        control = replace(control, model=catalog.get(control.model or control.kind.value, ModelKind.CONTROLNET).name)
    prepared = replace(params, loras=tuple(loras.values()), control=control)
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
    fam = model.profile
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


def build_request(params: GenerationParams, catalog: ModelCatalog, images: ImageStore) -> GenerationRequest:
    """Registry entries and local paths for a prepared job."""
    inputs: dict[str, str] = {}
    if params.init_image is not None:
        inputs["init"] = images.input_image(params.init_image).path
    if params.mask_image is not None:
        inputs["mask"] = images.input_image(params.mask_image).path
    controlnet = None
    if params.control is not None:
        inputs["control"] = images.input_image(params.control.image).path
        controlnet = catalog.get(params.control.model or params.control.kind.value, ModelKind.CONTROLNET)
    return GenerationRequest(
        model=catalog.get(params.model, ModelKind.BASE),
        params=params,
        inputs=inputs,
        loras=tuple((catalog.get(lora.name, ModelKind.LORA), lora.weight) for lora in params.loras),
        controlnet=controlnet,
    )
