"""Small tokenizers for the tiny LLM-text-encoder pipelines, trained here from a built-in sample (no downloads).

Each mimics the tokenizer its real pipeline ships: a Qwen2 byte-level BPE with the ChatML and vision
special tokens (Qwen-Image, Qwen-Image-Edit, Z-Image), a GLM-4 style BPE that pads on the left and
prefixes ``[gMASK]<sop>`` (CogView4), and a ChatGLM3 SentencePiece model (Kolors). All are
deterministic and build in well under a second.
"""

from __future__ import annotations

import importlib
import io
import json
from pathlib import Path
from typing import Any

import transformers as _transformers
from tokenizers import processors

from app.adapters.diffusers.processors import ImageOnlyQwen2VLProcessor
from app.adapters.transformers.tiny import _SAMPLE, byte_level_bpe

# transformers is untyped for a strict mypy (lazy module, decorated constructors).
transformers: Any = _transformers

ENDOFTEXT, IM_START, IM_END = "<|endoftext|>", "<|im_start|>", "<|im_end|>"
VISION_START, VISION_END, IMAGE_PAD = "<|vision_start|>", "<|vision_end|>", "<|image_pad|>"
QWEN_SPECIALS = [
    ENDOFTEXT,
    IM_START,
    IM_END,
    VISION_START,
    VISION_END,
    "<|vision_pad|>",
    IMAGE_PAD,
    "<|video_pad|>",
    "<think>",
    "</think>",
]
# Qwen2's own default (transformers' MAX_MODEL_INPUT_SIZES for the Qwen tokenizer); the pipelines pass
# their own, smaller max_length (Qwen-Image 1024 + template, Z-Image 512).
QWEN_MAX_LENGTH = 32768

GLM_SPECIALS = [
    ENDOFTEXT,
    "[MASK]",
    "[gMASK]",
    "[sMASK]",
    "<sop>",
    "<eop>",
    "<|system|>",
    "<|user|>",
    "<|assistant|>",
    "<|observation|>",
]
GLM_MAX_LENGTH = 128000  # GLM-4's; CogView4 passes max_sequence_length (1024 by default) itself.
CHATGLM_MAX_LENGTH = 256  # Kolors pads every prompt to max_sequence_length=256.

# Qwen3's chat template reduced to what Z-Image uses: ChatML turns, and an empty think block when
# thinking is switched off (Z-Image passes enable_thinking=True, so it gets none).
QWEN3_CHAT_TEMPLATE = (
    "{% for message in messages %}"
    "{{ '<|im_start|>' + message['role'] + '\\n' + message['content'] + '<|im_end|>\\n' }}"
    "{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|im_start|>assistant\\n' }}"
    "{% if enable_thinking is defined and enable_thinking is false %}{{ '<think>\\n\\n</think>\\n\\n' }}{% endif %}"
    "{% endif %}"
)

# The pipelines' prompt templates, trained on so that each of their words is one token as in the real
# Qwen vocabulary: Qwen-Image drops the first 34 tokens (its system prefix) and Qwen-Image-Edit 64.
PIPELINE_TEXTS = [
    "<|im_start|>system\nDescribe the image by detailing the color, shape, size, texture, quantity, text, "
    "spatial relationships of the objects and background:<|im_end|>\n<|im_start|>user\n",
    "<|im_start|>system\nDescribe the key features of the input image (color, shape, size, texture, objects, "
    "background), then explain how the user's text instruction should alter or modify the image. Generate a new "
    "image that meets the user's requirements while maintaining consistency with the original input where "
    "appropriate.<|im_end|>\n<|im_start|>user\n<|vision_start|><|image_pad|><|vision_end|>",
    "<|im_start|>assistant\n",
]


def _bpe_texts() -> list[str]:
    # The templates repeated so that their words win the merges over the sample's.
    return PIPELINE_TEXTS * 8 + _SAMPLE.splitlines()


def _vocab_and_merges(tokenizer: Any) -> tuple[dict[str, int], list[tuple[str, str]]]:
    model = json.loads(tokenizer.to_str())["model"]
    return model["vocab"], [tuple(merge) for merge in model["merges"]]


