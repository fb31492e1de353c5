"""One pipeline class and its mode-specific arguments per generation mode.

Every mode shares the loaded model's weights: the pipeline for a request is built from the
base pipeline's components (plus a ControlNet for ``controlnet``), so switching modes loads
nothing. Input images are fitted to the requested size here (``resize_mode``), masks are
binarised, outpainting canvases are filled (``copy``/``reflect``) and their new border masked.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import diffusers
from PIL import Image

from app.adapters.imaging.control import conditioning_map
from app.adapters.imaging.ops import normalize_mask, outpaint_canvas, resize_for, to_rgb
from app.domain.specs import Mode
from app.ports.generation import DepthEstimator, GenerationRequest

_lib: Any = diffusers
PIPELINES: dict[Mode, str] = {
    Mode.TXT2IMG: "StableDiffusionPipeline",
    Mode.IMG2IMG: "StableDiffusionImg2ImgPipeline",
    Mode.INPAINT: "StableDiffusionInpaintPipeline",
    Mode.OUTPAINT: "StableDiffusionInpaintPipeline",
    Mode.CONTROLNET: "StableDiffusionControlNetPipeline",
}


def _open(path: str) -> Image.Image:
    with Image.open(path) as picture:
        picture.load()
        return picture.copy()


def control_map(request: GenerationRequest, depth: DepthEstimator) -> Image.Image:
    """The conditioning image a ControlNet sees: the upload fitted to the size, then preprocessed."""
    params, control = request.params, request.params.control
    assert control is not None and params.width and params.height
    image = _open(request.inputs["control"])
    return conditioning_map(image, control.kind, params.width, params.height, params.resize_mode, depth)


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
        assert params.control is not None
        return {"image": control_map(request, depth), "controlnet_conditioning_scale": params.control.scale}
    return {}


def pipeline_for(mode: Mode, components: dict[str, Any], scheduler: Any, controlnet: Any = None) -> Any:
    """A pipeline of the mode's class over shared components and a fresh scheduler."""
    cls = getattr(_lib, PIPELINES[mode])
    extra: dict[str, Any] = {"scheduler": scheduler}
    if mode is Mode.CONTROLNET:
        extra["controlnet"] = controlnet
    requires_checker = components.get("safety_checker") is not None
    return cls(**{**components, **extra, "requires_safety_checker": requires_checker})
