"""Long, weighted A1111-syntax prompts encoded for real tiny pipelines (BERT and CLIP tokenizers)."""

from __future__ import annotations

import copy
import json
import logging
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import diffusers
import diffusers.utils.logging as _diffusers_logging
import numpy as np
import pytest
import torch
import transformers.utils.logging as _transformers_logging
from transformers import CLIPTextConfig, CLIPTextModel, CLIPTokenizer

from app.adapters.diffusers.prompt_encoding import apply_weights, encode_prompts, frame_tokens

# diffusers and the libraries' logging helpers are untyped for mypy (lazy module, decorated constructors).
StableDiffusionPipeline: Any = diffusers.StableDiffusionPipeline
diffusers_logging: Any = _diffusers_logging
transformers_logging: Any = _transformers_logging

CPU = torch.device("cpu")
POEM = "春眠不觉晓处处闻啼鸟夜来风雨声花落知多少"  # 20 characters, one BERT token each
LONG = POEM * 5  # 100 characters: chunks of 30 + 30 + 30 + 10 with a 32-token context
HIDDEN = 32


@pytest.fixture(scope="module", autouse=True)
def _one_torch_thread() -> None:
    torch.set_num_threads(1)


@pytest.fixture(scope="module")
def bert_pipe(demo_model: str) -> Any:
    pipe = StableDiffusionPipeline.from_pretrained(demo_model, local_files_only=True)
    pipe.set_progress_bar_config(disable=True)
    return pipe


def _byte_level_chars() -> list[str]:
    printable = [*range(ord("!"), ord("~") + 1), *range(ord("¡"), ord("¬") + 1), *range(ord("®"), ord("ÿ") + 1)]
    extra = iter(range(256, 512))
    return [chr(b) if b in printable else chr(next(extra)) for b in range(256)]


@pytest.fixture(scope="module")
def clip_pipe(bert_pipe: Any, tmp_path_factory: pytest.TempPathFactory) -> Any:
    """The demo pipeline with a CLIP tokenizer (hand-written BPE vocab) and a matching CLIP text tower."""
    folder: Path = tmp_path_factory.mktemp("clip-tokenizer")
    chars = _byte_level_chars()
    tokens = [*chars, *(c + "</w>" for c in chars), "</w>", "ca", "cat</w>", "<|startoftext|>", "<|endoftext|>"]
    (folder / "vocab.json").write_text(json.dumps({t: i for i, t in enumerate(tokens)}), encoding="utf-8")
    (folder / "merges.txt").write_text("#version: 0.2\nc a\nca t</w>\n", encoding="utf-8")
    tokenizer = CLIPTokenizer.from_pretrained(folder, model_max_length=32)
    bos, eos = tokenizer.bos_token_id, tokenizer.eos_token_id
    torch.manual_seed(1)
    config = CLIPTextConfig(
        vocab_size=len(tokenizer),
        hidden_size=HIDDEN,
        intermediate_size=37,
        num_attention_heads=4,
        num_hidden_layers=2,
        max_position_embeddings=32,
        bos_token_id=bos,
        eos_token_id=eos,
        pad_token_id=eos,
    )
    encoder: Any = CLIPTextModel(config)
    encoder.eval()
    with torch.no_grad():  # a trained tower's hidden states have a non-zero mean; a fresh LayerNorm's do not
        encoder.final_layer_norm.bias.normal_(0.5, 0.2)
    return StableDiffusionPipeline(**{**bert_pipe.components, "tokenizer": tokenizer, "text_encoder": encoder})


def _pipeline_encoding(pipe: Any, prompts: list[str], negatives: list[str]) -> tuple[torch.Tensor, torch.Tensor]:
    with torch.no_grad():
        embeds, negative = pipe.encode_prompt(prompts, CPU, 1, True, negative_prompt=negatives)
    return embeds, negative


def _chunk(embeds: torch.Tensor, i: int) -> torch.Tensor:
    return embeds[:, 32 * i : 32 * (i + 1)]


def test_chunks_are_framed_like_the_tokenizer_frames_a_prompt(bert_pipe: Any, clip_pipe: Any) -> None:
    for pipe in (bert_pipe, clip_pipe):
        begin, end, pad = frame_tokens(pipe.tokenizer)
        assert [begin, end] == pipe.tokenizer("").input_ids
        assert pad == pipe.tokenizer("", padding="max_length", max_length=4).input_ids[-1]
    assert frame_tokens(bert_pipe.tokenizer) == (101, 102, 0)  # [CLS] [SEP] [PAD]
    eos = clip_pipe.tokenizer.eos_token_id
    assert frame_tokens(clip_pipe.tokenizer) == (clip_pipe.tokenizer.bos_token_id, eos, eos)  # SD-1 pads with EOS