def qwen_tokenizer(vocab_size: int = 768) -> Any:
    """A ``Qwen2Tokenizer`` (byte-level BPE) with the ChatML, think and vision special tokens, pad = ``<|endoftext|>``.

    It pads on the right like Qwen's; the chat template is a reduced Qwen3 one (Z-Image applies it)."""
    vocab, merges = _vocab_and_merges(byte_level_bpe(_bpe_texts(), vocab_size, QWEN_SPECIALS))
    tokenizer = transformers.Qwen2Tokenizer(
        vocab=vocab,
        merges=merges,
        additional_special_tokens=QWEN_SPECIALS[1:],
        model_max_length=QWEN_MAX_LENGTH,
        padding_side="right",
    )
    tokenizer.chat_template = QWEN3_CHAT_TEMPLATE
    return tokenizer


def qwen_vl_processor(tokenizer: Any, max_pixels: int = 56 * 56) -> Any:
    """An ``ImageOnlyQwen2VLProcessor`` over ``tokenizer`` with the PIL image processor.

    ``max_pixels`` caps what the vision tower sees: 56 × 56 is 16 patches of 14 px, 4 image tokens
    after the 2 × 2 merge (the real processor allows 28 × 28 × 1280, about 1 megapixel)."""
    image_processor = transformers.Qwen2VLImageProcessorPil(min_pixels=28 * 28, max_pixels=max_pixels)
    return ImageOnlyQwen2VLProcessor(image_processor=image_processor, tokenizer=tokenizer)


def glm_tokenizer(vocab_size: int = 768) -> Any:
    """A GLM-4 style fast tokenizer: byte-level BPE, left padding with ``<|endoftext|>``, ``[gMASK]<sop>`` prefix."""
    bpe = byte_level_bpe(_SAMPLE.splitlines(), vocab_size, GLM_SPECIALS)
    bpe.post_processor = processors.TemplateProcessing(
        single="[gMASK]:0 <sop>:0 $A:0",
        pair="[gMASK]:0 <sop>:0 $A:0 $B:1",
        special_tokens=[(token, bpe.token_to_id(token)) for token in ("[gMASK]", "<sop>")],
    )
    return transformers.PreTrainedTokenizerFast(
        tokenizer_object=bpe,
        eos_token=ENDOFTEXT,
        pad_token=ENDOFTEXT,
        additional_special_tokens=GLM_SPECIALS[1:],
        padding_side="left",
        model_max_length=GLM_MAX_LENGTH,
    )


def train_chatglm_sentencepiece(model_file: str | Path, vocab_size: int = 800) -> str:
    """Train a ChatGLM3-like SentencePiece BPE (unk 0, bos 1, eos 2, byte fallback); write it to ``model_file``."""
    import sentencepiece  # optional dependency: only Kolors' tokenizer needs it

    proto = io.BytesIO()
    sentencepiece.SentencePieceTrainer.train(
        sentence_iterator=iter(_SAMPLE.splitlines() * 4),
        model_writer=proto,
        vocab_size=vocab_size,
        model_type="bpe",
        character_coverage=1.0,
        byte_fallback=True,
        normalization_rule_name="identity",
        unk_id=0,
        bos_id=1,
        eos_id=2,
        pad_id=-1,
        num_threads=1,
        minloglevel=2,
    )
    Path(model_file).write_bytes(proto.getvalue())
    return str(model_file)


def chatglm_tokenizer(model_file: str | Path) -> Any:
    """Kolors' ``ChatGLMTokenizer`` over a SentencePiece model file (see :func:`train_chatglm_sentencepiece`).

    The tokenizer reads ``model_file`` again when it is saved, so keep the file until then."""
    tokenizer_class: Any = importlib.import_module("diffusers.pipelines.kolors").ChatGLMTokenizer
    return tokenizer_class(vocab_file=str(model_file), model_max_length=CHATGLM_MAX_LENGTH)
