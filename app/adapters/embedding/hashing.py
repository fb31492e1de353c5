"""Feature-hashing embeddings: no model, the same vector for the same text on every machine.

Chinese, Japanese and Korean runs give character 1-, 2- and 3-grams (they have no spaces, and
single characters carry meaning); other text gives its words plus the character 3-grams of each
word (padded, so prefixes and suffixes count); text with neither (punctuation, emoji) gives its
characters. Each feature is hashed with BLAKE2b (stable,
unlike Python's salted ``hash``) to a bucket and a sign, the signs keeping collisions unbiased.
Similarity is lexical: texts sharing words or characters score high, paraphrases do not.
"""

from __future__ import annotations

import hashlib
import math
import re
import unicodedata
from collections import Counter
from collections.abc import Sequence
from typing import Literal

from app.domain.errors import InvalidParameters
from app.ports.knowledge import Embedder

_CJK_RUN = re.compile(r"[\u3040-\u30ff\u3400-\u4dbf\u4e00-\u9fff\uac00-\ud7af\uf900-\ufaff]+")
_WORD = re.compile(r"\w+")


class HashingEmbedder(Embedder):
    """``dim`` signed hash buckets, L2-normalised; blank text embeds as the zero vector. Queries and
    passages embed alike."""

    def __init__(self, dim: int = 256) -> None:
        if isinstance(dim, bool) or not isinstance(dim, int) or dim < 1:
            raise InvalidParameters("The embedding dimension must be a positive integer.", field="dim")
        self.dim = dim
        self.name = f"hashing-{dim}"

    def embed(self, texts: Sequence[str], kind: Literal["query", "passage"]) -> list[list[float]]:
        return [self._embed_one(text) for text in texts]

    def _embed_one(self, text: str) -> list[float]:
        vector = [0.0] * self.dim
        for feature, weight in features(text).items():
            digest = int.from_bytes(hashlib.blake2b(feature.encode("utf-8"), digest_size=8).digest(), "little")
            vector[(digest >> 1) % self.dim] += weight if digest & 1 else -weight
        norm = math.sqrt(math.fsum(x * x for x in vector))
        return [x / norm for x in vector] if norm > 0 else vector


def features(text: str) -> Counter[str]:
    """The hashed features of ``text`` with their counts, tagged by kind so that they cannot collide."""
    text = unicodedata.normalize("NFKC", text).lower()
    found: Counter[str] = Counter()
    for run in _CJK_RUN.findall(text):
        for n in (1, 2, 3):
            found.update(f"c{n}:{run[i : i + n]}" for i in range(len(run) - n + 1))
    for word in _WORD.findall(_CJK_RUN.sub(" ", text)):
        found[f"w:{word}"] += 1
        padded = f"<{word}>"
        found.update(f"g:{padded[i : i + 3]}" for i in range(len(padded) - 2))
    if not found:  # punctuation, symbols, emoji: their characters are all there is
        found.update(f"s:{ch}" for ch in text if not ch.isspace())
    return found
