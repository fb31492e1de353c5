"""Training an image LoRA on the tiny random demo pipeline: it learns, resumes bit for bit, writes a diffusers/PEFT
file and a kohya one that load to the same LoRA, renders samples at checkpoints, and refuses bad data."""

from __future__ import annotations

import io
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from PIL import Image
from safetensors.torch import load_file

from app.adapters.diffusers.lora import LoraManager, load_lora_state
from app.adapters.diffusers.lora_training import ImageLoraSettings, buckets, train_image_lora
from app.domain.errors import InvalidParameters
from app.domain.image_dataset import CaptionedImage, pack_image_archive, parse_image_archive
from app.lab.demo_world.evaluate import load_pipeline


def _png(colour: tuple[int, int, int], width: int = 64, height: int = 64) -> bytes:
    image = np.zeros((height, width, 3), dtype=np.uint8)
    image[:] = (128, 128, 128)
    image[height // 4 : 3 * height // 4, width // 4 : 3 * width // 4] = colour
    buffer = io.BytesIO()
    Image.fromarray(image).save(buffer, format="PNG")
    return buffer.getvalue()


IMAGES = [
    CaptionedImage(f"{i}.png", _png(((40 * i) % 255, 200, 100)), f"一个粉色的方形 {i}" if i % 2 else None)
    for i in range(6)
]


def _weights(folder: Path) -> dict[str, torch.Tensor]:
    return load_file(str(folder / "pytorch_lora_weights.safetensors"))


def _drawer(pipe: Any) -> Callable[[list[tuple[str, str, float]]], np.ndarray]:
    """Draws "一个方形" at 64 pixels, 2 steps, seed 0, with the given LoRAs active (Atelier's loader)."""
    manager = LoraManager()

    def image(loras: list[tuple[str, str, float]]) -> np.ndarray:
        manager.activate(pipe, loras)
        generator = torch.Generator().manual_seed(0)
        out = pipe("一个方形", num_inference_steps=2, height=64, width=64, generator=generator, output_type="np")
        return np.asarray(out.images[0])

    return image


def test_a_lora_learns_resumes_bit_for_bit_and_loads_in_both_formats(demo_model: str, tmp_path: Path) -> None:
    settings = ImageLoraSettings(
        epochs=4,
        learning_rate=1e-3,
        batch_size=2,
        rank=4,
        trigger_word="pnk",
        checkpoint_every=4,
        sample_prompts=("pnk, 一个方形",),
        sample_steps=2,
    )
    losses: list[float] = []
    sampled: list[tuple[int, list[str]]] = []
    whole = train_image_lora(
        demo_model,
        IMAGES,
        str(tmp_path / "whole"),
        str(tmp_path / "work-whole"),
        settings,
        progress=lambda step, total, loss, _: losses.append(loss),
        samples=lambda step, names: sampled.append((step, names)),
    )
    assert whole.finished and whole.steps == 12 and len(losses) == 12 and whole.resumed_from == 0
    assert [step for step, _ in sampled] == [4, 8, 12]
    for _, names in sampled:
        assert Image.open(tmp_path / "work-whole" / "samples" / names[0]).size == (64, 64)

    stops = iter([False, False, False, False, False, True])
    first = train_image_lora(
        demo_model, IMAGES, str(tmp_path / "split"), str(tmp_path / "work"), settings, cancelled=lambda: next(stops)
    )
    assert not first.finished and first.steps == 6 and not (tmp_path / "split").exists()
    second = train_image_lora(demo_model, IMAGES, str(tmp_path / "split"), str(tmp_path / "work"), settings)
    assert second.finished and second.resumed_from == 6 and second.steps == 12
    a, b = _weights(tmp_path / "whole"), _weights(tmp_path / "split")
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)

    # The diffusers/PEFT file and the kohya file are one LoRA: the same image through Atelier's loader.
    kohya = tmp_path / "whole" / "whole.safetensors"
    assert all(k.startswith("lora_unet_") for k in load_file(str(kohya)))
    assert any(k.endswith(".alpha") for k in load_file(str(kohya)))
    pipe = load_pipeline(demo_model)
    manager = LoraManager()

    def image(loras: list[tuple[str, str, float]]) -> np.ndarray:
        manager.activate(pipe, loras)
        out = pipe("pnk, 一个方形", num_inference_steps=2, generator=torch.Generator().manual_seed(0), output_type="np")
        return np.asarray(out.images[0])

    plain = image([])
    diffusers_format = image([("peft", str(tmp_path / "whole"), 1.0)])
    kohya_format = image([("kohya", str(kohya), 1.0)])
    assert not np.allclose(plain, diffusers_format, atol=1e-4)
    np.testing.assert_allclose(diffusers_format, kohya_format, atol=2e-3)  # kohya's copy is stored in fp16
    assert load_lora_state(str(kohya))  # a format Atelier reads


