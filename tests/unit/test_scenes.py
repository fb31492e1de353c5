"""The demo world's scenes, captions, held-out split and content-integrity score (pure domain)."""

from __future__ import annotations

import dataclasses
import random

import pytest

from app.demo_world.integrity import integrity
from app.demo_world.parsing import parse_caption
from app.demo_world.scenes import Scene, SceneObject, SceneSampler, canonical_caption, caption, is_held_out
from app.demo_world.vocabulary import COLOURS, POSITIONS, SHAPES


def test_parse_the_issue_examples() -> None:
    scene = parse_caption("一个红色的大圆在左边，蓝色背景")
    assert scene.objects == (SceneObject("circle", "red", "left", "large"),)
    assert scene.background == "blue"
    assert parse_caption("一个红色的圆形在中间").objects == (SceneObject("circle", "red", "center"),)
    two = parse_caption("左上有一个带描边的黄色小星星，右下是一个紫色的大爱心")
    assert two.objects == (
        SceneObject("star", "yellow", "top-left", "small", ("outline",)),
        SceneObject("heart", "purple", "bottom-right", "large"),
    )
    assert two.background is None  # not stated: any background will do
    english = parse_caption("a big red circle at the top left and a small green square on the right, white background")
    assert english.objects == (
        SceneObject("circle", "red", "top-left", "large"),
        SceneObject("square", "green", "right", "small"),
    )
    assert english.background == "white"


def test_attributes_in_a_clause_without_a_shape_belong_to_the_previous_object() -> None:
    assert parse_caption("红色圆形，大，位于左上").objects == (SceneObject("circle", "red", "top-left", "large"),)


def test_center_is_not_read_as_a_heart() -> None:
    assert parse_caption("绿色的三角形在中心").objects == (SceneObject("triangle", "green", "center"),)


@pytest.mark.parametrize("text", ["", "一只猫坐在窗台上", "大的在左上"])
def test_a_caption_without_a_coloured_shape_is_rejected(text: str) -> None:
    with pytest.raises(ValueError, match="no coloured shape"):
        parse_caption(text)


@pytest.mark.parametrize("language", ["zh", "en"])
def test_every_generated_caption_parses_back_to_its_scene(language: str) -> None:
    rng = random.Random(7)
    sampler = SceneSampler(rng, style_rate=0.3)
    for _ in range(2000):
        scene = sampler.sample()
        text = caption(scene, rng, language)
        parsed = parse_caption(text)
        sized = parsed.objects[0].size is not None
        want = tuple(o if sized else dataclasses.replace(o, size=None) for o in scene.objects)
        assert sorted(parsed.objects, key=repr) == sorted(want, key=repr), text
        assert parsed.background in (None, scene.background), text


def test_canonical_caption_round_trips() -> None:
    scene = Scene((SceneObject("star", "orange", "bottom", "small", ("gradient", "shadow")),), "black")
    text = canonical_caption(scene)
    assert text == "一个带渐变、阴影的橙色的小星形在中下，黑色背景"
    assert parse_caption(text) == scene


def test_held_out_combinations_cover_every_attribute_and_never_reach_training() -> None:
    held = [
        SceneObject(s, c, p) for s in SHAPES for c in COLOURS for p in POSITIONS if is_held_out(SceneObject(s, c, p))
    ]
    assert 30 <= len(held) <= 40
    assert {o.shape for o in held} == set(SHAPES)
    assert {o.colour for o in held} == set(COLOURS)
    assert {o.position for o in held} == set(POSITIONS)
    train = SceneSampler(random.Random(0), split="train")
    heldout = SceneSampler(random.Random(0), split="heldout")
    for _ in range(3000):
        assert not any(is_held_out(o) for o in train.sample().objects)
        scene = heldout.sample()
        assert any(is_held_out(o) for o in scene.objects)
        if len(scene.objects) == 1:
            assert is_held_out(scene.objects[0])


def test_sampled_scenes_are_drawable() -> None:
    sampler = SceneSampler(random.Random(3), two_object_rate=1.0)
    for _ in range(1000):
        scene = sampler.sample()
        a, b = scene.objects
        assert a.position != b.position
        assert scene.background not in (a.colour, b.colour)


def test_integrity_scores_what_was_asked() -> None:
    asked = parse_caption("一个红色的大圆形在左上，一个蓝色的小方块在右下")
    right = Scene(
        (SceneObject("square", "blue", "bottom-right", "small"), SceneObject("circle", "red", "top-left", "large")),
        "gray",
    )
    report = integrity(asked, right)
    assert report.exact and report.score == 1.0
    wrong_colour = Scene((dataclasses.replace(right.objects[0], colour="green"), right.objects[1]), "gray")
    assert 0.8 < integrity(asked, wrong_colour).score < 1.0
    missing = Scene(right.objects[1:], "gray")
    assert integrity(asked, missing).score == 0.5
    extra = Scene((*right.objects, SceneObject("star", "black", "center", "small")), "gray")
    report = integrity(asked, extra)
    assert not report.exact and report.score == pytest.approx(2 / 3)
    assert integrity(parse_caption("红色圆形，蓝色背景"), right).score < 1.0
