"""Small tokenizers for the tiny diffusers pipelines, built offline from a built-in English and Chinese sample.

diffusers' own tests download tiny tokenizers from the hub (``hf-internal-testing/...``); these are
built here instead, in a few hundredths of a second: a CLIP byte-level BPE, a T5 Unigram and a Gemma
BPE with byte fallback. The vocabularies are learned by a small pure-Python BPE (ties broken by
the pair's text) and word counts, not by ``tokenizers``' trainers, whose tie-breaking follows hash
order and changes from one process to the next: the same call gives the same ids every time.
Each is a transformers tokenizer class that ``save_pretrained`` writes and ``from_pretrained``
reads back (``tokenizer.json``), and each sets ``model_max_length`` so that pipelines never pad
to transformers' 1e30 default.
"""

from __future__ import annotations

import math
import string
from collections import Counter
from collections.abc import Iterable
from itertools import pairwise
from typing import Any

import transformers as _transformers
from tokenizers import Regex, normalizers, pre_tokenizers

from app.adapters.transformers.tiny import _SAMPLE

# transformers is untyped for a strict mypy (lazy module, decorated constructors).
transformers: Any = _transformers

CLIP_BOS, CLIP_EOS = "<|startoftext|>", "<|endoftext|>"
T5_PAD, T5_EOS, T5_UNK = "<pad>", "</s>", "<unk>"
GEMMA_PAD, GEMMA_EOS, GEMMA_BOS, GEMMA_UNK, GEMMA_MASK = "<pad>", "<eos>", "<bos>", "<unk>", "<mask>"

# Image prompts, added to the language-model sample so that prompt words get tokens of their own.
_PROMPTS = """\
A painting of a squirrel eating a burger. A photo of an astronaut riding a horse on the moon.
A portrait of a young woman with red hair, oil painting, soft light, highly detailed.
A red apple on a wooden table, studio photo, sharp focus. A blue car in the rain at night.
A watercolor landscape with mountains, a lake and pine trees at sunset.
Low quality, blurry, deformed, ugly, bad anatomy, watermark, text.
一幅松鼠吃汉堡的油画。一张宇航员在月球上骑马的照片。一只可爱的小狗在草地上奔跑。
山水画，远处有高山和湖泊，夕阳下的松树。红色的苹果放在木桌上，高清，细节丰富。
"""

# The pre-tokenizer regex of transformers' CLIPTokenizer (words, single digits, runs of punctuation).
_CLIP_SPLIT = r"""<\|startoftext\|>|<\|endoftext\|>|'s|'t|'re|'ve|'m|'ll|'d|[\p{L}]+|[\p{N}]|[^\s\p{L}\p{N}]+"""
_END_OF_WORD = "</w>"
_SPACE = "▁"
_PRINTABLE = sorted(char for char in string.printable if not char.isspace())


def _lines() -> list[str]:
    return [line for line in (_SAMPLE + _PROMPTS).splitlines() if line.strip()]


def _learn_merges(words: Counter[tuple[str, ...]], max_merges: int) -> list[tuple[str, str]]:
    """Byte-pair merges over ``words`` (symbol tuples with counts): the most frequent pair first,
    ties to the smallest pair, pairs seen only once never merged."""
    merges: list[tuple[str, str]] = []
    current = dict(words)
    for _ in range(max_merges):
        pairs: Counter[tuple[str, str]] = Counter()
        for symbols, count in current.items():
            for pair in pairwise(symbols):
                pairs[pair] += count
        if not pairs:
            break
        best, count = min(pairs.items(), key=lambda item: (-item[1], item[0]))
        if count < 2:
            break
        merges.append(best)
        joined = best[0] + best[1]
        merged: dict[tuple[str, ...], int] = {}
        for symbols, word_count in current.items():
            out: list[str] = []
            i = 0
            while i < len(symbols):
                if i + 1 < len(symbols) and (symbols[i], symbols[i + 1]) == best:
                    out.append(joined)
                    i += 2
                else:
                    out.append(symbols[i])
                    i += 1
            merged[tuple(out)] = merged.get(tuple(out), 0) + word_count
        current = merged
    return merges


def _add(vocab: dict[str, int], tokens: Iterable[str]) -> None:
    for token in tokens:
        vocab.setdefault(token, len(vocab))


