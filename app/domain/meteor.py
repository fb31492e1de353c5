"""METEOR (Banerjee & Lavie 2005) on token lists, computed as ``nltk.translate.meteor_score`` computes it.

Words are lower-cased, then aligned in three stages, each over the words still unmatched: exact
forms, stems, synonyms. Within a stage the hypothesis is walked from its last word to its first and
each word takes the latest unmatched reference word it may match, as nltk does, so the scores are
nltk's to the last bit.

    P = m / |hypothesis|, R = m / |reference|, Fmean = P R / (alpha P + (1 - alpha) R)
    penalty = gamma (chunks / m) ** beta, METEOR = Fmean (1 - penalty); 0 when m = 0.

nltk's quirk, kept on purpose: the stem stage hands its *stems* on to the synonym stage, so synonyms
are looked up for the hypothesis word's stem and compared with the reference words' stems (with
Porter stems, ``city`` becomes ``citi`` and finds no synonym). Without a lexicon only exact forms
match. Tokenisation is the caller's (``WordFrequency.words``).
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable, Iterable, Sequence
from itertools import pairwise
from typing import Protocol

# (position in the sentence, word)
_Enumerated = list[tuple[int, str]]
# (hypothesis position, reference position)
_Matches = list[tuple[int, int]]


class Lexicon(Protocol):
    """The stemmer and thesaurus of the stem and synonym stages (``app.ports.knowledge.Lexicon`` fits it)."""

    def stem(self, word: str) -> str: ...

    def synonyms(self, word: str) -> frozenset[str]: ...


def meteor(
    reference: Sequence[str],
    hypothesis: Sequence[str],
    lexicon: Lexicon | None = None,
    alpha: float = 0.9,
    beta: float = 3.0,
    gamma: float = 0.5,
) -> float:
    """METEOR of ``hypothesis`` against one ``reference`` (both already tokenised), in [0, 1]."""
    hyp = [(i, w.lower()) for i, w in enumerate(hypothesis)]
    ref = [(j, w.lower()) for j, w in enumerate(reference)]
    matches = _align(hyp, ref, lexicon)
    m = len(matches)
    if m == 0:
        return 0.0
    # The same operations in the same order as nltk, so that the floats agree exactly.
    precision = m / len(hyp)
    recall = m / len(ref)
    fmean = (precision * recall) / (alpha * precision + (1 - alpha) * recall)
    penalty: float = gamma * (_chunks(matches) / m) ** beta
    return (1 - penalty) * fmean


def meteor_multi(
    references: Iterable[Sequence[str]],
    hypothesis: Sequence[str],
    lexicon: Lexicon | None = None,
    alpha: float = 0.9,
    beta: float = 3.0,
    gamma: float = 0.5,
) -> float:
    """The best METEOR of ``hypothesis`` over ``references``."""
    scores = [meteor(r, hypothesis, lexicon, alpha, beta, gamma) for r in references]
    if not scores:
        raise ValueError("METEOR needs at least one reference.")
    return max(scores)


def _align(hyp: _Enumerated, ref: _Enumerated, lexicon: Lexicon | None) -> _Matches:
    """The exact, stem and synonym matches, ordered by hypothesis position."""
    matches, hyp, ref = _stage(hyp, ref, _itself)
    if lexicon is not None:
        stem = lexicon.stem
        found, hyp, ref = _stage([(i, stem(w)) for i, w in hyp], [(j, stem(w)) for j, w in ref], _itself)
        matches += found
        found, hyp, ref = _stage(hyp, ref, lambda w: lexicon.synonyms(w) | {w})
        matches += found
    return sorted(matches)


def _itself(word: str) -> Iterable[str]:
    return (word,)


def _stage(
    hyp: _Enumerated, ref: _Enumerated, candidates: Callable[[str], Iterable[str]]
) -> tuple[_Matches, _Enumerated, _Enumerated]:
    """Match each hypothesis word, last to first, with the latest unmatched reference word among its
    ``candidates``; returns the matches and the words left unmatched on either side."""
    positions: defaultdict[str, list[int]] = defaultdict(list)  # word -> its indices in ``ref``, ascending
    for j, (_, word) in enumerate(ref):
        positions[word].append(j)
    matches: _Matches = []
    used_hyp: set[int] = set()
    used_ref: set[int] = set()
    for i in reversed(range(len(hyp))):
        best = max((positions[w][-1] for w in candidates(hyp[i][1]) if positions.get(w)), default=-1)
        if best < 0:
            continue
        positions[ref[best][1]].pop()
        used_hyp.add(i)
        used_ref.add(best)
        matches.append((hyp[i][0], ref[best][0]))
    left_hyp = [pair for i, pair in enumerate(hyp) if i not in used_hyp]
    left_ref = [pair for j, pair in enumerate(ref) if j not in used_ref]
    return matches, left_hyp, left_ref


def _chunks(matches: _Matches) -> int:
    """The fewest runs of matches adjacent in both sentences (``matches`` ordered by hypothesis position)."""
    return 1 + sum(1 for (h, r), (h2, r2) in pairwise(matches) if not (h2 == h + 1 and r2 == r + 1))
