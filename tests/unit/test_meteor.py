"""METEOR on token lists (app.domain.meteor) with the fake lexicon."""

from __future__ import annotations

import pytest

from app.domain.meteor import meteor, meteor_multi
from tests.fakes import FakeLexicon


def score(matches: int, hyp_len: int, ref_len: int, chunks: int) -> float:
    """The METEOR formula with nltk's default parameters."""
    p, r = matches / hyp_len, matches / ref_len
    return p * r / (0.9 * p + 0.1 * r) * (1 - 0.5 * (chunks / matches) ** 3)


def test_identical_sentences_score_one_less_the_single_chunk_penalty() -> None:
    words = ["the", "eiffel", "tower", "was", "finished", "in", "1889", "for", "the", "world", "fair", "in", "paris"]
    assert meteor(words, words) == pytest.approx(1 - 0.5 / len(words) ** 3)  # 0.99977 for 13 words
    assert meteor(["paris"], ["paris"]) == pytest.approx(0.5)  # one word is one chunk per match
    assert meteor(words, words) > 0.9997


def test_no_overlap_or_no_words_scores_zero() -> None:
    assert meteor(["a", "cat"], ["the", "dog"], FakeLexicon()) == 0.0
    assert meteor(["a", "cat"], []) == 0.0
    assert meteor([], ["a", "cat"]) == 0.0


def test_words_are_lower_cased() -> None:
    assert meteor(["Paris", "France"], ["paris", "FRANCE"]) == pytest.approx(score(2, 2, 2, 1))


def test_stem_stage_matches_what_exact_matching_left() -> None:
    reference, hypothesis = ["the", "cats", "sat"], ["the", "cat", "sat"]
    assert meteor(reference, hypothesis) == pytest.approx(score(2, 3, 3, 2))
    assert meteor(reference, hypothesis, FakeLexicon()) == pytest.approx(score(3, 3, 3, 1))


def test_synonym_stage_matches_what_the_stem_stage_left() -> None:
    lexicon = FakeLexicon({"car": {"auto"}})
    assert meteor(["an", "auto"], ["an", "car"]) == pytest.approx(score(1, 2, 2, 1))
    assert meteor(["an", "auto"], ["an", "car"], lexicon) == pytest.approx(score(2, 2, 2, 1))
    # As in nltk, synonyms are looked up for the stem the stem stage left ("cars" -> "car").
    assert meteor(["an", "auto"], ["an", "cars"], lexicon) == pytest.approx(score(2, 2, 2, 1))
    # Synonyms of the hypothesis word only, as in nltk.
    assert meteor(["an", "car"], ["an", "auto"], lexicon) == pytest.approx(score(1, 2, 2, 1))


def test_scrambled_order_costs_a_fragmentation_penalty() -> None:
    reference = ["a", "b", "c", "d", "e", "f"]
    in_order = meteor(reference, reference)
    two_chunks = meteor(reference, ["d", "e", "f", "a", "b", "c"])
    six_chunks = meteor(reference, ["f", "e", "d", "c", "b", "a"])
    assert two_chunks == pytest.approx(score(6, 6, 6, 2))
    assert six_chunks == pytest.approx(score(6, 6, 6, 6)) == pytest.approx(0.5)
    assert in_order > two_chunks > six_chunks


def test_repeated_words_take_the_latest_reference_word_as_nltk_does() -> None:
    # "b" takes reference position 1, then "a" takes the latest "a" (position 2): two chunks, not one.
    assert meteor(["a", "b", "a"], ["a", "b"]) == pytest.approx(score(2, 2, 3, 2))


def test_chinese_words_and_characters_are_tokens_like_any_other() -> None:
    reference = ["法国", "的", "首都", "是", "巴黎"]
    assert meteor(reference, ["巴黎", "是", "法国", "的", "首都"], FakeLexicon()) == pytest.approx(score(5, 5, 5, 3))
    assert meteor(list("法国的首都是巴黎"), list("巴黎")) == pytest.approx(score(2, 2, 8, 1))
    assert meteor(reference, ["伦敦"]) == 0.0


def test_recall_weighs_more_than_precision() -> None:
    reference = ["the", "capital", "of", "france", "is", "paris"]
    assert meteor(reference, ["paris"]) < meteor(["paris"], reference)


def test_meteor_multi_takes_the_best_reference() -> None:
    hypothesis = ["paris"]
    references = [["london"], ["the", "city", "of", "paris"], ["paris"]]
    assert meteor_multi(references, hypothesis) == meteor(["paris"], hypothesis)
    assert meteor_multi(references[:2], hypothesis) == meteor(references[1], hypothesis)
    with pytest.raises(ValueError):
        meteor_multi([], hypothesis)
