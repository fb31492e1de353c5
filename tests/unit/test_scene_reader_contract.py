"""One contract for every SceneReader: the fake and the OpenCV checker."""

from __future__ import annotations

import pytest

from app.adapters.demo_world.checker import OpenCvSceneReader
from app.adapters.demo_world.render import render
from app.demo_world.scenes import Scene, SceneObject
from app.ports.generation import RgbImage
from app.ports.scenes import SceneReader
from tests.fakes import FakeSceneReader

SCENE = Scene(
    (SceneObject("heart", "purple", "top-right", "large"), SceneObject("square", "orange", "bottom-left", "small")),
    "white",
)
BLANK = Scene((), "gray")


def _image(scene: Scene) -> RgbImage:
    pixels = render(scene, seed=3)
    return RgbImage(width=64, height=64, rgb=pixels.tobytes())


@pytest.fixture(params=["fake", "opencv"])
def reader(request: pytest.FixtureRequest) -> SceneReader:
    if request.param == "opencv":
        return OpenCvSceneReader()
    fake = FakeSceneReader()
    fake.teach(_image(SCENE), SCENE)
    return fake


def test_reads_the_objects_largest_first(reader: SceneReader) -> None:
    assert reader.read(_image(SCENE)) == SCENE


def test_a_blank_image_holds_no_object(reader: SceneReader) -> None:
    assert reader.read(_image(BLANK)) == BLANK
