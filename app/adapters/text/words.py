"""Words and their corpus frequencies: jieba segments Chinese, wordfreq gives Zipf frequencies."""

from __future__ import annotations

import logging
import re
import threading
from functools import lru_cache
from typing import TYPE_CHECKING

from app.ports.knowledge import WordFrequency

if TYPE_CHECKING:
    import jieba

# Han ideographs: the basic block, extension A, compatibility ideographs, extensions B and later.
HAN = "\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff\U00020000-\U0003134f"
_HAN_RUN = re.compile(f"[{HAN}]+")
# A run of Han characters, or of letters and digits that are not Han (punctuation, ``_`` and spaces split).
_TOKEN = re.compile(f"(?P<han>[{HAN}]+)|(?:(?![{HAN}])[^\\W_])+")


def is_cjk(word: str) -> bool:
    return _HAN_RUN.search(word) is not None


class WordfreqWordFrequency(WordFrequency):
    """Lower-cased words (Chinese segmented by jieba) and their Zipf frequencies from wordfreq.

    jieba's dictionary (about 350,000 words) loads on the first Chinese text, once, under a lock."""

    def __init__(self) -> None:
        self._tokenizer: jieba.Tokenizer | None = None
        self._lock = threading.Lock()

    def words(self, text: str) -> list[str]:
        out: list[str] = []
        for match in _TOKEN.finditer(text.lower()):
            if match.group("han"):
                out.extend(w for w in self._jieba().cut(match.group(), HMM=True) if w.strip())
            else:
                out.append(match.group())
        return out

    def zipf(self, word: str) -> float:
        return _zipf(word.lower(), "zh" if is_cjk(word) else "en")

    def _jieba(self) -> jieba.Tokenizer:
        with self._lock:
            if self._tokenizer is None:
                import jieba

                _quiet_jieba()
                tokenizer = jieba.Tokenizer()
                tokenizer.initialize()
                self._tokenizer = tokenizer
            return self._tokenizer


@lru_cache(maxsize=65536)
def _zipf(word: str, lang: str) -> float:
    from wordfreq import zipf_frequency

    if lang == "zh":
        _quiet_jieba()  # wordfreq segments Chinese with jieba too
    return float(zipf_frequency(word, lang))


def _quiet_jieba() -> None:
    """jieba's import sets its logger to DEBUG, which prints the loading of every dictionary to stderr."""
    import jieba  # noqa: F401

    logging.getLogger("jieba").setLevel(logging.WARNING)
