"""GECE arithmetic, AUROC, thresholds and document chunking (pure domain)."""

from __future__ import annotations

import math

import pytest

from app.domain.errors import InvalidParameters, RequestTooLarge
from app.domain.gece import ALIGNMENT_FLOOR, ALPHA_FLOOR, auroc, cosine, dot, gece, mean_vector, quantile_threshold
from app.domain.knowledge import chunk_document, text_units, validate_document, validate_features


def test_gece_is_the_calibration_gap_over_alpha_times_alignment() -> None:
    assert gece(0.5, 0.9, 4.0, 0.5) == pytest.approx(0.4 / 2.0)
    # Rarer words and a gradient less aligned with the dataset's both raise GECE.
    assert gece(0.0, 0.8, 2.0, 0.5) > gece(0.0, 0.8, 4.0, 0.5)
    assert gece(0.0, 0.8, 4.0, 0.2) > gece(0.0, 0.8, 4.0, 0.5)
    # Non-positive terms are floored instead of flipping the sign or dividing by zero.
    assert gece(0.0, 1.0, 0.0, -0.3) == pytest.approx(1.0 / (ALPHA_FLOOR * ALIGNMENT_FLOOR))
    with pytest.raises(ValueError):
        gece(1.2, 0.5, 3.0, 0.5)


def test_vector_helpers() -> None:
    assert dot([1, 2, 3], [4, 5, 6]) == 32
    assert cosine([1, 0], [0, 1]) == 0.0 and cosine([2, 0], [5, 0]) == pytest.approx(1.0)
    assert cosine([0, 0], [1, 1]) == 0.0
    assert mean_vector([[1, 2], [3, 6]]) == [2.0, 4.0]
    with pytest.raises(ValueError):
        dot([1], [1, 2])


def test_auroc_counts_ties_as_half_and_needs_both_classes() -> None:
    assert auroc([0.1, 0.4, 0.35, 0.8], [False, False, True, True]) == 0.75
    assert auroc([0.5, 0.5], [True, False]) == 0.5
    assert auroc([1.0, 0.0], [True, False]) == 1.0
    assert math.isnan(auroc([0.2, 0.3], [True, True]))


def test_quantile_threshold_gives_the_asked_retrieval_rate() -> None:
    scores = [i / 100 for i in range(100)]
    for rate in (0.0, 0.1, 0.25, 0.5, 1.0):
        cut = quantile_threshold(scores, rate)
        assert sum(s > cut for s in scores) == round(rate * 100)


def test_chunks_follow_sentences_and_respect_the_size() -> None:
    text = " ".join(f"Sentence number {i} has exactly seven words." for i in range(30))
    chunks = chunk_document("doc.md", text, max_units=30)
    assert [c.id for c in chunks[:2]] == ["doc.md#0", "doc.md#1"] and all(c.source == "doc.md" for c in chunks)
    assert all(text_units(c.text) <= 30 for c in chunks)
    assert all(c.text.endswith(".") for c in chunks)
    assert " ".join(c.text for c in chunks) == text


def test_chinese_chunks_count_characters_and_keep_them_joined() -> None:
    text = "巴黎是法国的首都。" * 20
    chunks = chunk_document("zh.md", text, max_units=40)
    assert all(text_units(c.text) <= 40 for c in chunks) and len(chunks) == 5
    assert chunks[0].text == "巴黎是法国的首都。" * 4


def test_titles_stay_with_their_text_and_long_sentences_are_cut() -> None:
    chunks = chunk_document("p.md", "# Title\n\nFirst paragraph.\nSecond one.", max_units=100)
    assert [c.text for c in chunks] == ["# Title First paragraph. Second one."]
    long = chunk_document("l.md", " ".join(["word"] * 25), max_units=10)
    assert [text_units(c.text) for c in long] == [10, 10, 5]


def test_document_and_feature_validation() -> None:
    with pytest.raises(InvalidParameters, match="empty"):
        validate_document("a.md", " \n ")
    with pytest.raises(InvalidParameters, match="source"):
        validate_document("", "text")
    with pytest.raises(RequestTooLarge):
        validate_document("big.md", "x" * 2_000_001)
    assert validate_features(["alpha", "alpha", "mean_token_prob"]) == ["alpha", "mean_token_prob"]
    with pytest.raises(InvalidParameters):
        validate_features([])
