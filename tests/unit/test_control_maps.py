"""The control-map preview: its parameters, its size policy, and one contract for every ControlPreprocessor."""

from __future__ import annotations

from typing import Any

import pytest

from app.adapters.imaging.control import LuminanceDepthEstimator, OpenCvControlPreprocessor
from app.domain.control_maps import ControlMapSpec
from app.domain.errors import InvalidParameters
from app.domain.specs import ControlKind, ResizeMode
from app.ports.generation import ControlPreprocessor, RgbImage
from app.usecases.preview_control_map import PreviewControlMap
from tests.fakes import FakeControlPreprocessor


def picture(width: int, height: int) -> RgbImage:
    """A diagonal gradient with a bright square, so edges and depth both have something to find."""
    rgb = bytearray()
    for y in range(height):
        for x in range(width):
            inside = width // 4 <= x < width // 2 and height // 4 <= y < height // 2
            rgb += bytes((255, 255, 255)) if inside else bytes(((x + y) % 256, x % 256, y % 256))
    return RgbImage(width, height, bytes(rgb))


def test_parse_accepts_plain_values() -> None:
    spec = ControlMapSpec.parse("DEPTH", 128, None, "pad")
    assert spec == ControlMapSpec(ControlKind.DEPTH, 128, None, ResizeMode.PAD)
    assert ControlMapSpec.parse() == ControlMapSpec()


@pytest.mark.parametrize(
    ("values", "field", "code"),
    [
        ({"kind": "hed"}, "kind", "invalid_kind"),
        ({"width": 100}, "width", "invalid_width"),
        ({"height": 0}, "height", "invalid_height"),
        ({"width": -64}, "width", "invalid_width"),
        ({"width": 4096}, "width", "invalid_width"),
        ({"height": "tall"}, "height", "invalid_height"),
        ({"resize_mode": "squash"}, "resize_mode", "invalid_resize_mode"),
    ],
)
def test_bad_values_name_their_field(values: dict[str, Any], field: str, code: str) -> None:
    with pytest.raises(InvalidParameters) as caught:
        ControlMapSpec.parse(**values)
    assert (caught.value.field, caught.value.code) == (field, code)


def test_an_open_side_follows_the_image_as_in_a_job() -> None:
    assert ControlMapSpec().size_for(300, 203) == (296, 200)
    assert ControlMapSpec(width=512).size_for(300, 203) == (512, 200)
    assert ControlMapSpec(height=64).size_for(30, 2100) == (64, 64)  # clamped to 64-2048 like a job's size


def test_the_use_case_asks_for_the_resolved_size() -> None:
    fake = FakeControlPreprocessor()
    drawn = PreviewControlMap(fake)(picture(100, 70), ControlMapSpec.parse("depth", None, 128, "crop"))
    assert (drawn.width, drawn.height) == (96, 128)
    assert fake.calls == [(ControlKind.DEPTH, 96, 128, ResizeMode.CROP)]


@pytest.fixture(params=["fake", "opencv"])
def preprocessor(request: pytest.FixtureRequest) -> ControlPreprocessor:
    if request.param == "opencv":
        return OpenCvControlPreprocessor(LuminanceDepthEstimator())
    return FakeControlPreprocessor()


@pytest.mark.parametrize("kind", list(ControlKind))
@pytest.mark.parametrize("mode", list(ResizeMode))
def test_the_map_has_the_requested_size(preprocessor: ControlPreprocessor, kind: ControlKind, mode: ResizeMode) -> None:
    drawn = preprocessor.preprocess(picture(50, 30), kind, 64, 48, mode)
    assert (drawn.width, drawn.height, len(drawn.rgb)) == (64, 48, 64 * 48 * 3)


@pytest.mark.parametrize("kind", [ControlKind.CANNY, ControlKind.DEPTH])
def test_edge_and_depth_maps_are_grey(preprocessor: ControlPreprocessor, kind: ControlKind) -> None:
    rgb = preprocessor.preprocess(picture(64, 64), kind, 64, 64, ResizeMode.STRETCH).rgb
    assert rgb[0::3] == rgb[1::3] == rgb[2::3]


def test_none_at_the_image_size_is_the_image(preprocessor: ControlPreprocessor) -> None:
    image = picture(64, 48)
    assert preprocessor.preprocess(image, ControlKind.NONE, 64, 48, ResizeMode.STRETCH) == image
