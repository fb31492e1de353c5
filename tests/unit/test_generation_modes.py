"""Modes, input images, LoRAs, ControlNet and outpainting in the parameter object."""

from __future__ import annotations

from typing import Any

import pytest

from app.domain.errors import InvalidParameters
from app.domain.generation import GenerationParams, infotext
from app.domain.specs import ControlKind, ControlSpec, LoraSpec, Mode, OutpaintFill, OutpaintSpec, ResizeMode

INIT = "upload-" + "a" * 32
MASK = "upload-" + "b" * 32


def params(**values: Any) -> GenerationParams:
    return GenerationParams(**{"prompt": "一只猫", "model": "demo", **values})


@pytest.mark.parametrize(
    ("values", "mode"),
    [
        ({}, Mode.TXT2IMG),
        ({"init_image": INIT}, Mode.IMG2IMG),
        ({"init_image": INIT, "mask_image": MASK}, Mode.INPAINT),
        ({"init_image": INIT, "outpaint": OutpaintSpec(left=64)}, Mode.OUTPAINT),
        ({"controls": (ControlSpec(image=INIT),)}, Mode.CONTROLNET),
    ],
)
def test_the_mode_is_inferred_from_the_inputs(values: dict[str, Any], mode: Mode) -> None:
    assert params(**values).mode is mode


@pytest.mark.parametrize(
    ("values", "code"),
    [
        ({"mode": "img2img"}, "missing_init_image"),
        ({"mode": "inpaint", "init_image": INIT}, "missing_mask_image"),
        ({"mode": "outpaint", "init_image": INIT}, "missing_outpaint"),
        ({"mode": "controlnet"}, "missing_controls"),
        ({"mode": "dream"}, "invalid_mode"),
        ({"init_image": "../../etc/passwd"}, "invalid_init_image"),
        ({"init_image": INIT + "\n"}, "invalid_init_image"),
        ({"init_image": INIT, "strength": 0}, "invalid_strength"),
        ({"init_image": INIT, "strength": 1.5}, "invalid_strength"),
        ({"resize_mode": "squash"}, "invalid_resize_mode"),
        ({"loras": [LoraSpec("a"), LoraSpec("a")]}, "invalid_loras"),
        ({"loras": [LoraSpec(f"l{i}") for i in range(9)]}, "invalid_loras"),
    ],
)
def test_invalid_mode_inputs(values: dict[str, Any], code: str) -> None:
    with pytest.raises(InvalidParameters) as caught:
        params(**values)
    assert caught.value.code == code


def test_spec_validation() -> None:
    with pytest.raises(InvalidParameters) as caught:
        LoraSpec("水墨")
    assert caught.value.code == "invalid_model_name"
    with pytest.raises(InvalidParameters):
        LoraSpec("poem", 9.0)
    with pytest.raises(InvalidParameters):
        ControlSpec(image=INIT, scale=3.0)
    with pytest.raises(InvalidParameters):
        ControlSpec(image=INIT, kind="hed")  # type: ignore[arg-type]
    assert ControlSpec(image=INIT, kind="depth").kind is ControlKind.DEPTH  # type: ignore[arg-type]
    with pytest.raises(InvalidParameters):
        OutpaintSpec()
    with pytest.raises(InvalidParameters):
        OutpaintSpec(left=2000)
    assert OutpaintSpec.parse("128, 0,64,0", "reflect") == OutpaintSpec(128, 0, 64, 0, OutpaintFill.REFLECT)
    with pytest.raises(InvalidParameters):
        OutpaintSpec.parse("1,2,3")


def test_resolved_size_follows_the_input_image_and_the_outpaint_borders() -> None:
    assert params(init_image=INIT).resolved(default_size=512, input_size=(300, 203)).width == 296
    grown = params(init_image=INIT, outpaint=OutpaintSpec(left=64, down=32)).resolved(
        default_size=512, input_size=(128, 128)
    )
    assert (grown.width, grown.height) == (192, 160)
    assert params(init_image=INIT, width=64).resolved(default_size=512, input_size=(300, 300)).width == 64
    assert params().resolved(default_size=512, input_size=None).height == 512


def test_dict_round_trip_with_every_spec_is_json_native() -> None:
    import json

    full = params(
        init_image=INIT,
        mask_image=MASK,
        outpaint=OutpaintSpec(left=8, fill=OutpaintFill.REFLECT),
        controls=(
            ControlSpec(image=INIT, kind=ControlKind.DEPTH, model="depth-cn", scale=0.5),
            ControlSpec(image=MASK, kind=ControlKind.CANNY, start=0.2, end=0.6),
        ),
        loras=(LoraSpec("poem", 0.7), LoraSpec("style", -1.0)),
        resize_mode=ResizeMode.CROP,
        mode=Mode.OUTPAINT,
    )
    data = json.loads(json.dumps(full.to_dict()))
    assert data["loras"] == [{"name": "poem", "weight": 0.7}, {"name": "style", "weight": -1.0}]
    assert GenerationParams.from_dict(data) == full


def test_infotext_names_the_mode_strength_loras_and_control() -> None:
    text = infotext(
        params(
            controls=(ControlSpec(image=INIT, scale=0.8), ControlSpec(image=MASK, kind="depth", model="d", end=0.5)),
            loras=(LoraSpec("poem", 0.7),),
            seed=1,
            width=64,
            height=64,
            steps=20,
        ),
        1,
    )
    assert (
        "Mode: controlnet" in text
        and 'ControlNet 0: "Module: canny, Model: canny, Weight: 0.8, Guidance Start: 0, Guidance End: 1"' in text
    )
    assert 'ControlNet 1: "Module: depth, Model: d, Weight: 1, Guidance Start: 0, Guidance End: 0.5"' in text
    assert "<lora:poem:0.7>" in text.splitlines()[0] and "Lora hashes" not in text  # no hash known: no entry
    hashed = infotext(params(loras=(LoraSpec("poem", 0.7),), seed=1, steps=20), 1, lora_hashes={"poem": "ab" * 32})
    assert 'Lora hashes: "poem: abababababab"' in hashed
    assert "Denoising strength: 0.5" in infotext(params(init_image=INIT, strength=0.5, seed=1, steps=20), 1)
