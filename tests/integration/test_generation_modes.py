"""Every generation mode through the library, with the real tiny diffusers pipeline and
random-init ControlNets: the requests run end to end and produce what their mode implies."""

from __future__ import annotations

import io
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
from PIL import Image, ImageDraw

from app.domain.errors import InvalidImage, InvalidParameters, UnknownModel
from app.domain.jobs import GenerationJob, JobStatus
from app.domain.specs import Mode
from app.entrypoints.library import Atelier
from app.ports.generation import DepthEstimator, GenerationRequest
from tests.conftest import register_demo


def png(size: tuple[int, int] = (64, 64), colour: str = "red") -> bytes:
    picture = Image.new("RGB", size, "navy")
    ImageDraw.Draw(picture).ellipse((size[0] // 4, size[1] // 4, 3 * size[0] // 4, 3 * size[1] // 4), fill=colour)
    buffer = io.BytesIO()
    picture.save(buffer, format="PNG")
    return buffer.getvalue()


def mask(size: tuple[int, int] = (64, 64)) -> bytes:
    picture = Image.new("L", size, 0)
    ImageDraw.Draw(picture).rectangle((0, 0, size[0] // 2, size[1]), fill=255)
    buffer = io.BytesIO()
    picture.save(buffer, format="PNG")
    return buffer.getvalue()


@pytest.fixture(scope="module")
def atelier(tmp_path_factory: pytest.TempPathFactory, demo_models: dict[str, tuple[str, str]]) -> Iterator[Atelier]:
    instance = Atelier.open(data_dir=str(tmp_path_factory.mktemp("modes")))
    register_demo(instance, demo_models)
    yield instance
    instance.close()


def pixels(atelier: Atelier, job: GenerationJob) -> np.ndarray:
    assert job.status is JobStatus.SUCCEEDED, job.error_message
    return np.asarray(Image.open(atelier.image_path(job.images[0].id)).convert("RGB"), dtype=np.int16)


def test_img2img_strength_controls_how_far_it_moves(atelier: Atelier) -> None:
    init = atelier.upload(png())
    low = atelier.generate("红色的圆", init_image=init.id, strength=0.1, steps=10, seed=1)
    high = atelier.generate("红色的圆", init_image=init.id, strength=1.0, steps=10, seed=1)
    assert low.params.mode is Mode.IMG2IMG and (low.params.width, low.params.height) == (64, 64)
    source = np.asarray(Image.open(init.path).convert("RGB"), dtype=np.int16)
    assert np.abs(pixels(atelier, low) - source).mean() < np.abs(pixels(atelier, high) - source).mean()


def test_img2img_resize_modes_give_the_requested_size(atelier: Atelier) -> None:
    init = atelier.upload(png((96, 64)))
    for mode in ("stretch", "crop", "pad"):
        job = atelier.generate("猫", init_image=init.id, width=64, height=64, resize_mode=mode, steps=2, seed=2)
        assert pixels(atelier, job).shape == (64, 64, 3)
    default = atelier.generate("猫", init_image=init.id, steps=2, seed=2)
    assert (default.params.width, default.params.height) == (96, 64)  # the input's own size


def test_inpaint_and_outpaint(atelier: Atelier) -> None:
    init, hole = atelier.upload(png()), atelier.upload(mask())
    inpainted = atelier.generate("一只猫", init_image=init.id, mask_image=hole.id, steps=3, seed=3)
    assert inpainted.params.mode is Mode.INPAINT and pixels(atelier, inpainted).shape == (64, 64, 3)
    grown = atelier.generate("风景", init_image=init.id, outpaint="32,0,0,16", steps=3, seed=3)
    assert grown.params.mode is Mode.OUTPAINT
    assert pixels(atelier, grown).shape == (80, 96, 3)
    reflected = atelier.generate("风景", init_image=init.id, outpaint={"left": 32, "fill": "reflect"}, steps=3, seed=3)
    assert pixels(atelier, reflected).shape == (64, 96, 3)


def test_controlnet_canny_and_depth_change_the_image(atelier: Atelier) -> None:
    control = atelier.upload(png(colour="white"))
    plain = pixels(atelier, atelier.generate("房子", steps=3, seed=4))
    for kind in ("canny", "depth"):
        job = atelier.generate("房子", control={"image": control.id, "kind": kind, "scale": 1.0}, steps=3, seed=4)
        assert job.params.mode is Mode.CONTROLNET and len(job.params.controls) == 1
        assert job.params.controls[0].model == kind  # the ControlNet registered under the preprocessor's name
        assert np.abs(pixels(atelier, job) - plain).mean() > 0.5
    off = atelier.generate("房子", control={"image": control.id, "scale": 0.0}, steps=3, seed=4)
    assert np.abs(pixels(atelier, off) - plain).max() <= 1  # scale 0: the ControlNet adds nothing


def test_the_control_map_preview_is_what_the_controlnet_sees(atelier: Atelier, monkeypatch: pytest.MonkeyPatch) -> None:
    from app.adapters.diffusers import modes

    seen: list[Image.Image] = []
    real = modes.control_map

    def recording(request: GenerationRequest, depth: DepthEstimator, unit: int = 0) -> Image.Image:
        seen.append(real(request, depth, unit))  # the conditioning image the ControlNet pipeline is called with
        return seen[-1]

    monkeypatch.setattr(modes, "control_map", recording)
    control = atelier.upload(png((100, 70), colour="white"))
    for kind, resize_mode in (("canny", "crop"), ("depth", "pad")):
        job = atelier.generate(
            "房子", control={"image": control.id, "kind": kind}, width=64, resize_mode=resize_mode, steps=1, seed=4
        )
        assert job.status is JobStatus.SUCCEEDED, job.error_message
        preview = Image.open(io.BytesIO(atelier.control_map(control.id, kind, resize_mode=resize_mode, width=64)))
        assert preview.size == seen[-1].size == (64, 64)  # the open height follows the upload: 70 -> 64
        assert preview.convert("RGB").tobytes() == seen[-1].tobytes()
    assert atelier.container.generator()._depth is atelier.container.depth_estimator()  # one estimator for both


def test_bad_inputs_are_rejected_before_a_job_exists(atelier: Atelier) -> None:
    before = atelier.jobs().total
    with pytest.raises(InvalidImage):
        atelier.upload(b"definitely not a picture")
    with pytest.raises(InvalidParameters) as caught:
        atelier.submit("猫", init_image="upload-" + "0" * 32)
    assert caught.value.code == "unknown_input_image"
    with pytest.raises(InvalidParameters) as caught:
        atelier.submit("猫", mode="inpaint", init_image=atelier.upload(png()).id)
    assert caught.value.code == "missing_mask_image"
    with pytest.raises(UnknownModel):
        atelier.submit("猫", control={"image": atelier.upload(png()).id, "model": "nope"})
    with pytest.raises(InvalidParameters) as caught:
        atelier.submit("猫", strenght=0.5)
    assert caught.value.code == "unknown_parameter"
    assert atelier.jobs().total == before


def test_uploads_are_content_addressed(atelier: Atelier, tmp_path: Path) -> None:
    first, again = atelier.upload(png()), atelier.upload(png())
    assert first == again and first.id.startswith("upload-") and (first.width, first.height) == (64, 64)


def test_loras_by_field_and_by_prompt_tag_change_the_image_and_never_leak(atelier: Atelier) -> None:
    plain = pixels(atelier, atelier.generate("一只猫", steps=2, seed=5))
    styled = atelier.generate("一只猫", loras=["demo-style-a:1.0"], steps=2, seed=5)
    assert [(lora.name, lora.weight) for lora in styled.params.loras] == [("demo-style-a", 1.0)]
    assert np.abs(pixels(atelier, styled) - plain).mean() > 1.0
    tagged = atelier.generate("一只猫 <lora:demo-style-a:1.0>", steps=2, seed=5)
    assert [lora.name for lora in tagged.params.loras] == ["demo-style-a"]
    assert np.array_equal(pixels(atelier, tagged), pixels(atelier, styled))  # the tag is not text for the encoder
    both = atelier.generate("一只猫", loras=["demo-style-a:0.5", "demo-style-b:0.5"], steps=2, seed=5)
    assert np.abs(pixels(atelier, both) - pixels(atelier, styled)).mean() > 1.0
    again = pixels(atelier, atelier.generate("一只猫", steps=2, seed=5))
    assert np.array_equal(again, plain)  # no LoRA leaks into the next request