def test_images_without_captions_need_a_trigger_word(demo_model: str, tmp_path: Path) -> None:
    with pytest.raises(InvalidParameters) as refused:
        train_image_lora(demo_model, IMAGES, str(tmp_path / "out"), str(tmp_path / "work"), ImageLoraSettings())
    assert refused.value.code == "missing_captions" and "0.png" in refused.value.message
    assert not (tmp_path / "work").exists()


def test_an_image_that_does_not_decode_is_named(demo_model: str, tmp_path: Path) -> None:
    broken = [*IMAGES[:1], CaptionedImage("broken.png", b"not a png", "x")]
    with pytest.raises(InvalidParameters, match=r"broken\.png"):
        train_image_lora(
            demo_model, broken, str(tmp_path / "o"), str(tmp_path / "w"), ImageLoraSettings(trigger_word="t")
        )


def test_buckets_keep_the_area_and_the_aspect(demo_model: str, tmp_path: Path) -> None:
    found = buckets(512, 64)
    assert (512, 512) in found and all(w % 64 == 0 and h % 64 == 0 for w, h in found)
    assert all(0.75 * 512 * 512 <= w * h <= 1.3 * 512 * 512 for w, h in found)
    assert all(max(w / h, h / w) <= 2 for w, h in found)
    wide = [CaptionedImage(f"w{i}.png", _png((200, 50, 50), 128, 64), "宽") for i in range(2)]
    tall = [CaptionedImage(f"t{i}.png", _png((50, 50, 200), 64, 128), "高") for i in range(2)]
    settings = ImageLoraSettings(epochs=1, batch_size=4, rank=2, crop="bucket")
    result = train_image_lora(demo_model, wide + tall, str(tmp_path / "o"), str(tmp_path / "w"), settings)
    assert result.finished and result.steps == 2  # a batch per bucket: wide and tall never share one


def test_an_archive_reads_sidecars_and_jsonl_captions() -> None:
    files = {
        "a.png": _png((1, 2, 3)),
        "a.txt": "一个红色的圆形".encode(),
        "sub/b.jpg": _png((4, 5, 6)),
        "sub/metadata.jsonl": b'{"file_name": "b.jpg", "text": "a blue square"}\n',
        "c.webp": _png((7, 8, 9)),
        "__MACOSX/._a.png": b"junk",
    }
    images = parse_image_archive(pack_image_archive(files))
    assert [(i.name, i.caption) for i in images] == [
        ("a.png", "一个红色的圆形"),
        ("c.webp", None),
        ("sub/b.jpg", "a blue square"),
    ]


@pytest.mark.parametrize(
    ("files", "message"),
    [
        ({"readme.txt": b"no images"}, "holds no image"),
        ({"a.png": b"x", "m.jsonl": b"{not json}\n"}, "m.jsonl, line 1: not valid JSON"),
        ({"a.png": b"x", "m.jsonl": b'{"file_name": "z.png", "text": "t"}\n'}, "no image 'z.png'"),
        ({"a.png": b"x", "m.jsonl": b'{"name": "a.png"}\n'}, "expected"),
    ],
)
def test_a_bad_archive_is_refused_with_where(files: dict[str, bytes], message: str) -> None:
    with pytest.raises(InvalidParameters, match=message):
        parse_image_archive(pack_image_archive(files))


