"""Accuracy, retrieval rate and latency of the knowledge flow on labelled questions (nothing is stored)."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

from app.domain.knowledge import Decision
from app.usecases.ask_question import RETRIEVAL_MODES, AskQuestion, Retrieval
from app.usecases.calibrate_detector import LabelledQuestion
from app.usecases.knowledge_signals import answer_matches


@dataclass(frozen=True)
class ModeResult:
    mode: str
    n: int
    accuracy: float
    retrieval_rate: float
    mean_latency_s: float


def evaluate_answers(
    ask: AskQuestion,
    items: Sequence[LabelledQuestion],
    modes: Sequence[Retrieval] = RETRIEVAL_MODES,
    top_k: int = 5,
    progress: Callable[[int, int], None] | None = None,
) -> list[ModeResult]:
    """Each mode answers every item; correct = an alias occurs in the answer (PopQA's rule)."""
    results = []
    total, done = len(items) * len(modes), 0
    for mode in modes:
        correct = retrieved = 0
        seconds = 0.0
        for item in items:
            query = ask(item.question, owner="eval", top_k=top_k, retrieval=mode, save=False)
            correct += answer_matches(query.answer, item.answers)
            retrieved += query.decision is Decision.RETRIEVED
            seconds += query.timings["total"]
            done += 1
            if progress:
                progress(done, total)
        n = max(1, len(items))
        results.append(ModeResult(mode, len(items), correct / n, retrieved / n, seconds / n))
    return results
