"""Word segmentation and frequencies (jieba, wordfreq) and the Porter stems of NltkLexicon."""

from __future__ import annotations

import logging
from concurrent.futures import ThreadPoolExecutor

import pytest

from app.adapters.text.lexicon import NltkLexicon
from app.adapters.text.words import WordfreqWordFrequency


@pytest.fixture(scope="module")
def words() -> WordfreqWordFrequency:
    return WordfreqWordFrequency()


def test_chinese_is_segmented_into_words(words: WordfreqWordFrequency) -> None:
    segmented = words.words("法国的首都是巴黎。")
    assert "巴黎" in segmented
    assert "".join(segmented) == "法国的首都是巴黎"  # the full stop is dropped


def test_latin_words_are_lower_cased_and_punctuation_dropped(words: WordfreqWordFrequency) -> None:
    assert words.words("The Eiffel-Tower (1889), in PARIS!") == ["the", "eiffel", "tower", "1889", "in", "paris"]
    assert words.words("  ...  ") == []


def test_mixed_text_keeps_both_scripts(words: WordfreqWordFrequency) -> None:
    segmented = words.words("巴黎 is Paris, 首都")
    assert segmented[:4] == ["巴黎", "is", "paris", "首都"]


def test_jieba_loads_once_and_quietly_across_threads(
    words: WordfreqWordFrequency, capsys: pytest.CaptureFixture[str]
) -> None:
    fresh = WordfreqWordFrequency()
    with ThreadPoolExecutor(4) as pool:
        results = list(pool.map(fresh.words, ["法国的首都是巴黎"] * 8))
    assert all(r == results[0] for r in results)
    assert "Prefix dict" not in capsys.readouterr().err
    assert logging.getLogger("jieba").getEffectiveLevel() >= logging.WARNING


def test_zipf_ranks_common_words_above_rare_ones(words: WordfreqWordFrequency) -> None:
    assert words.zipf("the") > words.zipf("capital") > words.zipf("armadillo") > 0
    assert words.zipf("的") > words.zipf("首都") > words.zipf("鼹鼠") > 0
    assert words.zipf("Paris") == words.zipf("paris")


def test_unknown_words_have_zipf_zero(words: WordfreqWordFrequency) -> None:
    assert words.zipf("xqzjvw") == 0.0
    assert words.zipf("龘龘") == 0.0


def test_porter_stems_latin_words_and_leaves_chinese_alone() -> None:
    lexicon = NltkLexicon(wordnet_dir="/nonexistent")
    assert lexicon.stem("capitals") == "capit"
    assert lexicon.stem("capital") == "capit"
    assert lexicon.stem("running") == "run"
    assert lexicon.stem("巴黎") == "巴黎"
    assert lexicon.stem("首都") == "首都"
    assert lexicon.synonyms("巴黎") == frozenset()
