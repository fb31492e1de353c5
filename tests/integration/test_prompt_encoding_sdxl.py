"""Long, weighted A1111-syntax prompts encoded for the tiny SDXL base and refiner pipelines."""

from __future__ import annotations

import copy
from itertools import cycle, islice
from typing import Any

import diffusers
import numpy as np
import pytest
import torch

from app.adapters.diffusers.prompt_encoding import apply_weights, frame_tokens
from app.adapters.diffusers.prompt_encoding_sdxl import encode_sdxl_prompts, sdxl_chunk_count
from app.adapters.diffusers.tiny import build_tiny

# diffusers is untyped for mypy (lazy module, decorated constructors).
StableDiffusionXLPipeline: Any = diffusers.StableDiffusionXLPipeline
StableDiffusionXLImg2ImgPipeline: Any = diffusers.StableDiffusionXLImg2ImgPipeline

CPU = torch.device("cpu")
CONTEXT = 77
WIDTH = {"base": 32 + 32, "refiner": 32}  # the tiny text encoders' hidden sizes, concatenated
# One token each for the tiny CLIP tokenizer; eleven of them, so the 75-token chunks start on different words.
WORDS = ["the", "red", "painting", "of", "a", "and", "in", "on", "with", "is", "at"]
LONG = " ".join(islice(cycle(WORDS), 200))  # chunks of 75 + 75 + 50 tokens
FIRST_75 = " ".join(islice(cycle(WORDS), 75))
KEYS = ("prompt_embeds", "negative_prompt_embeds", "pooled_prompt_embeds", "negative_pooled_prompt_embeds")


@pytest.fixture(scope="module", autouse=True)
def _one_torch_thread() -> None:
    torch.set_num_threads(1)


@pytest.fixture(scope="module")
def base(tmp_path_factory: pytest.TempPathFactory) -> Any:
    path = build_tiny("sdxl", str(tmp_path_factory.mktemp("sdxl")))
    pipe = StableDiffusionXLPipeline.from_pretrained(path, local_files_only=True)
    pipe.set_progress_bar_config(disable=True)
    return pipe


@pytest.fixture(scope="module")
def refiner(tmp_path_factory: pytest.TempPathFactory) -> Any:
    path = build_tiny("sdxl-refiner", str(tmp_path_factory.mktemp("sdxl-refiner")))
    pipe = StableDiffusionXLImg2ImgPipeline.from_pretrained(path, local_files_only=True)
    pipe.set_progress_bar_config(disable=True)
    return pipe


