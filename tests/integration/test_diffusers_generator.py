"""The diffusers adapter against real tiny pipelines built from configs (no downloads)."""

from __future__ import annotations

import hashlib
import json
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from diffusers import (
    AutoencoderKL,
    PNDMScheduler,
    StableDiffusionPipeline,
    UNet2DConditionModel,
)
from diffusers.pipelines.stable_diffusion.safety_checker import StableDiffusionSafetyChecker
from transformers import BertTokenizer, CLIPConfig, CLIPTextConfig, CLIPTextModel, CLIPTokenizer

from app.adapters.diffusers.demo import build_demo_model
from app.adapters.diffusers.generator import DiffusersImageGenerator
from app.adapters.diffusers.layout import inspect_model
from app.domain.errors import JobCancelled, ModelUnavailable
from app.domain.generation import SCHEDULERS, GenerationParams
from app.domain.models import ModelInfo
from app.ports.generation import GeneratedImage, GenerationRequest
from tests.fakes import RecordingProgress

SIZE = 64


@pytest.fixture(scope="session", autouse=True)
def _one_torch_thread() -> None:
    torch.set_num_threads(1)


@pytest.fixture(scope="session")
def demo_dir(tmp_path_factory: pytest.TempPathFactory) -> str:
    return build_demo_model(str(tmp_path_factory.mktemp("models") / "demo"), seed=0)


@pytest.fixture(scope="module")
def generator() -> Iterator[DiffusersImageGenerator]:
    gen = DiffusersImageGenerator()
    yield gen
    gen.unload_all()


def _generate(gen: DiffusersImageGenerator, model: ModelInfo, params: GenerationParams, progress: Any) -> list[Any]:
    return gen.generate(GenerationRequest(model, params), progress)


def _model(path: str | Path, name: str = "demo") -> ModelInfo:
    return ModelInfo(name=name, path=str(path), source=str(path))


def _params(**overrides: Any) -> GenerationParams:
    values: dict[str, Any] = {"prompt": "一只猫在草地上", "model": "demo", "width": SIZE, "height": SIZE}
    return GenerationParams(**{**values, "steps": 2, "seed": 1234, **overrides})


def _pixels(image: GeneratedImage) -> np.ndarray:
    return np.frombuffer(image.rgb, dtype=np.uint8).astype(np.int16)


def _assert_close(batched: GeneratedImage, single: GeneratedImage) -> None:
    """Same noise per image, but batches of different sizes round floats differently: measured <3e-6
    before quantization, i.e. one level on at most 4 of the 12,288 bytes (9 schedulers x 60 images).
    A wrong seed, prompt or shared generator changes nearly every byte by far more."""
    diff = np.abs(_pixels(batched) - _pixels(single))
    assert diff.max() <= 2
    assert np.count_nonzero(diff) <= diff.size // 100


# ---------------------------------------------------------------- generation on the demo model


@pytest.mark.parametrize("scheduler", [*SCHEDULERS, None])
def test_every_scheduler_runs(generator: DiffusersImageGenerator, demo_dir: str, scheduler: str | None) -> None:
    progress = RecordingProgress()
    [image] = _generate(generator, _model(demo_dir), _params(scheduler=scheduler), progress)
    assert (image.width, image.height, image.seed, image.nsfw) == (SIZE, SIZE, 1234, None)
    assert len(image.rgb) == SIZE * SIZE * 3
    total = progress.calls[-1][1]
    assert total >= 2  # Heun and PNDM take more model evaluations than steps
    assert progress.calls == [(i, total) for i in range(1, total + 1)]


def test_same_params_give_identical_pixels(generator: DiffusersImageGenerator, demo_dir: str) -> None:
    first = _generate(generator, _model(demo_dir), _params(scheduler="Euler a"), RecordingProgress())
    again = _generate(generator, _model(demo_dir), _params(scheduler="Euler a"), RecordingProgress())
    other = _generate(generator, _model(demo_dir), _params(scheduler="Euler a", seed=1235), RecordingProgress())
    assert first[0].rgb == again[0].rgb
    assert first[0].rgb != other[0].rgb


