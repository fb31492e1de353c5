"""The demo world's edit instructions: every sampled instruction applies, and reads back (the rule rewriter)."""

from __future__ import annotations

import random

import pytest

from app.demo_world.instructions import (
    KINDS,
    Instruction,
    apply,
    instructpe_record,
    parse_instruction,
    phrase,
    phrase_en,
    sample_instruction,
)
from app.demo_world.parsing import parse_caption
from app.demo_world.scenes import Scene, SceneObject, SceneSampler


def test_every_kind_reads_back_in_chinese_and_english() -> None:
    rng, sampler = random.Random(0), SceneSampler(random.Random(1), style_rate=0.0)
    seen = set()
    for _ in range(600):
        scene = sampler.sample()
        ins = sample_instruction(scene, rng)
        seen.add(ins.kind)
        for text in (phrase(scene, ins, rng), phrase_en(scene, ins)):
            assert apply(scene, parse_instruction(text, scene)) == apply(scene, ins), text
    assert seen == set(KINDS)


def test_apply_changes_only_what_is_asked() -> None:
    scene = Scene((SceneObject("circle", "red", "center", "large"), SceneObject("star", "blue", "top-left", "small")))
    recoloured = apply(scene, parse_instruction("把圆形换成绿色", scene))
    assert recoloured.objects[0].colour == "green" and recoloured.objects[1] == scene.objects[1]
    assert len(apply(scene, parse_instruction("去掉星形", scene)).objects) == 1
    assert apply(scene, parse_instruction("背景改成白色", scene)).background == "white"
    styled = apply(scene, parse_instruction("更精致一些，加上描边", scene))
    assert all(o.styles == ("outline",) for o in styled.objects)
    with pytest.raises(ValueError):
        apply(scene, Instruction("add", new=SceneObject("heart", "red", "bottom", "small")))  # at most two
    with pytest.raises(ValueError):
        apply(scene, Instruction("recolour", target=SceneObject("heart", "red"), value="blue"))  # no heart


def test_instructpe_records_hold_a_consistent_tuple() -> None:
    rng, sampler = random.Random(3), SceneSampler(random.Random(4))
    for _ in range(50):
        record, ins, target = instructpe_record(sampler.sample(), rng)
        assert record.instruction and record.source_prompt
        assert parse_caption(record.beautified_target_prompt).objects == tuple(
            o for o in target.objects
        )  # the target prompt states the target scene exactly
        assert ins.kind in KINDS
