"""The capability table: the domain's profiles and the adapter's pipeline classes agree, and requests
are checked against the model's family before anything is stored."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import diffusers
import pytest

from app.adapters.diffusers.call_arguments import prompt_arguments
from app.adapters.diffusers.families import PIPELINES, family_of_class
from app.domain.errors import InvalidParameters
from app.domain.families import PROFILES, Capability, Family, GuidanceKind, profile, require_mode
from app.domain.generation import GenerationParams
from app.domain.models import ModelInfo
from app.domain.specs import HiresSpec, HiresUpscaler, Mode
from app.usecases.generation_inputs import check_capabilities

MODE_CAPABILITIES = {Capability(mode.value) for mode in Mode}


@pytest.mark.parametrize("family", list(Family))
def test_a_family_has_a_mode_exactly_when_a_pipeline_class_runs_it(family: Family) -> None:
    fam = PROFILES[family]
    assert {Capability(m.value) for m in PIPELINES[family]} == fam.capabilities & MODE_CAPABILITIES
    for class_name in PIPELINES[family].values():
        assert hasattr(diffusers, class_name), class_name
    assert fam.size % 8 == 0 and 1 <= fam.steps <= 150 and fam.guidance_scale >= 0


def test_saved_pipeline_classes_name_their_family() -> None:
    assert family_of_class("StableDiffusionXLPipeline") is Family.SDXL
    assert family_of_class("StableDiffusionXLImg2ImgPipeline") is Family.SDXL  # the refiner is told by its parts
    assert family_of_class("QwenImageEditPipeline") is Family.QWEN_IMAGE_EDIT
    assert family_of_class("FluxControlNetPipeline") is Family.FLUX
    assert family_of_class("WuerstchenPipeline") is None


def model(family: Family) -> ModelInfo:
    return ModelInfo(name="m", path="/m", source="/m", family=family)


def params(**values: Any) -> GenerationParams:
    return GenerationParams(**{"prompt": "a cat", "model": "m", **values})


def test_requests_outside_the_profile_are_refused_naming_family_and_capability() -> None:
    with pytest.raises(InvalidParameters, match=r"HunyuanDiT models cannot do img2img\. Its modes: txt2img\.") as e:
        check_capabilities(model(Family.HUNYUANDIT), params(init_image="upload-" + "0" * 32))
    assert (e.value.code, e.value.field) == ("unsupported_capability", "mode")
    with pytest.raises(InvalidParameters, match=r"FLUX\.1 models cannot do negative prompt"):
        check_capabilities(model(Family.FLUX), params(negative_prompt="blurry"))
    with pytest.raises(InvalidParameters, match="Kolors models cannot do prompt weighting"):
        check_capabilities(model(Family.KOLORS), params(prompt="(a cat:1.2)"))
    check_capabilities(model(Family.SDXL), params(prompt="(a cat:1.2) BREAK [grass]"))
    with pytest.raises(InvalidParameters, match=r"Qwen-Image-Edit models cannot do txt2img\. Its modes: instruct\."):
        require_mode(Family.QWEN_IMAGE_EDIT, Mode.TXT2IMG)
    with pytest.raises(InvalidParameters, match=r"FLUX\.1 models cannot use the Euler a sampler; choose Euler or none"):
        check_capabilities(model(Family.FLUX), params(scheduler="euler_a"))
    with pytest.raises(InvalidParameters, match="leave it empty: the model runs its own"):
        check_capabilities(model(Family.SANA), params(scheduler="Euler"))
    check_capabilities(model(Family.FLUX), params(scheduler="Euler"))
    check_capabilities(model(Family.SDXL), params(scheduler="DPM++ 2M Karras"))
    # what the family has passes: weights on SD, an escaped bracket anywhere, an empty negative prompt on FLUX
    check_capabilities(model(Family.SD), params(prompt="(a cat:1.2) BREAK grass", negative_prompt="dog"))
    check_capabilities(model(Family.FLUX), params(prompt=r"a sign saying \(hello\)", negative_prompt=" "))
    check_capabilities(model(Family.QWEN_IMAGE_EDIT), params(mode="instruct", init_image="upload-" + "0" * 32))


def test_open_steps_and_guidance_take_the_model_then_the_family_defaults() -> None:
    flux = model(Family.FLUX)
    resolved = params().resolved(
        default_size=flux.default_size, default_guidance=flux.recommended_guidance, default_steps=flux.recommended_steps
    )
    assert (resolved.steps, resolved.guidance_scale) == (28, 3.5)
    tiny = ModelInfo(name="m", path="/m", source="/m", family=Family.FLUX, default_steps=2, default_guidance=1.5)
    assert (tiny.recommended_steps, tiny.recommended_guidance) == (2, 1.5)
    assert params(steps=9).resolved(default_size=64, default_steps=28).steps == 9


class _View:
    """Stands for a pipeline whose __call__ takes the binning switch."""

    def __call__(self, prompt: Any = None, use_resolution_binning: bool = True) -> None: ...


@pytest.mark.parametrize(
    ("family", "scale", "expected"),
    [
        (Family.SDXL, 5.0, {"guidance_scale": 5.0, "negative_prompt": ["blurry", ""]}),
        (Family.FLUX, 3.5, {"guidance_scale": 3.5}),
        (Family.QWEN_IMAGE, 4.0, {"true_cfg_scale": 4.0, "negative_prompt": ["blurry", " "]}),
        (Family.QWEN_IMAGE, 1.0, {"true_cfg_scale": 1.0}),
        (Family.Z_IMAGE, 1.0, {"guidance_scale": 0.0, "negative_prompt": ["blurry", ""]}),
        (Family.Z_IMAGE, 4.0, {"guidance_scale": 3.0, "negative_prompt": ["blurry", ""]}),
    ],
)
def test_the_guidance_scale_is_passed_as_each_family_reads_it(
    family: Family, scale: float, expected: dict[str, Any]
) -> None:
    arguments = prompt_arguments(family, _View(), ["<lora:x:1>a \\(cat\\)", "dog"], ["blurry", ""], scale)
    assert arguments.pop("prompt") == ["a (cat)", "dog"]
    assert arguments.pop("use_resolution_binning") is False
    assert arguments == expected
    assert profile(family).guidance in GuidanceKind


def test_hires_fix_and_clip_skip_are_checked_against_the_family() -> None:
    hires = HiresSpec(scale=2, upscaler="Latent")
    with pytest.raises(InvalidParameters, match="HunyuanDiT models cannot do hires") as e:
        check_capabilities(model(Family.HUNYUANDIT), params(hires=hires))
    assert e.value.field == "hires"
    with pytest.raises(InvalidParameters, match=r"FLUX\.1 models cannot do latent upscale\. Use the Lanczos") as e:
        check_capabilities(model(Family.FLUX), params(hires=hires))
    assert e.value.field == "hr_upscaler"
    check_capabilities(model(Family.FLUX), params(hires=HiresSpec(scale=2, upscaler="Lanczos")))
    check_capabilities(model(Family.SDXL), params(hires=hires, clip_skip=2))
    with pytest.raises(InvalidParameters, match="Qwen-Image models cannot do clip skip"):
        check_capabilities(model(Family.QWEN_IMAGE), params(clip_skip=2))
    with pytest.raises(InvalidParameters, match="Hires fix is part of text-to-image") as e:
        params(hires=hires, init_image="upload-" + "0" * 32)
    assert e.value.code == "invalid_hires"


def test_the_hires_target_size_and_its_limits() -> None:
    assert HiresSpec(scale=1.5).target(512, 768) == (768, 1152)
    assert HiresSpec(width=1000).target(512, 768) == (1000, 1496)  # the other side keeps the ratio, /8
    assert HiresSpec(upscaler="Latent (nearest)").upscaler is HiresUpscaler.LATENT_NEAREST
    with pytest.raises(InvalidParameters, match="hr_scale above 1"):
        HiresSpec(scale=1)
    with pytest.raises(InvalidParameters, match="hr_upscaler must be one of"):
        HiresSpec(upscaler="ESRGAN_4x")
    with pytest.raises(InvalidParameters, match=r"Hires fix would make 3072x3072 images: width must be"):
        params(width=1536, height=1536, hires=HiresSpec(scale=2))
    assert params(width=512, height=512, hires=HiresSpec(scale=2)).output_size == (1024, 1024)


def _documented_table() -> str:
    def yn(fam: Any, capability: Capability) -> str:
        return "yes" if fam.supports(capability) else "no"

    rows = [
        "| family (`family`) | modes | LoRA | long prompts | A1111 weights | negative prompt | hires fix | clip skip"
        " | guidance | defaults (size, steps, scale) | samplers |",
        "|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for fam in PROFILES.values():
        hires = "no"
        if fam.supports(Capability.HIRES):
            hires = "yes (latent, pixel)" if fam.supports(Capability.LATENT_UPSCALE) else "yes (pixel)"
        samplers = "all"
        if fam.samplers is not None:
            samplers = ", ".join(fam.samplers) + " (its own)" if fam.samplers else "its own only"
        cells = [
            f"{fam.label} (`{fam.family.value}`)",
            ", ".join(m.value for m in fam.modes()),
            "yes, trainable" if fam.supports(Capability.LORA_TRAINING) else yn(fam, Capability.LORA),
            yn(fam, Capability.LONG_PROMPTS),
            yn(fam, Capability.PROMPT_WEIGHTING),
            yn(fam, Capability.NEGATIVE_PROMPT),
            hires,
            yn(fam, Capability.CLIP_SKIP),
            fam.guidance.value.replace("_", " "),
            f"{fam.size}, {fam.steps}, {fam.guidance_scale:g}",
            samplers,
        ]
        rows.append("| " + " | ".join(cells) + " |")
    return "\n".join(rows)


def test_the_documented_capability_table_is_the_domains() -> None:
    docs = (Path(__file__).parents[2] / "docs" / "families.md").read_text(encoding="utf-8")
    assert _documented_table() in docs


def test_control_units_need_controlnets_of_the_models_family_and_qwen_image_one_union_controlnet() -> None:
    from app.adapters.memory.generation import InMemoryModelCatalog
    from app.domain.models import ModelKind
    from app.domain.specs import ControlSpec
    from app.usecases.generation_inputs import check_controls

    def net(name: str, family: Family) -> ModelInfo:
        return ModelInfo(name=name, path=name, source=name, kind=ModelKind.CONTROLNET, family=family)

    names = {"canny": Family.SD, "xl-edges": Family.SDXL, "q-union": Family.QWEN_IMAGE, "q-other": Family.QWEN_IMAGE}
    catalog = InMemoryModelCatalog([net(name, family) for name, family in names.items()])
    image = "upload-" + "0" * 32
    units = (ControlSpec(image=image), ControlSpec(image=image, kind="depth", model="xl-edges"))
    with pytest.raises(InvalidParameters, match=r"'canny' was made for Stable Diffusion 1\.x/2\.x models") as e:
        check_controls(model(Family.SDXL), units, catalog)
    assert (e.value.code, e.value.field) == ("controlnet_family_mismatch", "controls[0].model")
    named = check_controls(model(Family.SDXL), units[1:] * 2, catalog)
    assert [unit.model for unit in named] == ["xl-edges", "xl-edges"]
    assert check_controls(model(Family.SD), units[:1], catalog)[0].model == "canny"  # named like the preprocessor
    union = (ControlSpec(image=image, model="q-union"),) * 2
    assert len(check_controls(model(Family.QWEN_IMAGE), union, catalog)) == 2
    with pytest.raises(InvalidParameters, match="one \\(union\\) ControlNet; these units name q-other, q-union"):
        check_controls(model(Family.QWEN_IMAGE), (union[0], ControlSpec(image=image, model="q-other")), catalog)
    with pytest.raises(InvalidParameters, match="needs control_model"):
        check_controls(model(Family.SD), (ControlSpec(image=image, kind="none"),), catalog)
