"""Which diffusers pipeline class runs each family's modes, and which family a saved pipeline class is
(read without importing torch or diffusers).

This is the adapter's half of the capability table in ``app.domain.families``: a family has a mode's
capability exactly when it has a pipeline class for that mode here (a unit test holds both to that).
"""

from __future__ import annotations

from app.domain.families import Family
from app.domain.specs import Mode


def _edits(img2img: str, inpaint: str) -> dict[Mode, str]:
    return {Mode.IMG2IMG: img2img, Mode.INPAINT: inpaint, Mode.OUTPAINT: inpaint}


PIPELINES: dict[Family, dict[Mode, str]] = {
    Family.SD: {
        Mode.TXT2IMG: "StableDiffusionPipeline",
        **_edits("StableDiffusionImg2ImgPipeline", "StableDiffusionInpaintPipeline"),
        Mode.CONTROLNET: "StableDiffusionControlNetPipeline",
    },
    Family.INSTRUCT_PIX2PIX: {Mode.INSTRUCT: "StableDiffusionInstructPix2PixPipeline"},
    Family.SDXL: {
        Mode.TXT2IMG: "StableDiffusionXLPipeline",
        **_edits("StableDiffusionXLImg2ImgPipeline", "StableDiffusionXLInpaintPipeline"),
    },
    Family.SDXL_REFINER: _edits("StableDiffusionXLImg2ImgPipeline", "StableDiffusionXLInpaintPipeline"),
    Family.KOLORS: {Mode.TXT2IMG: "KolorsPipeline", Mode.IMG2IMG: "KolorsImg2ImgPipeline"},
    Family.HUNYUANDIT: {Mode.TXT2IMG: "HunyuanDiTPipeline"},
    Family.SD3: {
        Mode.TXT2IMG: "StableDiffusion3Pipeline",
        **_edits("StableDiffusion3Img2ImgPipeline", "StableDiffusion3InpaintPipeline"),
    },
    Family.FLUX: {Mode.TXT2IMG: "FluxPipeline", **_edits("FluxImg2ImgPipeline", "FluxInpaintPipeline")},
    Family.QWEN_IMAGE: {
        Mode.TXT2IMG: "QwenImagePipeline",
        **_edits("QwenImageImg2ImgPipeline", "QwenImageInpaintPipeline"),
    },
    Family.QWEN_IMAGE_EDIT: {Mode.INSTRUCT: "QwenImageEditPipeline"},
    Family.Z_IMAGE: {Mode.TXT2IMG: "ZImagePipeline", **_edits("ZImageImg2ImgPipeline", "ZImageInpaintPipeline")},
    Family.COGVIEW4: {Mode.TXT2IMG: "CogView4Pipeline"},
    Family.PIXART_SIGMA: {Mode.TXT2IMG: "PixArtSigmaPipeline"},
    Family.SANA: {Mode.TXT2IMG: "SanaPipeline"},
}


# The classes a model folder's model_index.json may name, beyond those above (other pipelines of the
# same weights, as exported by their authors).
_ALSO: dict[str, Family] = {
    "StableDiffusionPipelineSafe": Family.SD,
    "AltDiffusionPipeline": Family.SD,
    "StableDiffusionXLControlNetPipeline": Family.SDXL,
    "StableDiffusion3ControlNetPipeline": Family.SD3,
    "FluxControlNetPipeline": Family.FLUX,
    "HunyuanDiTControlNetPipeline": Family.HUNYUANDIT,
    "QwenImageControlNetPipeline": Family.QWEN_IMAGE,
}


def family_of_class(class_name: str) -> Family | None:
    """The family of a pipeline class name, None when Atelier does not serve it. An SDXL image-to-image
    class is the base family here; a folder without its first text encoder is the refiner (see layout)."""
    for family, modes in PIPELINES.items():
        if family is not Family.SDXL_REFINER and class_name in modes.values():
            return family
    return _ALSO.get(class_name)