@pytest.mark.parametrize("scheduler", ["Euler a", "DPM++ 2M", "DPM++ SDE Karras", "DPM++ 2M SDE"])
def test_image_i_of_a_job_is_the_single_image_job_with_seed_plus_i(
    generator: DiffusersImageGenerator, demo_dir: str, scheduler: str
) -> None:
    model = _model(demo_dir)
    pair = _generate(generator, model, _params(num_images=2, scheduler=scheduler), RecordingProgress())
    singles = [
        _generate(generator, model, _params(seed=s, scheduler=scheduler), RecordingProgress())[0] for s in (1234, 1235)
    ]
    assert [image.seed for image in pair] == [1234, 1235]
    assert np.abs(_pixels(pair[0]) - _pixels(pair[1])).max() > 10
    for batched, single in zip(pair, singles, strict=True):
        # Same noise per image, but a batch of 2 and a batch of 1 round floats differently: measured <3e-6
        # before quantization, i.e. one level on at most 4 of the 12,288 bytes (9 schedulers x 60 images).
        # A wrong seed or a shared generator changes nearly every byte by far more.
        diff = np.abs(_pixels(batched) - _pixels(single))
        assert diff.max() <= 2
        assert np.count_nonzero(diff) <= diff.size // 100


def test_progress_is_reported_once_per_step(generator: DiffusersImageGenerator, demo_dir: str) -> None:
    progress = RecordingProgress()
    _generate(generator, _model(demo_dir), _params(steps=3, scheduler="Euler"), progress)
    assert progress.calls == [(1, 3), (2, 3), (3, 3)]


def test_cancel_at_step_one_stops_the_run(generator: DiffusersImageGenerator, demo_dir: str) -> None:
    progress = RecordingProgress(cancel_at=1)
    with pytest.raises(JobCancelled) as caught:
        _generate(generator, _model(demo_dir), _params(steps=3, num_images=2), progress)
    assert caught.type is JobCancelled
    assert progress.calls == [(1, 3)]  # any further step would have reported again
    [image] = _generate(generator, _model(demo_dir), _params(), RecordingProgress())  # the model is usable again
    assert len(image.rgb) == SIZE * SIZE * 3