@pytest.fixture(params=["base", "refiner"])
def which(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture
def pipe(which: str, base: Any, refiner: Any) -> Any:
    return base if which == "base" else refiner


def _diffusers(
    pipe: Any, prompts: list[str], negatives: list[str] | None, clip_skip: int = 1
) -> dict[str, torch.Tensor]:
    """``encode_prompt`` with A1111's ``clip_skip`` and an empty negative as diffusers' ``None``."""
    with torch.no_grad():
        out = pipe.encode_prompt(
            prompt=prompts,
            prompt_2=None,
            device=CPU,
            num_images_per_prompt=1,
            do_classifier_free_guidance=True,
            negative_prompt=negatives,
            clip_skip=None if clip_skip == 1 else clip_skip - 1,
        )
    return dict(zip(KEYS, out, strict=True))


def _encode(pipe: Any, prompts: list[str], negatives: list[str] | None = None, clip_skip: int = 1) -> dict[str, Any]:
    return encode_sdxl_prompts(pipe, prompts, negatives or [""] * len(prompts), CPU, clip_skip)


def _chunk(embeds: torch.Tensor, i: int) -> torch.Tensor:
    return embeds[:, CONTEXT * i : CONTEXT * (i + 1)]


def _close(a: torch.Tensor, b: torch.Tensor) -> bool:
    return a.shape == b.shape and torch.allclose(a, b, rtol=0, atol=1e-6)


@pytest.mark.parametrize("clip_skip", [1, 2])
@pytest.mark.parametrize("negatives", [["", ""], ["blurry", "low quality, at night"]])
def test_plain_short_prompts_match_the_pipeline_exactly(
    pipe: Any, which: str, clip_skip: int, negatives: list[str]
) -> None:
    prompts = ["a cat on a mat", "a red flower, blue sky"]
    expected = _diffusers(pipe, prompts, negatives if any(negatives) else None, clip_skip)
    out = _encode(pipe, prompts, negatives, clip_skip)
    assert out["prompt_embeds"].shape == (2, CONTEXT, WIDTH[which])
    assert out["prompt_embeds"].dtype == pipe.text_encoder_2.dtype
    for key in ("prompt_embeds", "pooled_prompt_embeds", "negative_pooled_prompt_embeds"):
        assert torch.equal(out[key], expected[key]), key
    if clip_skip == 1 or not any(negatives):
        assert torch.equal(out["negative_prompt_embeds"], expected["negative_prompt_embeds"])
    else:  # diffusers reads a negative prompt's penultimate layer whatever clip_skip is; A1111 skips for both
        as_prompts = _diffusers(pipe, negatives, None, clip_skip)["prompt_embeds"]
        assert torch.equal(out["negative_prompt_embeds"], as_prompts)
        assert not torch.equal(out["negative_prompt_embeds"], expected["negative_prompt_embeds"])
    tagged = _encode(pipe, [f"<lora:ink:0.8>{p}" for p in prompts], negatives, clip_skip)
    assert all(torch.equal(tagged[key], out[key]) for key in KEYS)


def test_each_tokenizer_pads_with_its_own_pad_token(base: Any) -> None:
    tokenizer_2 = copy.deepcopy(base.tokenizer_2)
    tokenizer_2.pad_token = "!"  # the real SDXL tokenizer_2 pads with "!", tokenizer with <|endoftext|>
    pipe = StableDiffusionXLPipeline(**{**base.components, "tokenizer_2": tokenizer_2})
    assert frame_tokens(pipe.tokenizer)[2] == pipe.tokenizer.eos_token_id
    assert frame_tokens(pipe.tokenizer_2)[2] == tokenizer_2.convert_tokens_to_ids("!") != tokenizer_2.eos_token_id
    expected = _diffusers(pipe, ["a cat"], ["blurry"])
    out = _encode(pipe, ["a cat"], ["blurry"])
    assert all(torch.equal(out[key], expected[key]) for key in KEYS)
    eos_padded = _encode(base, ["a cat"], ["blurry"])["prompt_embeds"]
    assert torch.equal(out["prompt_embeds"][..., :32], eos_padded[..., :32])
    assert not torch.allclose(out["prompt_embeds"][..., 32:], eos_padded[..., 32:])


def test_a_200_token_prompt_fills_three_chunks(pipe: Any, which: str) -> None:
    assert len(pipe.tokenizer_2(LONG, add_special_tokens=False).input_ids) == 200
    out = _encode(pipe, [LONG], ["blurry"])
    assert out["prompt_embeds"].shape == out["negative_prompt_embeds"].shape == (1, 3 * CONTEXT, WIDTH[which])
    first = _encode(pipe, [FIRST_75], ["blurry"])
    last = _encode(pipe, [" ".join(LONG.split()[150:])])
    blurry, empty = _encode(pipe, ["blurry"]), _encode(pipe, [""])
    assert _close(_chunk(out["prompt_embeds"], 0), first["prompt_embeds"])
    assert _close(_chunk(out["prompt_embeds"], 2), last["prompt_embeds"])
    assert not torch.allclose(_chunk(out["prompt_embeds"], 1), first["prompt_embeds"], atol=1e-3)
    assert _close(out["pooled_prompt_embeds"], first["pooled_prompt_embeds"])  # the first chunk's
    assert not torch.allclose(out["pooled_prompt_embeds"], last["pooled_prompt_embeds"], atol=1e-3)
    assert _close(_chunk(out["negative_prompt_embeds"], 0), blurry["prompt_embeds"])
    for i in (1, 2):  # the negative prompt is padded with empty chunks
        assert _close(_chunk(out["negative_prompt_embeds"], i), empty["prompt_embeds"])
    assert _close(out["negative_pooled_prompt_embeds"], blurry["pooled_prompt_embeds"])


def test_break_starts_a_new_chunk(pipe: Any, which: str) -> None:
    out = _encode(pipe, ["a cat BREAK a red flower"])
    assert out["prompt_embeds"].shape == (1, 2 * CONTEXT, WIDTH[which])
    cat, flower = _encode(pipe, ["a cat"]), _encode(pipe, ["a red flower"])
    assert _close(_chunk(out["prompt_embeds"], 0), cat["prompt_embeds"])
    assert _close(_chunk(out["prompt_embeds"], 1), flower["prompt_embeds"])
    assert _close(out["pooled_prompt_embeds"], cat["pooled_prompt_embeds"])


def test_weights_change_only_the_weighted_chunk(base: Any) -> None:
    tokenizer = base.tokenizer
    ids = tokenizer("a red flower").input_ids
    assert tokenizer.convert_ids_to_tokens(ids)[2] == "red</w>"  # <|startoftext|> a red flower
    plain = _encode(base, ["a cat BREAK a red flower"])
    weighted = _encode(base, ["a cat BREAK a (red:1.5) flower"])
    assert torch.equal(_chunk(weighted["prompt_embeds"], 0), _chunk(plain["prompt_embeds"], 0))
    assert torch.equal(weighted["pooled_prompt_embeds"], plain["pooled_prompt_embeds"])  # pooled is unweighted
    weights = torch.ones(1, CONTEXT)
    weights[0, 2] = 1.5
    chunk = _chunk(plain["prompt_embeds"], 1)
    expected = torch.cat([apply_weights(chunk[..., :32], weights), apply_weights(chunk[..., 32:], weights)], dim=-1)
    assert torch.allclose(_chunk(weighted["prompt_embeds"], 1), expected, rtol=0, atol=1e-6)
    for part in (slice(0, 32), slice(32, 64)):  # each encoder's mean is restored on its own
        assert torch.allclose(expected[..., part].mean(), chunk[..., part].mean(), atol=1e-6)
    change = (expected[0] - chunk[0]).norm(dim=-1) / chunk[0].norm(dim=-1)
    assert change[2] > 0.3 and float(change[torch.arange(CONTEXT) != 2].max()) < 0.1
    unit = _encode(base, ["a cat BREAK a (red:1) flower"])
    assert all(torch.equal(unit[key], plain[key]) for key in KEYS)


def test_each_batch_row_is_its_prompt_alone_padded_to_the_batch(base: Any) -> None:
    out = _encode(base, ["a cat", LONG], ["blurry", ""])
    assert out["prompt_embeds"].shape == out["negative_prompt_embeds"].shape == (2, 3 * CONTEXT, WIDTH["base"])
    cat, long, empty = _encode(base, ["a cat"], ["blurry"]), _encode(base, [LONG]), _encode(base, [""])
    assert _close(_chunk(out["prompt_embeds"][:1], 0), cat["prompt_embeds"])
    for i in (1, 2):
        assert _close(_chunk(out["prompt_embeds"][:1], i), empty["prompt_embeds"])
        assert _close(_chunk(out["negative_prompt_embeds"][:1], i), empty["prompt_embeds"])
    assert _close(_chunk(out["negative_prompt_embeds"][:1], 0), cat["negative_prompt_embeds"])
    assert _close(out["prompt_embeds"][1:], long["prompt_embeds"])
    assert _close(out["pooled_prompt_embeds"], torch.cat([cat["pooled_prompt_embeds"], long["pooled_prompt_embeds"]]))
    assert _close(out["negative_pooled_prompt_embeds"][:1], cat["negative_pooled_prompt_embeds"])
    assert not out["negative_prompt_embeds"][1].any() and not out["negative_pooled_prompt_embeds"][1].any()
    with pytest.raises(ValueError, match="one negative prompt per prompt"):
        encode_sdxl_prompts(base, ["a", "b"], [""], CPU)


def test_empty_negatives_are_zeroed_row_by_row(pipe: Any) -> None:
    assert pipe.config.force_zeros_for_empty_prompt
    out = _encode(pipe, ["a cat", "a cat", "a cat"], ["", "blurry", "  <lora:ink:0.5> BREAK "])
    for row in (0, 2):  # no tokens: diffusers' negative_prompt=None
        assert not out["negative_prompt_embeds"][row].any() and not out["negative_pooled_prompt_embeds"][row].any()
    blurry = _encode(pipe, ["a cat"], ["blurry"])
    assert _close(out["negative_prompt_embeds"][1:2], blurry["negative_prompt_embeds"])
    assert _close(out["negative_pooled_prompt_embeds"][1:2], blurry["negative_pooled_prompt_embeds"])
    assert out["negative_prompt_embeds"].dtype == out["prompt_embeds"].dtype


def test_empty_negatives_are_encoded_without_force_zeros(base: Any) -> None:
    pipe = StableDiffusionXLPipeline(**base.components, force_zeros_for_empty_prompt=False)
    expected = _diffusers(pipe, ["a cat", "a red flower"], None)
    out = _encode(pipe, ["a cat", "a red flower"], ["", ""])
    assert all(torch.equal(out[key], expected[key]) for key in KEYS)
    assert out["negative_prompt_embeds"].any()


def test_chunk_counts(pipe: Any) -> None:
    assert sdxl_chunk_count(pipe, "") == 1
    assert sdxl_chunk_count(pipe, "<lora:ink:0.5> a cat") == 1
    assert sdxl_chunk_count(pipe, FIRST_75) == 1
    assert sdxl_chunk_count(pipe, FIRST_75 + " cat") == 2
    assert sdxl_chunk_count(pipe, "a BREAK cat") == 2
    assert sdxl_chunk_count(pipe, LONG) == 3


def test_textual_inversion_tokens_are_expanded_for_both_tokenizers(base: Any) -> None:
    towers = {
        k: copy.deepcopy(base.components[k]) for k in ("tokenizer", "text_encoder", "tokenizer_2", "text_encoder_2")
    }
    pipe = StableDiffusionXLPipeline(**{**base.components, **towers})
    torch.manual_seed(0)
    for tokenizer, encoder in (("tokenizer", "text_encoder"), ("tokenizer_2", "text_encoder_2")):
        vectors = torch.randn(2, 32)  # two vectors: <ink> <ink>_1
        pipe.load_textual_inversion(vectors, token="<ink>", tokenizer=towers[tokenizer], text_encoder=towers[encoder])
    expected = _diffusers(pipe, ["a <ink> cat"], ["blurry <ink>"])
    out = _encode(pipe, ["a <ink> cat"], ["blurry <ink>"])
    assert all(torch.equal(out[key], expected[key]) for key in KEYS)


def _run(pipe: Any, **arguments: Any) -> np.ndarray:
    generator = torch.Generator().manual_seed(0)
    size = {"strength": 1.0} if "image" in arguments else {"height": 64, "width": 64}  # 2 steps of 2
    with torch.no_grad():
        output = pipe(**arguments, **size, num_inference_steps=2, generator=generator, output_type="np")
    return np.asarray(output.images)


@pytest.mark.parametrize("negative", ["", "blurry"])
def test_the_pipelines_take_the_embeddings(pipe: Any, which: str, negative: str) -> None:
    image = {} if which == "base" else {"image": torch.rand(1, 3, 64, 64, generator=torch.Generator().manual_seed(1))}
    expected = _run(pipe, prompt="a cat on a mat", negative_prompt=negative or None, **image)
    embeds = _encode(pipe, ["a cat on a mat"], [negative])
    assert np.array_equal(_run(pipe, **embeds, **image), expected)
    long_image = _run(pipe, **_encode(pipe, [LONG], [negative]), **image)
    assert long_image.shape == (1, 64, 64, 3) and np.isfinite(long_image).all()