def test_what_is_not_a_zip_is_refused() -> None:
    with pytest.raises(InvalidParameters, match="not a zip"):
        parse_image_archive(b'{"messages": []}')


def test_an_sdxl_lora_conditions_on_both_encoders_and_loads_in_both_formats(tmp_path: Path) -> None:
    """SDXL: pooled text embedding and size ids in the loss, a LoRA on both text encoders, kohya's te1/te2 names."""
    from diffusers import StableDiffusionXLPipeline

    from app.adapters.diffusers.tiny import build_tiny

    base = build_tiny("sdxl", str(tmp_path / "sdxl"))
    settings = ImageLoraSettings(
        epochs=2, learning_rate=1e-3, batch_size=2, rank=4, resolution=64, crop="bucket", train_text_encoder=True
    )
    wide = [CaptionedImage(f"w{i}.png", _png((200, 40 * i, 90), 96, 48), "一个宽的方形") for i in range(2)]
    losses: list[float] = []
    result = train_image_lora(
        base,
        [*IMAGES[1::2], *wide],
        str(tmp_path / "xl"),
        str(tmp_path / "work"),
        settings,
        progress=lambda step, total, loss, _: losses.append(loss),
    )
    assert result.finished and len(losses) == result.steps == 6  # (3 square + 2 wide buckets of 2) x 2 epochs
    assert all(np.isfinite(losses))
    diffusers_keys = _weights(tmp_path / "xl").keys()
    assert {k.split(".")[0] for k in diffusers_keys} == {"unet", "text_encoder", "text_encoder_2"}
    kohya = tmp_path / "xl" / "xl.safetensors"
    prefixes = {k.split("_layers_")[0] for k in load_file(str(kohya)) if "_layers_" in k}
    assert prefixes == {"lora_te1_text_model_encoder", "lora_te2_text_model_encoder"}  # the names A1111 reads
    assert any(k.startswith("lora_unet_down_blocks_") for k in load_file(str(kohya)))
    pipe = StableDiffusionXLPipeline.from_pretrained(base, local_files_only=True)
    pipe.set_progress_bar_config(disable=True)
    image = _drawer(pipe)
    plain = image([])
    diffusers_format = image([("peft", str(tmp_path / "xl"), 1.0)])
    kohya_format = image([("kohya", str(kohya), 1.0)])
    assert not np.allclose(plain, diffusers_format, atol=1e-4)
    np.testing.assert_allclose(diffusers_format, kohya_format, atol=2e-3)


TRANSFORMER_FAMILIES = {  # family: the pipeline class and its denoiser's name in the file
    "sd3": ("StableDiffusion3Pipeline", "transformer"),
    "flux": ("FluxPipeline", "transformer"),
    "sana": ("SanaPipeline", "transformer"),
    "qwen-image": ("QwenImagePipeline", "transformer"),
    "z-image": ("ZImagePipeline", "transformer"),
    "cogview4": ("CogView4Pipeline", "transformer"),
    "kolors": ("KolorsPipeline", "unet"),
}


