"""app.adapters.demo_world.checker: the OpenCV reader of demo-world images against the renderer's ground truth."""

from __future__ import annotations

import cv2
import numpy as np
import pytest
from PIL import Image

from app.adapters.demo_world.checker import OpenCvSceneReader
from app.adapters.demo_world.ground_truth import calibrate, ground_truth_accuracy
from app.adapters.demo_world.render import render
from app.demo_world.scenes import Scene, SceneObject, canonical_caption
from app.demo_world.vocabulary import BACKGROUNDS, POSITIONS, SHAPES

reader = OpenCvSceneReader()


def read(scene: Scene, seed: int = 0) -> Scene:
    return reader.read(render(scene, seed=seed))


def plain(obj: SceneObject) -> SceneObject:
    return SceneObject(obj.shape, obj.colour, obj.position, obj.size)


def test_ground_truth_accuracy_on_1000_rendered_scenes() -> None:
    result = ground_truth_accuracy(n=1000, seed=0)
    assert result["n"] == 1000
    assert result["exact"] >= 0.98, result
    for attribute in ("shape", "colour", "position", "size", "background"):
        assert result[attribute] >= 0.98, (attribute, result)


def test_ground_truth_accuracy_survives_a_mild_blur() -> None:
    result = ground_truth_accuracy(n=300, seed=1, blur=True)
    assert result["exact"] >= 0.95, result


def test_a_red_circle_in_the_center() -> None:
    seen = read(Scene((SceneObject("circle", "red", "center", "large"),), "gray"))
    assert seen == Scene((SceneObject("circle", "red", "center", "large"),), "gray")


@pytest.mark.parametrize("shape", SHAPES)
@pytest.mark.parametrize("size", ["large", "small"])
def test_every_shape_and_size(shape: str, size: str) -> None:
    obj = SceneObject(shape, "blue", "top-left", size)
    assert read(Scene((obj,), "white"), seed=3).objects == (obj,)


def test_every_position() -> None:
    for i, position in enumerate(POSITIONS):
        obj = SceneObject("square", "orange", position, "small")
        assert read(Scene((obj,), "black"), seed=i).objects == (obj,)


def test_two_objects_largest_first() -> None:
    small = SceneObject("triangle", "yellow", "top-right", "small")
    large = SceneObject("heart", "purple", "bottom-left", "large")
    seen = read(Scene((small, large), "blue"), seed=7)
    assert seen.objects == (large, small)
    assert seen.background == "blue"


def test_touching_shapes_are_read_apart() -> None:
    # A large heart's tip reaches into the next cell and touches the small circle's outline there.
    heart = SceneObject("heart", "yellow", "top", "large")
    circle = SceneObject("circle", "green", "center", "small", ("outline",))
    seen = read(Scene((heart, circle), "blue"), seed=546)
    assert tuple(plain(o) for o in seen.objects) == (heart, plain(circle))


def test_outline_is_no_extra_object_and_keeps_the_colour() -> None:
    for obj in (
        SceneObject("star", "yellow", "center", "large", ("outline",)),
        SceneObject("circle", "white", "left", "small", ("outline",)),
        SceneObject("heart", "black", "right", "large", ("outline",)),  # black fills get a light outline
    ):
        seen = read(Scene((obj,), "gray"), seed=5)
        assert len(seen.objects) == 1
        assert plain(seen.objects[0]) == plain(obj)
        assert "outline" in seen.objects[0].styles


def test_shadow_and_gradient_do_not_change_what_is_read() -> None:
    obj = SceneObject("square", "black", "bottom", "large", ("gradient", "shadow"))  # its top is shadow-gray
    seen = read(Scene((obj,), "gray"), seed=11)
    assert len(seen.objects) == 1
    assert plain(seen.objects[0]) == plain(obj)
    assert set(seen.objects[0].styles) == {"gradient", "shadow"}


def test_plain_shape_has_no_styles() -> None:
    seen = read(Scene((SceneObject("triangle", "green", "center", "large"),), "white"))
    assert seen.objects[0].styles == ()


@pytest.mark.parametrize("background", BACKGROUNDS)
def test_blank_background_reads_no_objects(background: str) -> None:
    assert read(Scene((), background)) == Scene((), background)


def test_noise_alone_is_no_object() -> None:
    noise = np.random.default_rng(0).normal(0.0, 8.0, (64, 64, 3))
    image = np.clip(128 + noise, 0, 255).astype(np.uint8)
    assert reader.read(image) == Scene((), "gray")


def test_unknown_background_is_none() -> None:
    assert reader.read(np.full((64, 64, 3), (200, 10, 10), np.uint8)).background is None


def test_score_of_matching_and_wrong_captions() -> None:
    scene = Scene((SceneObject("circle", "red", "center", "large"), SceneObject("star", "blue", "top-left", "small")))
    image = render(scene, seed=2)
    right = reader.score(image, canonical_caption(scene))
    assert right.score == 1.0 and right.exact
    wrong = reader.score(image, "一个绿色的大圆形在中间，一个蓝色的小星形在左上")
    assert wrong.score < 1.0 and not wrong.exact
    assert reader.score(image, "a big red circle in the center").score < 1.0  # an object is missing


def test_score_propagates_caption_errors() -> None:
    with pytest.raises(ValueError):
        reader.score(render(Scene(())), "nothing to see")


def test_accepts_pil_images_and_other_sizes() -> None:
    obj = SceneObject("heart", "orange", "bottom-right", "large")
    image = render(Scene((obj,), "gray"), seed=4)
    assert reader.read(Image.fromarray(image)).objects == (obj,)
    assert reader.read(cv2.resize(image, (256, 256), interpolation=cv2.INTER_CUBIC)).objects == (obj,)
    assert reader.read(np.dstack([image, np.full((64, 64), 255, np.uint8)])).objects == (obj,)


def test_rejects_what_is_not_an_image() -> None:
    with pytest.raises(TypeError):
        reader.read("not an image")


def test_calibrate_runs() -> None:
    result = calibrate(n=10, seed=0)
    assert set(result) == {"prototypes", "extent_per_radius"}
    assert set(result["prototypes"]) <= set(SHAPES)
