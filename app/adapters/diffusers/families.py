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
        Mode.CONTROLNET: "StableDiffusionXLControlNetPipeline",
    },
    Family.SDXL_REFINER: _edits("StableDiffusionXLImg2ImgPipeline", "StableDiffusionXLInpaintPipeline"),
    Family.KOLORS: {Mode.TXT2IMG: "KolorsPipeline", Mode.IMG2IMG: "KolorsImg2ImgPipeline"},
    Family.HUNYUANDIT: {Mode.TXT2IMG: "HunyuanDiTPipeline"},
    Family.SD3: {
        Mode.TXT2IMG: "StableDiffusion3Pipeline",
        **_edits("StableDiffusion3Img2ImgPipeline", "StableDiffusion3InpaintPipeline"),
        Mode.CONTROLNET: "StableDiffusion3ControlNetPipeline",
    },
    Family.FLUX: {
        Mode.TXT2IMG: "FluxPipeline",
        **_edits("FluxImg2ImgPipeline", "FluxInpaintPipeline"),
        Mode.CONTROLNET: "FluxControlNetPipeline",
    },
    Family.QWEN_IMAGE: {
        Mode.TXT2IMG: "QwenImagePipeline",
        **_edits("QwenImageImg2ImgPipeline", "QwenImageInpaintPipeline"),
        Mode.CONTROLNET: "QwenImageControlNetPipeline",
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
    "HunyuanDiTControlNetPipeline": Family.HUNYUANDIT,
}

# The ControlNet classes each family's ControlNet pipeline takes, and the class that runs several of them
# together (Qwen-Image's runs one union ControlNet over several control images).
CONTROLNETS: dict[Family, tuple[str, str]] = {
    Family.SD: ("ControlNetModel", "MultiControlNetModel"),
    Family.SDXL: ("ControlNetModel", "MultiControlNetModel"),
    Family.SD3: ("SD3ControlNetModel", "SD3MultiControlNetModel"),
    Family.FLUX: ("FluxControlNetModel", "FluxMultiControlNetModel"),
    Family.QWEN_IMAGE: ("QwenImageControlNetModel", "QwenImageMultiControlNetModel"),
}


def controlnet_family(config: dict[str, object]) -> Family | None:
    """The family a ControlNet's ``config.json`` was made for: SD 1.x/2.x and SDXL share one class and differ
    in the UNet's added time embedding (SDXL's ``text_time``)."""
    name = config.get("_class_name")
    if name == "ControlNetModel":
        return Family.SDXL if config.get("addition_embed_type") == "text_time" else Family.SD
    return next((family for family, (single, _) in CONTROLNETS.items() if single == name), None)


def family_of_class(class_name: str) -> Family | None:
    """The family of a pipeline class name, None when Atelier does not serve it. An SDXL image-to-image
    class is the base family here; a folder without its first text encoder is the refiner (see layout)."""
    for family, modes in PIPELINES.items():
        if family is not Family.SDXL_REFINER and class_name in modes.values():
            return family
    return _ALSO.get(class_name)