@pytest.mark.parametrize("family", sorted(TRANSFORMER_FAMILIES))
def test_a_flow_matching_or_kolors_lora_learns_and_loads(family: str, tmp_path: Path) -> None:
    """SD3, FLUX and Sana train by rectified flow (FLUX on packed latents with its guidance input), Kolors as SDXL
    does: the flow loss falls on two pictures (the tiny UNet's noise loss stays near 1 at random timesteps), the
    diffusers file holds the denoiser's layers only, and it changes what the served pipeline draws."""
    import diffusers

    from app.adapters.diffusers.tiny import build_tiny

    pipeline, denoiser = TRANSFORMER_FAMILIES[family]
    base = build_tiny(family, str(tmp_path / family))
    settings = ImageLoraSettings(epochs=16, learning_rate=1e-2, batch_size=2, rank=8)
    losses: list[float] = []
    images = [IMAGES[1], CaptionedImage("3.png", IMAGES[3].data, "一个粉色的方形, 在画面的左上角, 很大")]
    result = train_image_lora(
        base,
        images,
        str(tmp_path / "lora"),
        str(tmp_path / "work"),
        settings,
        progress=lambda step, total, loss, _: losses.append(loss),
    )
    assert result.finished and len(losses) == 16
    if denoiser == "transformer":
        assert np.mean(losses[-4:]) < 0.95 * np.mean(losses[:4]), losses
    assert {k.split(".")[0] for k in _weights(tmp_path / "lora")} == {denoiser}
    assert sorted(p.name for p in (tmp_path / "lora").iterdir()) == ["pytorch_lora_weights.safetensors"]
    pipe = getattr(diffusers, pipeline).from_pretrained(base, local_files_only=True)
    pipe.set_progress_bar_config(disable=True)
    image = _drawer(pipe)
    assert not np.allclose(image([]), image([("lora", str(tmp_path / "lora"), 1.0)]), atol=1e-4)


def test_a_flux_lora_resumes_bit_for_bit_and_its_text_encoder_trains(tmp_path: Path) -> None:
    from app.adapters.diffusers.tiny import build_tiny

    base = build_tiny("flux", str(tmp_path / "flux"))
    settings = ImageLoraSettings(epochs=3, learning_rate=1e-3, batch_size=2, rank=4, train_text_encoder=True)
    images = IMAGES[1::2]
    whole = train_image_lora(base, images, str(tmp_path / "whole"), str(tmp_path / "w1"), settings)
    stops = iter([False, False, True])
    first = train_image_lora(
        base, images, str(tmp_path / "split"), str(tmp_path / "w2"), settings, cancelled=lambda: next(stops)
    )
    second = train_image_lora(base, images, str(tmp_path / "split"), str(tmp_path / "w2"), settings)
    assert whole.steps == second.steps == 6 and first.steps == 3 and second.resumed_from == 3
    a, b = _weights(tmp_path / "whole"), _weights(tmp_path / "split")
    assert {k.split(".")[0] for k in a} == {"transformer", "text_encoder"}
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


def test_a_family_whose_text_encoder_is_not_trained_says_so(tmp_path: Path) -> None:
    from app.adapters.diffusers.tiny import build_tiny

    base = build_tiny("sana", str(tmp_path / "sana"))
    with pytest.raises(InvalidParameters) as refused:
        train_image_lora(
            base, IMAGES[1::2], str(tmp_path / "o"), str(tmp_path / "w"), ImageLoraSettings(train_text_encoder=True)
        )
    assert refused.value.field == "train_text_encoder" and "Sana" in refused.value.message


def test_captions_encoded_one_by_one_batch_as_the_pipeline_encodes_them(tmp_path: Path) -> None:
    """Qwen-Image's captions differ in length: the cached embeddings, padded, are what the pipeline gives a batch."""
    from diffusers import QwenImagePipeline

    from app.adapters.diffusers.lora_training import ARCHITECTURES, _condition, _stack
    from app.adapters.diffusers.tiny import build_tiny
    from app.domain.families import Family

    pipe = QwenImagePipeline.from_pretrained(build_tiny("qwen-image", str(tmp_path / "q")), local_files_only=True)
    architecture = ARCHITECTURES[Family.QWEN_IMAGE]
    captions = ["一个方形", "一个粉色的方形, 在画面的左上角, 很大"]
    with torch.no_grad():
        alone = [_condition(pipe, architecture, [caption], "cpu") for caption in captions]
        together = _condition(pipe, architecture, captions, "cpu")
    assert alone[0]["context"].shape[1] < alone[1]["context"].shape[1]
    for key in ("context", "mask"):
        torch.testing.assert_close(_stack([part[key] for part in alone]), together[key])