@pytest.mark.parametrize(
    ("which", "prompts", "negatives"),
    [
        ("bert", ["一只猫在草地上", "红色的（大）花，蓝天"], ["模糊", ""]),
        ("clip", ["a cat", "cat, cat and a dog"], ["", "blurry"]),
    ],
)
def test_plain_short_prompts_match_the_pipeline_exactly(
    which: str, prompts: list[str], negatives: list[str], bert_pipe: Any, clip_pipe: Any
) -> None:
    pipe = bert_pipe if which == "bert" else clip_pipe
    expected, expected_negative = _pipeline_encoding(pipe, prompts, negatives)
    embeds, negative = encode_prompts(pipe, prompts, negatives, CPU)
    assert embeds.shape == (2, 32, HIDDEN)
    assert torch.equal(embeds, expected) and torch.equal(negative, expected_negative)
    tagged, _ = encode_prompts(pipe, [f"<lora:水墨:0.8>{p}" for p in prompts], negatives, CPU)
    assert torch.equal(tagged, expected)


def test_a_long_chinese_prompt_becomes_four_chunks(bert_pipe: Any) -> None:
    assert len(bert_pipe.tokenizer(LONG, add_special_tokens=False).input_ids) == 100
    embeds, negative = encode_prompts(bert_pipe, [LONG], ["模糊"], CPU)
    assert embeds.shape == negative.shape == (1, 4 * 32, HIDDEN)
    first, _ = _pipeline_encoding(bert_pipe, [LONG[:30]], [""])
    last, _ = _pipeline_encoding(bert_pipe, [LONG[90:]], [""])
    blurry, empty = _pipeline_encoding(bert_pipe, ["模糊"], [""])
    assert torch.allclose(_chunk(embeds, 0), first, rtol=0, atol=1e-6)
    assert torch.allclose(_chunk(embeds, 3), last, rtol=0, atol=1e-6)
    assert not torch.allclose(_chunk(embeds, 1), first, atol=1e-3)  # the second 30 characters, not a copy
    assert torch.allclose(_chunk(negative, 0), blurry, rtol=0, atol=1e-6)
    for i in (1, 2, 3):  # the negative prompt is padded with empty chunks
        assert torch.allclose(_chunk(negative, i), empty, rtol=0, atol=1e-6)


def test_positive_and_negative_chunk_counts_match_across_the_batch(clip_pipe: Any) -> None:
    long_negative = "cat " * 40
    assert len(clip_pipe.tokenizer(long_negative, add_special_tokens=False).input_ids) == 40  # two chunks
    embeds, negative = encode_prompts(clip_pipe, ["a cat", "cat"], ["", long_negative], CPU)
    assert embeds.shape == negative.shape == (2, 64, HIDDEN)
    short, _ = _pipeline_encoding(clip_pipe, ["a cat"], [""])
    assert torch.allclose(embeds[:1, :32], short, rtol=0, atol=1e-6)
    with pytest.raises(ValueError, match="one negative prompt per prompt"):
        encode_prompts(clip_pipe, ["a", "b"], [""], CPU)


def test_break_starts_a_new_chunk(bert_pipe: Any) -> None:
    embeds, _ = encode_prompts(bert_pipe, ["一只猫 BREAK 在草地上"], [""], CPU)
    assert embeds.shape == (1, 64, HIDDEN)
    cat, _ = _pipeline_encoding(bert_pipe, ["一只猫"], [""])
    grass, _ = _pipeline_encoding(bert_pipe, ["在草地上"], [""])
    assert torch.allclose(_chunk(embeds, 0), cat, rtol=0, atol=1e-6)
    assert torch.allclose(_chunk(embeds, 1), grass, rtol=0, atol=1e-6)
    # Leading, repeated and trailing BREAKs, or one right after a full chunk, make no empty chunks.
    assert encode_prompts(bert_pipe, ["BREAK 猫 BREAK BREAK"], [""], CPU)[0].shape == (1, 32, HIDDEN)
    assert encode_prompts(bert_pipe, [LONG[:30] + " BREAK 猫"], [""], CPU)[0].shape == (1, 64, HIDDEN)


def test_weights_scale_the_weighted_tokens_then_restore_the_mean(clip_pipe: Any) -> None:
    tokenizer = clip_pipe.tokenizer
    assert tokenizer.convert_ids_to_tokens(tokenizer("a cat").input_ids)[1:3] == ["a</w>", "cat</w>"]
    plain, _ = encode_prompts(clip_pipe, ["a cat"], [""], CPU)
    weighted, _ = encode_prompts(clip_pipe, ["a (cat:1.5)"], [""], CPU)
    weights = torch.ones(32)
    weights[2] = 1.5  # <|startoftext|> a cat ...
    expected = plain[0] * weights[:, None]
    expected *= plain.mean() / expected.mean()
    assert torch.allclose(weighted[0], expected, atol=1e-5)
    assert torch.allclose(weighted.mean(), plain.mean(), atol=1e-6)
    change = (weighted[0] - plain[0]).norm(dim=-1) / plain[0].norm(dim=-1)
    assert change[2] > 0.3 and float(change[torch.arange(32) != 2].max()) < 0.1
    assert float(change[:2].min()) > 0  # the rescale moved the unweighted tokens too