def test_concurrent_requests_load_the_model_once(demo_dir: str) -> None:
    gen = DiffusersImageGenerator()
    loads: list[str] = []
    real_load = gen._load

    def slow_counting_load(path: str) -> Any:
        loads.append(path)
        time.sleep(0.2)  # both threads are waiting by now
        return real_load(path)

    gen._load = slow_counting_load  # type: ignore[method-assign]
    results: list[bytes] = []

    def request() -> None:
        results.append(_generate(gen, _model(demo_dir), _params(), RecordingProgress())[0].rgb)

    threads = [threading.Thread(target=request) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert loads == [demo_dir]
    assert len(results) == 2 and results[0] == results[1]
    gen.unload_all()
    assert gen._models == {}


# ---------------------------------------------------------------- the demo model and folder layout


def _weight_hashes(folder: str) -> dict[str, str]:
    files = sorted(p for p in Path(folder).rglob("*") if p.suffix in {".safetensors", ".bin"})
    assert len(files) == 3
    return {str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest() for p in files}


def test_demo_builder_is_deterministic(tmp_path: Path, demo_dir: str) -> None:
    again = build_demo_model(str(tmp_path / "again"), seed=0)
    other = build_demo_model(str(tmp_path / "other"), seed=1)
    assert _weight_hashes(again) == _weight_hashes(demo_dir)
    different = _weight_hashes(other)
    assert all(different[name] != digest for name, digest in _weight_hashes(demo_dir).items())
    assert json.loads((Path(other) / "atelier-demo.json").read_text())["seed"] == 1
    assert sorted(p.name for p in tmp_path.iterdir()) == ["again", "other"]  # no temporary folder left behind
    with pytest.raises(FileExistsError):
        build_demo_model(again)


def test_demo_tokenizer_splits_chinese_into_characters(demo_dir: str) -> None:
    tokenizer = BertTokenizer.from_pretrained(demo_dir, subfolder="tokenizer")
    assert len(tokenizer) == 21128 and tokenizer.model_max_length == 32
    tokens = tokenizer.convert_ids_to_tokens(tokenizer("一只猫在草地上").input_ids)
    assert tokens == ["[CLS]", "一", "只", "猫", "在", "草", "地", "上", "[SEP]"]


def test_inspect_model(tmp_path: Path, demo_dir: str) -> None:
    described = {"default_size": 64, "tokenizer": "bert", "pipeline": "StableDiffusionPipeline", "family": "sd"}
    assert inspect_model(demo_dir) == {**described, "latent": "AutoencoderKL:4:2"}  # class, channels, downscale
    with pytest.raises(ModelUnavailable, match="not a diffusers model folder"):
        inspect_model(str(tmp_path))
    index = '{"_class_name": "PixArtSigmaPipeline", "tokenizer": ["transformers", "T5Tokenizer"]}'
    (tmp_path / "model_index.json").write_text(index)
    described = {"default_size": 1024, "tokenizer": "t5", "pipeline": "PixArtSigmaPipeline", "family": "pixart-sigma"}
    assert inspect_model(str(tmp_path)) == {**described, "latent": None}  # no vae/ to read
    (tmp_path / "model_index.json").write_text('{"_class_name": "X"}')
    with pytest.raises(ModelUnavailable, match=r"X pipeline, which Atelier does not serve\. Supported families: Sta"):
        inspect_model(str(tmp_path))


def test_missing_or_corrupt_model_is_unavailable(tmp_path: Path, demo_dir: str) -> None:
    gen = DiffusersImageGenerator()
    missing = tmp_path / "nowhere"
    with pytest.raises(ModelUnavailable, match="nowhere"):
        _generate(gen, _model(missing), _params(), RecordingProgress())
    broken = tmp_path / "broken"
    for source in Path(demo_dir).rglob("*"):
        if source.is_file():
            (broken / source.relative_to(demo_dir)).parent.mkdir(parents=True, exist_ok=True)
            (broken / source.relative_to(demo_dir)).write_bytes(source.read_bytes())
    (broken / "unet" / "diffusion_pytorch_model.safetensors").write_bytes(b"not a safetensors file")
    with pytest.raises(ModelUnavailable, match="broken") as caught:
        _generate(gen, _model(broken), _params(), RecordingProgress())
    assert caught.value.__cause__ is not None


# ---------------------------------------------------------------- other layouts: 2023 PAI folder, CLIP tokenizer


def _tiny_unet_vae() -> tuple[UNet2DConditionModel, AutoencoderKL]:
    torch.manual_seed(0)
    unet = UNet2DConditionModel(
        sample_size=32,
        layers_per_block=1,
        block_out_channels=(32, 64),
        down_block_types=("DownBlock2D", "CrossAttnDownBlock2D"),
        up_block_types=("CrossAttnUpBlock2D", "UpBlock2D"),
        cross_attention_dim=32,
        attention_head_dim=8,
        norm_num_groups=32,
    )
    vae = AutoencoderKL(
        block_out_channels=(32, 64),
        latent_channels=4,
        layers_per_block=1,
        down_block_types=("DownEncoderBlock2D",) * 2,
        up_block_types=("UpDecoderBlock2D",) * 2,
        norm_num_groups=32,
    )
    return unet, vae


def _text_encoder(vocab_size: int, bos: int, eos: int, pad: int) -> CLIPTextModel:
    config = CLIPTextConfig(
        vocab_size=vocab_size,
        hidden_size=32,
        intermediate_size=37,
        num_attention_heads=4,
        num_hidden_layers=2,
        max_position_embeddings=32,
        bos_token_id=bos,
        eos_token_id=eos,
        pad_token_id=pad,
    )
    return CLIPTextModel(config)


def _write_json(path: Path, data: dict[str, object]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(data), encoding="utf-8")


def _build_pai_2023(root: Path, model_max_length: int | None) -> Path:
    """The 2023 PAI-Diffusion layout: pickled .bin weights, a vocab.txt-only BERT tokenizer, a bundled checker."""
    vocab = ["[PAD]", *(f"[unused{i}]" for i in range(1, 10)), "[UNK]", "[CLS]", "[SEP]", "[MASK]"]
    vocab += [chr(c) for c in range(33, 127)] + list("一只猫在草地上山水花鸟")
    (root / "tokenizer").mkdir(parents=True)
    (root / "tokenizer" / "vocab.txt").write_text("\n".join(vocab) + "\n", encoding="utf-8")
    tokenizer_config: dict[str, object] = {"tokenizer_class": "BertTokenizer", "do_lower_case": True}
    if model_max_length is not None:
        tokenizer_config["model_max_length"] = model_max_length
    _write_json(root / "tokenizer" / "tokenizer_config.json", tokenizer_config)
    special = {"unk_token": "[UNK]", "sep_token": "[SEP]", "pad_token": "[PAD]", "cls_token": "[CLS]"}
    _write_json(root / "tokenizer" / "special_tokens_map.json", {**special, "mask_token": "[MASK]"})
    unet, vae = _tiny_unet_vae()
    text_encoder = _text_encoder(len(vocab), vocab.index("[CLS]"), vocab.index("[SEP]"), 0)
    vision = {"hidden_size": 32, "intermediate_size": 37, "num_attention_heads": 4, "num_hidden_layers": 2}
    checker_config = CLIPConfig(
        text_config={"hidden_size": 32, "intermediate_size": 37, "num_attention_heads": 4, "num_hidden_layers": 2},
        vision_config={**vision, "image_size": 32, "patch_size": 4},
        projection_dim=32,
    )
    checker = StableDiffusionSafetyChecker(checker_config)
    for folder, model, weights in [
        ("unet", unet, "diffusion_pytorch_model.bin"),
        ("vae", vae, "diffusion_pytorch_model.bin"),
        ("text_encoder", text_encoder, "pytorch_model.bin"),
        ("safety_checker", checker, "pytorch_model.bin"),
    ]:
        (root / folder).mkdir(exist_ok=True)
        model.save_config(root / folder) if folder in {"unet", "vae"} else model.config.save_pretrained(root / folder)
        torch.save(model.state_dict(), root / folder / weights)
    PNDMScheduler(
        beta_start=0.00085, beta_end=0.012, beta_schedule="scaled_linear", skip_prk_steps=True
    ).save_pretrained(root / "scheduler")
    clip_mean, clip_std = [0.48145466, 0.4578275, 0.40821073], [0.26862954, 0.26130258, 0.27577711]
    _write_json(
        root / "feature_extractor" / "preprocessor_config.json",
        {"feature_extractor_type": "CLIPFeatureExtractor", "crop_size": 32, "size": 32, "do_resize": True}
        | {"do_center_crop": True, "do_normalize": True, "image_mean": clip_mean, "image_std": clip_std, "resample": 3},
    )
    index = {"_class_name": "StableDiffusionPipeline", "_diffusers_version": "0.14.0", "requires_safety_checker": True}
    index |= {
        "feature_extractor": ["transformers", "CLIPFeatureExtractor"],
        "scheduler": ["diffusers", "PNDMScheduler"],
    }
    index |= {"safety_checker": ["stable_diffusion", "StableDiffusionSafetyChecker"]}
    index |= {"text_encoder": ["transformers", "CLIPTextModel"], "tokenizer": ["transformers", "BertTokenizer"]}
    index |= {"unet": ["diffusers", "UNet2DConditionModel"], "vae": ["diffusers", "AutoencoderKL"]}
    _write_json(root / "model_index.json", index)
    return root


@pytest.mark.parametrize("model_max_length", [32, None])
def test_pai_2023_layout_loads_and_flags_nsfw(tmp_path: Path, model_max_length: int | None) -> None:
    root = _build_pai_2023(tmp_path / "pai", model_max_length)
    assert not list(root.rglob("*.safetensors")) and not (root / "tokenizer" / "tokenizer.json").exists()
    assert inspect_model(str(root))["tokenizer"] == "bert"
    gen = DiffusersImageGenerator()
    progress = RecordingProgress()
    images = _generate(gen, _model(root, "pai"), _params(model="pai", num_images=2), progress)
    assert [type(image.nsfw) for image in images] == [bool, bool]
    assert progress.calls[-1] == (3, 3)  # PNDM without PRK steps: one extra model evaluation
    # A missing model_max_length falls back to the text encoder's 32 positions instead of ~1e30.
    assert gen._models[str(root)].pipe.tokenizer.model_max_length == 32
    gen.unload_all()


def test_a_deployment_can_turn_the_bundled_safety_checker_off(tmp_path: Path) -> None:
    root = _build_pai_2023(tmp_path / "pai", 32)
    gen = DiffusersImageGenerator(safety_checker=False)
    images = _generate(gen, _model(root, "pai"), _params(model="pai"), RecordingProgress())
    assert images[0].nsfw is None
    on = _generate(DiffusersImageGenerator(), _model(root, "pai"), _params(model="pai"), RecordingProgress())
    assert isinstance(on[0].nsfw, bool)


def _byte_level_chars() -> list[str]:
    printable = [*range(ord("!"), ord("~") + 1), *range(ord("¡"), ord("¬") + 1), *range(ord("®"), ord("ÿ") + 1)]
    chars, extra = [], 0
    for b in range(256):
        if b in printable:
            chars.append(chr(b))
        else:
            chars.append(chr(256 + extra))
            extra += 1
    return chars


def test_clip_tokenizer_model_generates(tmp_path: Path) -> None:
    chars = _byte_level_chars()
    tokens = [*chars, *(c + "</w>" for c in chars), "</w>", "ca", "cat</w>", "<|startoftext|>", "<|endoftext|>"]
    (tmp_path / "tok").mkdir()
    _write_json(tmp_path / "tok" / "vocab.json", {token: i for i, token in enumerate(tokens)})
    (tmp_path / "tok" / "merges.txt").write_text("#version: 0.2\nc a\nca t</w>\n", encoding="utf-8")
    tokenizer = CLIPTokenizer.from_pretrained(tmp_path / "tok", model_max_length=32)
    assert tokenizer.convert_ids_to_tokens(tokenizer("cat").input_ids)[1] == "cat</w>"
    eos = tokenizer.convert_tokens_to_ids("<|endoftext|>")
    unet, vae = _tiny_unet_vae()
    pipe = StableDiffusionPipeline(
        vae=vae,
        text_encoder=_text_encoder(len(tokenizer), tokenizer.convert_tokens_to_ids("<|startoftext|>"), eos, eos),
        tokenizer=tokenizer,
        unet=unet,
        scheduler=PNDMScheduler(skip_prk_steps=True),
        safety_checker=None,
        feature_extractor=None,
        requires_safety_checker=False,
    )
    pipe.save_pretrained(tmp_path / "clip")
    assert inspect_model(str(tmp_path / "clip"))["tokenizer"] == "clip"
    gen = DiffusersImageGenerator()
    images = _generate(
        gen, _model(tmp_path / "clip", "clip"), _params(model="clip", prompt="a cat"), RecordingProgress()
    )
    assert len(images) == 1 and len(images[0].rgb) == SIZE * SIZE * 3 and images[0].nsfw is None
    gen.unload_all()


def test_a_batched_image_is_the_image_of_the_same_job_alone(demo_dir: str) -> None:
    gen = DiffusersImageGenerator()
    model = _model(demo_dir)
    requests = [
        GenerationRequest(model, _params(prompt="一只红色的圆形", seed=7, num_images=2, scheduler="Euler a")),
        GenerationRequest(model, _params(prompt="蓝色的正方形在左上", seed=99, scheduler="Euler a")),
        GenerationRequest(model, _params(prompt="长" * 80, seed=5, scheduler="Euler a")),  # 3 chunks: own group
    ]
    sinks = [RecordingProgress() for _ in requests]
    batched = gen.generate_batch(requests, sinks)
    for request, outcome, sink in zip(requests, batched, sinks, strict=True):
        assert not isinstance(outcome, Exception)
        alone = gen.generate(request, RecordingProgress())
        assert [image.seed for image in outcome] == request.params.image_seeds()
        for a, b in zip(outcome, alone, strict=True):
            _assert_close(a, b)
        assert sink.calls[-1] == (2, 2)


def test_cancelling_one_request_of_a_batch_keeps_the_others(demo_dir: str) -> None:
    gen = DiffusersImageGenerator()
    model = _model(demo_dir)
    requests = [GenerationRequest(model, _params(seed=s, steps=4)) for s in (1, 2)]
    kept, cancelled = RecordingProgress(), RecordingProgress(cancel_at=1)
    outcomes = gen.generate_batch(requests, [kept, cancelled])
    assert isinstance(outcomes[1], JobCancelled) and not isinstance(outcomes[0], Exception)
    assert cancelled.calls == [(1, 4)] and kept.calls[-1] == (4, 4)  # told once, then left alone
    everyone = [RecordingProgress(cancel_at=1), RecordingProgress(cancel_at=1)]
    outcomes = gen.generate_batch(requests, everyone)
    assert all(isinstance(o, JobCancelled) for o in outcomes)
    assert [sink.calls for sink in everyone] == [[(1, 4)], [(1, 4)]]  # the call stopped after step 1


def test_the_pipeline_cache_keeps_models_within_its_budget(demo_dir: str, tmp_path: Path) -> None:
    second = build_demo_model(str(tmp_path / "second"), seed=1)
    roomy = DiffusersImageGenerator()
    for path in (demo_dir, second, demo_dir, second):  # switching back does not reload
        _generate(roomy, _model(path), _params(), RecordingProgress())
    assert roomy.loads == 2 and [p for p, _ in roomy.loaded_models()] == [demo_dir, second]
    one_model = roomy.loaded_models()[0][1]
    assert one_model > 1_000_000

    tight = DiffusersImageGenerator(cache_bytes=one_model + one_model // 2)  # room for one pipeline
    first = _generate(tight, _model(demo_dir), _params(), RecordingProgress())
    _generate(tight, _model(second), _params(), RecordingProgress())
    assert [p for p, _ in tight.loaded_models()] == [second]  # the least recently used went
    again = _generate(tight, _model(demo_dir), _params(), RecordingProgress())
    assert tight.loads == 3 and first[0].rgb == again[0].rgb  # reloaded, same result
