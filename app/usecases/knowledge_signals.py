"""Signals shared by calibration and query time, so both compute them the same way."""

from __future__ import annotations

import math
import unicodedata
from collections.abc import Sequence

from app.domain.gece import cosine
from app.ports.knowledge import DetectorFit, LongTailDetector, WordFrequency


def question_alpha(words: WordFrequency, question: str) -> float:
    """alpha of GECE: the mean Zipf frequency of the question's words.

    The summaries of the paper say "average word frequency of the instance" without saying over
    which text. We take the question's words: they are all that exists at query time, so the
    calibration labels and the query-time detector see the same quantity. Zipf is log10 per billion
    words, so alpha lies around 1 (rare) to 7 (the commonest words)."""
    tokens = words.words(question)
    return sum(words.zipf(w) for w in tokens) / len(tokens) if tokens else 0.0


def neighbour_gece(vector: Sequence[float], neighbours: Sequence[tuple[Sequence[float], float]], k: int) -> float:
    """Mean GECE of the ``k`` calibration questions most similar (cosine) to ``vector``."""
    if not neighbours:
        return 0.0
    scored = sorted(((cosine(vector, v), g) for v, g in neighbours), key=lambda p: -p[0])
    top = scored[: max(1, k)]
    return sum(g for _, g in top) / len(top)


def state_row(state: Sequence[float]) -> dict[str, float]:
    """A question state as the probe's input row (one named input per dimension)."""
    return {f"s{i}": float(x) for i, x in enumerate(state)}


def log_odds(p: float) -> float:
    q = min(max(p, 1e-6), 1 - 1e-6)
    return math.log(q / (1 - q))


def probe_log_odds(probe: LongTailDetector, params: dict[str, object], state: Sequence[float]) -> float:
    """The state probe's long-tail log-odds for one question state (``params``: the calibration's probe)."""
    row = state_row(state)
    return log_odds(probe.probability(DetectorFit(dict(params), list(row)), row))


def _fold(text: str) -> str:
    decomposed = unicodedata.normalize("NFKD", text.casefold())
    kept = "".join(c for c in decomposed if not unicodedata.combining(c))
    return " ".join("".join(c if c.isalnum() else " " for c in kept).split())


def answer_matches(answer: str, aliases: Sequence[str]) -> bool:
    """PopQA's rule: correct when any alias occurs in the answer (case-, accent- and punctuation-folded,
    as whole words)."""
    folded = f" {_fold(answer)} "
    return any(f" {_fold(alias)} " in folded for alias in aliases if _fold(alias))