def test_weights_on_a_zero_mean_encoder_skip_the_rescale(bert_pipe: Any) -> None:
    plain, _ = encode_prompts(bert_pipe, ["一只猫在草地上"], [""], CPU)
    assert abs(float(plain.mean())) < 1e-5  # a fresh final LayerNorm: the ratio of means would be noise
    weighted, _ = encode_prompts(bert_pipe, ["一只[[猫]]在草地上"], [""], CPU)
    others = torch.arange(32) != 3  # [CLS] 一 只 猫
    assert torch.allclose(weighted[0, 3], plain[0, 3] / 1.21, atol=1e-6)
    assert torch.equal(weighted[0, others], plain[0, others])


def test_apply_weights_keeps_unweighted_rows_bit_for_bit() -> None:
    hidden = torch.randn(2, 4, 3) + 1.0
    weights = torch.tensor([[1.0, 1.0, 1.0, 1.0], [1.0, 2.0, 1.0, 1.0]])
    out = apply_weights(hidden, weights)
    assert torch.equal(out[0], hidden[0]) and not torch.allclose(out[1], hidden[1])
    assert torch.allclose(out[1].mean(), hidden[1].mean(), atol=1e-6)


def test_apply_weights_skips_the_rescale_when_a_mean_is_nearly_zero() -> None:
    hidden = torch.randn(1, 4, 8)
    hidden = hidden - hidden.mean(dim=-1, keepdim=True) + 1e-6  # LayerNorm-like: each token's mean is ~0
    weights = torch.tensor([[1.0, 2.0, 1.0, 1.0]])
    assert torch.allclose(apply_weights(hidden, weights), hidden * weights[..., None], rtol=0, atol=1e-7)
    lifted = hidden + 0.5  # a clear mean: the rescale applies
    assert torch.allclose(apply_weights(lifted, weights).mean(), lifted.mean(), atol=1e-6)
    assert not torch.allclose(apply_weights(lifted, weights), lifted * weights[..., None], atol=1e-3)
    flipping = torch.tensor([[1.0, -5.0, 1.0, 1.0]])  # the mean changes sign: a rescale would negate every token
    assert torch.allclose(apply_weights(lifted, flipping), lifted * flipping[..., None], rtol=0, atol=1e-7)


@pytest.fixture
def library_warnings() -> Iterator[list[str]]:
    """Warnings logged by diffusers and transformers while the test runs."""
    messages: list[str] = []
    handler = logging.Handler(logging.WARNING)
    handler.emit = lambda record: messages.append(record.getMessage())  # type: ignore[method-assign]
    levels = diffusers_logging.get_verbosity(), transformers_logging.get_verbosity()
    diffusers_logging.set_verbosity_warning()
    transformers_logging.set_verbosity_warning()
    for name in ("diffusers", "transformers"):
        logging.getLogger(name).addHandler(handler)
    yield messages
    for name in ("diffusers", "transformers"):
        logging.getLogger(name).removeHandler(handler)
    diffusers_logging.set_verbosity(levels[0])
    transformers_logging.set_verbosity(levels[1])


def test_the_pipeline_runs_on_long_prompt_embeddings_without_truncating(
    bert_pipe: Any, library_warnings: list[str]
) -> None:
    def run(**prompt: Any) -> np.ndarray:
        generator = torch.Generator().manual_seed(7)
        args = {"height": 64, "width": 64, "num_inference_steps": 2, "generator": generator, "output_type": "np"}
        with torch.no_grad():
            return np.asarray(bert_pipe(**prompt, **args).images)

    embeds, negative = encode_prompts(bert_pipe, [LONG], [""], CPU)
    long_image = run(prompt_embeds=embeds, negative_prompt_embeds=negative)
    assert long_image.shape == (1, 64, 64, 3) and np.isfinite(long_image).all()
    assert not any("truncated" in m or "sequence length" in m for m in library_warnings), library_warnings

    truncated_image = run(prompt=LONG)
    assert any("truncated" in m for m in library_warnings)  # the pipeline's own encoding cuts the prompt
    assert float(np.abs(long_image - truncated_image).max()) > 1e-4
    short_embeds, short_negative = encode_prompts(bert_pipe, [LONG[:30]], [""], CPU)
    assert np.array_equal(run(prompt_embeds=short_embeds, negative_prompt_embeds=short_negative), run(prompt=LONG))


def test_textual_inversion_tokens_are_expanded_like_the_pipeline_does(clip_pipe: Any) -> None:
    components = {**clip_pipe.components}
    components["tokenizer"] = copy.deepcopy(clip_pipe.tokenizer)
    components["text_encoder"] = copy.deepcopy(clip_pipe.text_encoder)
    pipe = StableDiffusionPipeline(**components)
    pipe.load_textual_inversion({"<ink>": torch.randn(2, HIDDEN)})  # two vectors: <ink> <ink>_1
    expected, _ = _pipeline_encoding(pipe, ["a <ink> cat"], [""])
    embeds, _ = encode_prompts(pipe, ["a <ink> cat"], [""], CPU)
    assert torch.equal(embeds, expected)
