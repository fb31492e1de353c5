from __future__ import annotations

import pytest

from app.domain.errors import InvalidParameters
from app.domain.generation import (
    MAX_SEED,
    SCHEDULERS,
    GenerationParams,
    canonical_scheduler,
    infotext,
    parse_size,
)


def params(**values: object) -> GenerationParams:
    return GenerationParams(**{"prompt": "一只猫在草地上", "model": "demo", **values})  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("values", "code", "field"),
    [
        ({"prompt": ""}, "empty_prompt", "prompt"),
        ({"prompt": "   "}, "empty_prompt", "prompt"),
        ({"prompt": "猫" * 4001}, "prompt_too_long", "prompt"),
        ({"width": 500}, "invalid_width", "width"),
        ({"height": 32}, "invalid_height", "height"),
        ({"width": 4096}, "invalid_width", "width"),
        ({"steps": 0}, "invalid_steps", "steps"),
        ({"steps": 151}, "invalid_steps", "steps"),
        ({"steps": 2.5}, "invalid_steps", "steps"),
        ({"num_images": 9}, "invalid_num_images", "num_images"),
        ({"guidance_scale": -1}, "invalid_guidance_scale", "guidance_scale"),
        ({"guidance_scale": True}, "invalid_guidance_scale", "guidance_scale"),
        ({"seed": -5}, "invalid_seed", "seed"),
        ({"seed": MAX_SEED + 1}, "invalid_seed", "seed"),
        ({"scheduler": "magic"}, "unknown_scheduler", "scheduler"),
        ({"model": "../etc"}, "invalid_model_name", "model"),
    ],
)
def test_invalid_values_raise_stable_codes(values: dict[str, object], code: str, field: str) -> None:
    with pytest.raises(InvalidParameters) as caught:
        params(**values)
    assert caught.value.code == code
    assert caught.value.field == field


def test_chinese_prompt_and_bounds_are_accepted() -> None:
    p = params(width=512, height=768, steps=150, num_images=8, seed=MAX_SEED, guidance_scale=0)
    assert (p.width, p.height, p.steps, p.num_images, p.seed) == (512, 768, 150, 8, MAX_SEED)
    assert p.guidance_scale == 0.0


def test_resolved_fills_size_and_records_a_random_63_bit_seed() -> None:
    p = params().resolved(default_size=64)
    assert (p.width, p.height) == (64, 64)
    assert p.seed is not None and 0 <= p.seed <= MAX_SEED
    seeds = {params().resolved(default_size=64).seed for _ in range(20)}
    assert len(seeds) == 20
    fixed = params(seed=7, width=128).resolved(default_size=64)
    assert (fixed.seed, fixed.width, fixed.height) == (7, 128, 64)


def test_image_seeds_are_consecutive_and_wrap() -> None:
    assert params(seed=10, num_images=3).image_seeds() == [10, 11, 12]
    assert params(seed=MAX_SEED, num_images=2).image_seeds() == [MAX_SEED, 0]
    with pytest.raises(InvalidParameters):
        params().image_seeds()


@pytest.mark.parametrize(
    ("alias", "name"),
    [("euler_a", "Euler a"), ("EULER A", "Euler a"), ("dpmpp_2m_karras", "DPM++ 2M Karras"), ("unipc", "UniPC")],
)
def test_scheduler_aliases(alias: str, name: str) -> None:
    assert canonical_scheduler(alias) == name
    assert params(scheduler=alias).scheduler == name


def test_every_canonical_scheduler_maps_to_itself() -> None:
    assert [canonical_scheduler(n) for n in SCHEDULERS] == list(SCHEDULERS)


def test_dict_round_trip_ignores_unknown_keys() -> None:
    p = params(seed=3, width=64, height=64, scheduler="DDIM", negative_prompt="模糊")
    assert GenerationParams.from_dict({**p.to_dict(), "legacy": 1}) == p


@pytest.mark.parametrize(("text", "size"), [("512x768", (512, 768)), ("64", (64, 64)), (" 256 X 128 ", (256, 128))])
def test_parse_size(text: str, size: tuple[int, int]) -> None:
    assert parse_size(text) == size


def test_parse_size_rejects_garbage() -> None:
    with pytest.raises(InvalidParameters) as caught:
        parse_size("big")
    assert caught.value.code == "invalid_size"


def test_an_open_guidance_takes_the_model_recommendation_else_a1111s() -> None:
    assert params().guidance_scale is None
    assert params().resolved(default_size=64, default_guidance=3.0).guidance_scale == 3.0
    assert params().resolved(default_size=64).guidance_scale == 7.5
    assert params(guidance_scale=5).resolved(default_size=64, default_guidance=3.0).guidance_scale == 5.0


def test_infotext_is_a1111_shaped() -> None:
    p = params(seed=5, width=64, height=64, negative_prompt="模糊", scheduler="Euler a").resolved(default_size=64)
    text = infotext(p, 6)
    assert text.splitlines()[0] == "一只猫在草地上"
    assert "Negative prompt: 模糊" in text
    assert "Steps: 20, Sampler: Euler a, CFG scale: 7.5, Seed: 6, Size: 64x64, Model: demo" in text
