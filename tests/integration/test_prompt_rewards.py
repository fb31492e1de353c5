"""The aesthetic rewards: the demo world's image-quality score on rendered scenes, and the LAION-predictor
adapter on a tiny random CLIP with a predictor state dict in the published key layout."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest
import torch

from app.adapters.demo_world.checker import OpenCvSceneReader
from app.adapters.demo_world.render import render
from app.adapters.rewards.aesthetic import DemoAestheticReward, LaionAestheticReward, image_quality
from app.adapters.rewards.integrity import CheckerIntegrityReward
from app.demo_world.scenes import Scene, SceneObject
from app.ports.generation import RgbImage
from app.ports.prompt_sessions import RewardInput


def _image(pixels: np.ndarray) -> RgbImage:
    return RgbImage(pixels.shape[1], pixels.shape[0], np.ascontiguousarray(pixels, dtype=np.uint8).tobytes())


def _inputs(*images: RgbImage, prompt: str = "", instruction: str = "", source: str = "") -> list[RewardInput]:
    return [RewardInput(i, prompt, instruction, source) for i in images]


PLAIN = Scene((SceneObject("circle", "red", "center", "large"),), "white")
STYLED = Scene((SceneObject("circle", "red", "center", "large", ("outline",)),), "white")


def test_demo_aesthetic_prefers_styled_crisp_clean_pictures() -> None:
    plain = render(PLAIN)
    blurred = cv2.GaussianBlur(plain, (7, 7), 2.0)
    noisy = np.clip(plain.astype(int) + np.random.default_rng(0).integers(-40, 40, plain.shape), 0, 255)
    reward = DemoAestheticReward(OpenCvSceneReader())
    styled_s, plain_s, blurred_s, noisy_s = reward.score(
        _inputs(_image(render(STYLED)), _image(plain), _image(blurred), _image(noisy))
    )
    assert styled_s > plain_s > blurred_s and plain_s > noisy_s
    assert all(0.0 <= s <= 1.0 for s in (styled_s, plain_s, blurred_s, noisy_s))
    q = image_quality(_image(plain))
    assert q["cleanliness"] == 1.0 and q["sharpness"] > image_quality(_image(blurred))["sharpness"] + 0.5


def test_integrity_reward_on_rendered_scenes() -> None:
    source = "一个红色的大圆形在中间，白色背景"
    blue = Scene((SceneObject("circle", "blue", "center", "large"),), "white")
    moved = Scene((SceneObject("circle", "blue", "top-left", "large"),), "white")
    reward = CheckerIntegrityReward(OpenCvSceneReader())
    done, ignored, drifted = reward.score(
        _inputs(
            _image(render(blue)),
            _image(render(PLAIN)),
            _image(render(moved)),
            instruction="把圆形换成蓝色",
            source=source,
        )
    )
    # Asked: a large blue circle in the middle (4 attributes) on white; each wrong picture misses one
    # attribute: (3/4 + 1) / 2.
    assert done == 1.0 and ignored == pytest.approx(0.875) and drifted == pytest.approx(0.875)


@pytest.fixture(scope="module")
def tiny_clip(tmp_path_factory: pytest.TempPathFactory) -> tuple[str, str]:
    from transformers import CLIPImageProcessor, CLIPVisionConfig, CLIPVisionModelWithProjection

    folder = tmp_path_factory.mktemp("clip")
    config = CLIPVisionConfig(
        hidden_size=32,
        intermediate_size=64,
        num_hidden_layers=2,
        num_attention_heads=4,
        image_size=32,
        patch_size=8,
        projection_dim=24,
    )
    torch.manual_seed(0)
    CLIPVisionModelWithProjection(config).save_pretrained(folder / "clip")
    CLIPImageProcessor(size={"shortest_edge": 32}, crop_size={"height": 32, "width": 32}).save_pretrained(
        folder / "clip"
    )
    sizes = [(24, 1024), (1024, 128), (128, 64), (64, 16), (16, 1)]
    state = {}
    for index, (fan_in, fan_out) in zip((0, 2, 4, 6, 7), sizes, strict=True):
        state[f"layers.{index}.weight"] = torch.randn(fan_out, fan_in) * 0.1
        state[f"layers.{index}.bias"] = torch.zeros(fan_out)
    state["layers.7.bias"] = torch.tensor([5.5])  # a mid rating
    torch.save(state, folder / "predictor.pth")
    return str(folder / "clip"), str(folder / "predictor.pth")


def test_laion_adapter_loads_the_published_layout_and_maps_ratings(tiny_clip: tuple[str, str], tmp_path: Path) -> None:
    clip, predictor = tiny_clip
    reward = LaionAestheticReward(clip, predictor)
    images = [_image(render(PLAIN)), _image(render(STYLED, seed=1)), _image(np.zeros((48, 40, 3)))]
    ratings = reward.rating(images)
    assert len(set(round(r, 6) for r in ratings)) == 3  # the image matters
    scores = reward.score(_inputs(*images))
    assert scores == pytest.approx([(r - 1) / 9 for r in ratings]) and reward.score(_inputs(*images)) == scores
    state = torch.load(predictor, weights_only=True)
    state["layers.7.bias"] = torch.tensor([100.0])  # far above 10: clamped to 1
    torch.save(state, tmp_path / "high.pth")
    assert LaionAestheticReward(clip, str(tmp_path / "high.pth")).score(_inputs(*images)) == [1.0, 1.0, 1.0]


def test_bradley_terry_learns_a_simulated_users_taste(tmp_path: Path) -> None:
    from app.adapters.rewards.preference import BradleyTerryPreferenceReward
    from app.lab.prompts.preference import simulated_turn_pairs, train_preference

    reader = OpenCvSceneReader()
    groups = simulated_turn_pairs("styled", 100, 4, reader, seed=0)
    assert len(groups) == 100 and all(len(g) == 3 for g in groups)
    report = train_preference(groups, tmp_path / "preference.json", "simulated:styled")
    # Many picks are between candidates the taste scores equal (decided by the noise), so even the
    # user's own taste cannot predict them all; chance is 0.5.
    assert report["held_out_accuracy"] >= 0.65, report
    assert report["weights"]["style_outline"] > 0
    reward = BradleyTerryPreferenceReward(reader, str(tmp_path / "preference.json"))
    styled, plain = reward.score(_inputs(_image(render(STYLED)), _image(render(PLAIN))))
    assert styled > plain and 0 < plain < 1
    # Another taste is learnt as another model: the dark-background user prefers black to white.
    dark = train_preference(simulated_turn_pairs("dark", 100, 4, reader, seed=1), tmp_path / "dark.json", "dark")
    assert dark["weights"]["dark_background"] > 0 and dark["held_out_accuracy"] >= 0.65


def test_preference_reward_needs_a_fitted_model(tmp_path: Path) -> None:
    from app.adapters.rewards.preference import BradleyTerryPreferenceReward
    from app.domain.errors import ModelUnavailable

    with pytest.raises(ModelUnavailable, match="train-preference"):
        BradleyTerryPreferenceReward(OpenCvSceneReader(), str(tmp_path / "missing.json"))
    (tmp_path / "old.json").write_text('{"features": ["sharpness"], "weights": [1.0]}')
    with pytest.raises(ModelUnavailable, match="other features"):
        BradleyTerryPreferenceReward(OpenCvSceneReader(), str(tmp_path / "old.json"))


@pytest.fixture(scope="module")
def tiny_chinese_clip(tmp_path_factory: pytest.TempPathFactory) -> str:
    """A random Chinese-CLIP (BERT text tower over the shipped bert-base-chinese vocabulary), saved like a release."""
    from transformers import (
        BertTokenizer,
        ChineseCLIPConfig,
        ChineseCLIPImageProcessor,
        ChineseCLIPModel,
        ChineseCLIPProcessor,
    )

    from app.adapters.diffusers.demo import VOCAB_FILE  # the shipped bert-base-chinese vocabulary

    folder = tmp_path_factory.mktemp("cn-clip") / "model"
    tokenizer = BertTokenizer(str(VOCAB_FILE))
    text = {"vocab_size": tokenizer.vocab_size, "hidden_size": 32, "num_hidden_layers": 2,
            "num_attention_heads": 4, "intermediate_size": 64, "max_position_embeddings": 64}  # fmt: skip
    vision = {"hidden_size": 32, "intermediate_size": 64, "num_hidden_layers": 2, "num_attention_heads": 4,
              "image_size": 32, "patch_size": 8}  # fmt: skip
    torch.manual_seed(0)
    ChineseCLIPModel(ChineseCLIPConfig(text_config=text, vision_config=vision, projection_dim=24)).save_pretrained(
        folder
    )
    images = ChineseCLIPImageProcessor(size={"shortest_edge": 32}, crop_size={"height": 32, "width": 32})
    ChineseCLIPProcessor(image_processor=images, tokenizer=tokenizer).save_pretrained(folder)
    return str(folder)


def test_clip_integrity_is_clipscore_of_each_image_against_its_prompt(tiny_chinese_clip: str) -> None:
    from transformers import AutoModel, AutoProcessor

    from app.adapters.rewards.clip_integrity import ClipIntegrityReward

    reward = ClipIntegrityReward(tiny_chinese_clip)
    red, blank = _image(render(PLAIN)), _image(np.zeros((48, 40, 3)))
    inputs = [RewardInput(red, "一个红色的圆形在中间", "", ""), RewardInput(blank, "一个红色的圆形在中间", "", "")]
    inputs.append(RewardInput(red, "一只蓝色的三角形在左边，白色背景", "", ""))
    cos = reward.similarity(inputs)
    # the same cosines from the model's own towers, one pair at a time
    model, processor = AutoModel.from_pretrained(tiny_chinese_clip), AutoProcessor.from_pretrained(tiny_chinese_clip)
    from PIL import Image

    for item, value in zip(inputs, cos, strict=True):
        picture = Image.frombytes("RGB", (item.image.width, item.image.height), item.image.rgb)
        batch = processor(text=[item.prompt], images=[picture], return_tensors="pt", padding=True)
        with torch.no_grad():
            image = model.get_image_features(pixel_values=batch["pixel_values"])
            text = model.get_text_features(
                input_ids=batch["input_ids"],
                attention_mask=batch["attention_mask"],
                token_type_ids=batch["token_type_ids"],
            )
        image = image if isinstance(image, torch.Tensor) else image.pooler_output
        text = text if isinstance(text, torch.Tensor) else text.pooler_output
        assert value == pytest.approx(float(torch.nn.functional.cosine_similarity(image, text)[0]), abs=1e-4)
    assert cos[0] != pytest.approx(cos[1]) and cos[0] != pytest.approx(cos[2])  # the image and the prompt matter
    assert reward.score(inputs) == pytest.approx([min(1.0, 2.5 * max(c, 0.0)) for c in cos])
    assert reward.score([]) == []


def test_clip_integrity_is_chosen_by_the_setting_and_a_missing_model_is_refused(
    tiny_chinese_clip: str, tmp_path: Path
) -> None:
    from app.adapters.rewards.clip_integrity import ClipIntegrityReward
    from app.composition.prompts import prompt_rewards as _prompt_rewards
    from app.domain.errors import ModelUnavailable
    from app.settings import Settings

    reader = OpenCvSceneReader()
    rewards = _prompt_rewards(Settings(data_dir=str(tmp_path), integrity_clip=tiny_chinese_clip), reader)
    assert [type(r).__name__ for r in rewards if r.name == "integrity"] == ["ClipIntegrityReward"]
    default = _prompt_rewards(Settings(data_dir=str(tmp_path)), reader)
    assert [type(r).__name__ for r in default if r.name == "integrity"] == ["CheckerIntegrityReward"]
    (tmp_path / "empty").mkdir()
    with pytest.raises(ModelUnavailable):
        ClipIntegrityReward(str(tmp_path / "empty"))
