"""ROME's generation entropy (the fluency score of edits), pure python."""

from __future__ import annotations

import math

import pytest

from app.domain.edits import ngram_entropy


def test_repeated_tokens_score_zero() -> None:
    assert ngram_entropy(["the"] * 20) == 0.0


def test_distinct_tokens_score_the_weighted_log_counts() -> None:
    tokens = [f"w{i}" for i in range(10)]  # 9 distinct bigrams, 8 distinct trigrams
    expected = (2 / 3 * math.log2(9) + 4 / 3 * math.log2(8)) / 2
    assert ngram_entropy(tokens) == pytest.approx(expected)


def test_varied_text_scores_higher_than_a_loop() -> None:
    loop = ["the", "cat", "sat"] * 4
    varied = [f"word{i % 7}" for i in range(12)] + ["end"]
    assert ngram_entropy(loop) < ngram_entropy(varied)


def test_too_short_texts_score_zero() -> None:
    assert ngram_entropy([]) == 0.0
    assert ngram_entropy(["one"]) == 0.0