def clip_tokenizer(max_length: int = 77, max_merges: int = 600) -> Any:
    """A CLIP byte-level BPE (``</w>`` word ends, lower-cased) with ``<|startoftext|>``/``<|endoftext|>``.

    Every byte and every byte at a word end is in the vocabulary, as in CLIP's own, so any text
    tokenizes without unknowns; the two special tokens come last (the highest ids), so CLIP's
    pooling at the end token works both ways transformers implements it."""
    normalizer = normalizers.Sequence(
        [normalizers.NFC(), normalizers.Replace(Regex(r"\s+"), " "), normalizers.Lowercase()]
    )
    pre_tokenizer = pre_tokenizers.Sequence(
        [
            pre_tokenizers.Split(Regex(_CLIP_SPLIT), behavior="removed", invert=True),
            pre_tokenizers.ByteLevel(add_prefix_space=False),
        ]
    )
    words: Counter[tuple[str, ...]] = Counter()
    for line in _lines():
        for word, _ in pre_tokenizer.pre_tokenize_str(normalizer.normalize_str(line)):
            words[(*word[:-1], word[-1] + _END_OF_WORD)] += 1
    merges = _learn_merges(words, max_merges)
    alphabet = sorted(pre_tokenizers.ByteLevel.alphabet())
    vocab: dict[str, int] = {}
    _add(vocab, alphabet)
    _add(vocab, (char + _END_OF_WORD for char in alphabet))
    _add(vocab, (left + right for left, right in merges))
    _add(vocab, [CLIP_BOS, CLIP_EOS])
    return transformers.CLIPTokenizer(
        vocab=vocab,
        merges=merges,
        unk_token=CLIP_EOS,
        bos_token=CLIP_BOS,
        eos_token=CLIP_EOS,
        pad_token=CLIP_EOS,
        model_max_length=max_length,
    )


def t5_tokenizer(max_length: int = 512) -> Any:
    """A T5 (SentencePiece-style Unigram) tokenizer: ``<pad>`` 0, ``</s>`` 1, ``<unk>`` 2, no sentinel tokens.

    The pieces are the sample's words (``▁word``, scored by their frequency) and single characters
    (the sample's and printable ASCII, scored lower), so a new word splits into characters;
    characters outside both (most Chinese characters) become ``<unk>``."""
    words: Counter[str] = Counter()
    chars: Counter[str] = Counter()
    for line in _lines():
        for word in line.split():
            words[_SPACE + word] += 1
            chars.update(word)
    chars.update(_PRINTABLE)
    total = sum(words.values()) + sum(chars.values())
    pieces: dict[str, float] = {_SPACE: math.log(len(words) / total)}
    for word, count in sorted(words.items()):
        pieces[word] = math.log(count / total)
    for char, count in sorted(chars.items()):
        pieces.setdefault(char, math.log(count / total) - 2.0)
    scored = sorted(pieces.items(), key=lambda item: (-item[1], item[0]))
    vocab = [(T5_PAD, 0.0), (T5_EOS, 0.0), (T5_UNK, 0.0), *((piece, round(score, 6)) for piece, score in scored)]
    return transformers.T5Tokenizer(
        vocab=vocab,
        eos_token=T5_EOS,
        unk_token=T5_UNK,
        pad_token=T5_PAD,
        extra_ids=0,
        model_max_length=max_length,
    )


def gemma_tokenizer(max_length: int = 512, max_merges: int = 600) -> Any:
    """A Gemma BPE (``▁`` for spaces, byte fallback) with ``<pad>`` 0, ``<eos>`` 1, ``<bos>`` 2, ``<unk>`` 3,
    ``<mask>`` 4 and the 256 ``<0xNN>`` byte tokens; it adds ``<bos>`` in front, as Gemma's does.

    Padding is on the right, as Sana's pipeline sets it before encoding."""
    words: Counter[tuple[str, ...]] = Counter()
    for line in _lines():
        for i, word in enumerate(line.split(" ")):
            text = (_SPACE if i else "") + word
            if text:
                words[tuple(text)] += 1
    merges = _learn_merges(words, max_merges)
    vocab: dict[str, int] = {}
    _add(vocab, [GEMMA_PAD, GEMMA_EOS, GEMMA_BOS, GEMMA_UNK, GEMMA_MASK])
    _add(vocab, (f"<0x{value:02X}>" for value in range(256)))
    _add(vocab, sorted({char for word in words for char in word} | set(string.printable.strip())))
    _add(vocab, (left + right for left, right in merges))
    return transformers.GemmaTokenizer(
        vocab=vocab,
        merges=merges,
        unk_token=GEMMA_UNK,
        bos_token=GEMMA_BOS,
        eos_token=GEMMA_EOS,
        pad_token=GEMMA_PAD,
        mask_token=GEMMA_MASK,
        add_bos_token=True,
        add_eos_token=False,
        padding_side="right",
        model_max_length=max_length,
    )
