"""One pipeline class and its mode-specific arguments per model family and generation mode.

Every mode shares the loaded model's weights: the pipeline for a request is built from the
base pipeline's components (plus the ControlNets for ``controlnet``), so switching modes loads
nothing. Input images are fitted to the requested size here (``resize_mode``), masks are
binarised, outpainting canvases are filled (``copy``/``reflect``) and their new border masked.

``families.PIPELINES`` is the adapter's half of the capability table in ``app.domain.families``.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable
from typing import Any

import diffusers
from PIL import Image

from app.adapters.diffusers.families import PIPELINES
from app.adapters.imaging.control import conditioning_map
from app.adapters.imaging.ops import normalize_mask, outpaint_canvas, resize_for, to_rgb
from app.domain.families import Family
from app.domain.specs import Mode
from app.ports.generation import DepthEstimator, GenerationRequest

_lib: Any = diffusers


def loading_class(family: Family) -> Any:
    """The pipeline class a family's folder is loaded with (its first mode's)."""
    return getattr(_lib, next(iter(PIPELINES[family].values())))


def _open(path: str) -> Image.Image:
    with Image.open(path) as picture:
        picture.load()
        return picture.copy()


def control_map(request: GenerationRequest, depth: DepthEstimator, unit: int = 0) -> Image.Image:
    """The conditioning image a ControlNet unit sees: its upload fitted to the size, then preprocessed."""
    params, control = request.params, request.params.controls[unit]
    assert params.width and params.height
    image = _open(request.inputs[f"control{unit}"])
    return conditioning_map(image, control.kind, params.width, params.height, params.resize_mode, depth)


def control_arguments(request: GenerationRequest, depth: DepthEstimator) -> dict[str, Any]:
    """The ControlNet units' maps, scales and step ranges: single values for one unit, lists for several (as
    diffusers' multi-ControlNet takes them). SD's pipelines call the map ``image``, the others ``control_image``."""
    units = request.params.controls
    family = request.model.family
    accepted = parameters(getattr(_lib, PIPELINES[family][Mode.CONTROLNET]), "__call__")
    values: dict[str, list[Any]] = {
        "image" if "image" in accepted else "control_image": [
            control_map(request, depth, k) for k in range(len(units))
        ],
        "controlnet_conditioning_scale": [unit.scale for unit in units],
        "control_guidance_start": [unit.start for unit in units],
        "control_guidance_end": [unit.end for unit in units],
    }
    return {name: value[0] if len(units) == 1 else value for name, value in values.items()}


def mode_arguments(request: GenerationRequest, depth: DepthEstimator) -> dict[str, Any]:
    """The pipeline-call arguments specific to the request's mode."""
    params = request.params
    width, height = params.width, params.height
    assert width is not None and height is not None
    fit: Callable[[Image.Image], Image.Image] = lambda image: resize_for(  # noqa: E731
        to_rgb(image), width, height, params.resize_mode.value
    )
    if params.mode is Mode.IMG2IMG:
        return {"image": fit(_open(request.inputs["init"])), "strength": params.strength}
    if params.mode is Mode.INSTRUCT:
        return {"image": fit(_open(request.inputs["init"]))}
    if params.mode is Mode.INPAINT:
        mask = normalize_mask(_open(request.inputs["mask"]), width, height)
        return {"image": fit(_open(request.inputs["init"])), "mask_image": mask, "strength": params.strength}
    if params.mode is Mode.OUTPAINT:
        spec = params.outpaint
        assert spec is not None
        canvas, mask = outpaint_canvas(
            to_rgb(_open(request.inputs["init"])), spec.left, spec.right, spec.up, spec.down, spec.fill.value
        )
        if canvas.size != (width, height):
            canvas = canvas.resize((width, height), Image.Resampling.LANCZOS)
            mask = mask.resize((width, height), Image.Resampling.NEAREST)
        return {"image": canvas, "mask_image": mask, "strength": params.strength}
    if params.mode is Mode.CONTROLNET:
        return control_arguments(request, depth)
    return {}


_PARAMETERS: dict[tuple[Any, str], frozenset[str]] = {}


def parameters(cls: Any, method: str = "__init__") -> frozenset[str]:
    """The keyword parameters of a pipeline class's constructor (or another method), read once per class."""
    found = _PARAMETERS.get((cls, method))
    if found is None:
        found = _PARAMETERS[(cls, method)] = frozenset(inspect.signature(getattr(cls, method)).parameters)
    return found


def pipeline_for(
    family: Family,
    mode: Mode,
    components: dict[str, Any],
    scheduler: Any,
    controlnet: Any = None,
    config: dict[str, Any] | None = None,
) -> Any:
    """A pipeline of the family's class for ``mode`` over shared components and a fresh scheduler.

    Only the components the class takes are passed: a text-to-image folder may carry parts (an image
    encoder, a feature extractor) that another mode's class has no slot for, and the reverse is left None.
    The loaded pipeline's registered settings (``config``: the refiner's ``requires_aesthetics_score``,
    SDXL's ``force_zeros_for_empty_prompt``) go to the new class where it takes them."""
    cls = getattr(_lib, PIPELINES[family][mode])
    accepted = parameters(cls)
    settings = {
        name: value
        for name, value in (config or {}).items()
        if name in accepted and name not in components and not name.startswith("_")
    }
    extra: dict[str, Any] = {**settings, "scheduler": scheduler}
    if mode is Mode.CONTROLNET:
        extra["controlnet"] = controlnet
    if "requires_safety_checker" in accepted:
        extra["requires_safety_checker"] = components.get("safety_checker") is not None
    shared = {name: value for name, value in components.items() if name in accepted}
    return cls(**{**shared, **extra})
