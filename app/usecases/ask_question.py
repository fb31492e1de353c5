"""Answer a question, retrieving only for long-tail knowledge (the GECE-gated flow).

0. Early decision: the signals that exist before any answer (alpha, the GECE of the nearest
   calibration questions, the state probe's reading of the model's hidden state at the end of the
   question) go through the early detector; above the calibration's ``early_threshold`` the
   question retrieves at once. The state is read with the prefill of the answer that follows, so
   a question that is then answered pays for no extra forward pass.
1. The language model answers alone (the parametric answer). Where calibration set an abort cut, the
   answer is abandoned at the first token whose probability falls below it (its running minimum
   token probability can then only stay below, and calibration found such answers long-tail with
   90 % precision): the question retrieves at once, without the rest of the answer or steps 2-3.
2. Query-time signals: alpha of the question, the answer's mean and minimum token probability, the
   cosine between the gradient of the answer's NLL (the model's own answer as target, since no
   reference exists at query time) and the calibration set's mean gradient, the GECE of the
   nearest calibration questions, and the state probe's reading (taken before step 1 when the
   early decision did not already take it).
3. The calibrated detector turns them into the probability that the question is long-tail.
4. Above the calibrated threshold: retrieve the top-k passages and answer again with them.

``retrieval="always"`` skips steps 1-3 (plain RAG) and ``"never"`` skips 2-4: the baselines, and what
a caller that knows better may ask for. The query, with its signals and per-stage timings, is stored
before it is returned.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import replace
from typing import Literal, TypeVar

from app.domain.errors import InvalidParameters, NotCalibrated
from app.domain.gece import cosine
from app.domain.knowledge import (
    CONTEXT_UNITS,
    READINGS,
    RETRIEVERS,
    SHARED_COLLECTION,
    Calibration,
    Decision,
    KnowledgeQuery,
    Passage,
    Signals,
    focus_passages,
    fuse,
    gate_score,
    keyword_terms,
    new_query_id,
    read_sentences,
    term_weights,
    validate_question,
    validate_top_k,
)
from app.ports.clock import Clock
from app.ports.knowledge import (
    CalibrationStore,
    DetectorFit,
    Embedder,
    KnowledgeIndex,
    KnowledgeQueryStore,
    LanguageModel,
    LongTailDetector,
    StopRule,
    WordFrequency,
)
from app.usecases.knowledge_signals import neighbour_gece, probe_log_odds, question_alpha

T = TypeVar("T")
# Without a calibration of the model, retrieve when a token of its own answer had a probability below this: FLARE's
# rule (Jiang et al. 2023) at the threshold the knowledge benchmark gives its FLARE baseline. Weaker than the
# calibrated detector (docs/knowledge.md), never a refusal.
FALLBACK_MIN_PROB = 0.5
HYBRID_DEPTH = 20  # how deep each ranking goes before reciprocal rank fusion
Retrieval = Literal["auto", "always", "never"]
RETRIEVAL_MODES: tuple[Retrieval, ...] = ("auto", "always", "never")


class AskQuestion:
    def __init__(
        self,
        llm: LanguageModel,
        embedder: Embedder,
        index: KnowledgeIndex,
        words: WordFrequency,
        detector: LongTailDetector,
        calibrations: CalibrationStore,
        queries: KnowledgeQueryStore,
        clock: Clock,
        max_new_tokens: int = 32,
        neighbours_k: int = 5,
        probe: LongTailDetector | None = None,
        restore: Callable[[], object] | None = None,
        retriever: str = RETRIEVERS[0],
        reading: str = READINGS[0],
        context_units: int = CONTEXT_UNITS,
    ) -> None:
        """``restore``: gives the model the edits its log holds (another process may have applied or rolled
        back some); called first in every query, so the answer comes from the model as edited now."""
        self._llm, self._embedder, self._index, self._words = llm, embedder, index, words
        self._detector, self._calibrations, self._queries, self._clock = detector, calibrations, queries, clock
        self._max_new_tokens, self._neighbours_k = max_new_tokens, neighbours_k
        self._probe = probe or detector
        self._restore = restore
        if retriever not in RETRIEVERS:
            raise InvalidParameters(f"retriever must be one of {', '.join(RETRIEVERS)}.", field="retriever")
        self._retriever = retriever
        if reading not in READINGS:
            raise InvalidParameters(f"reading must be one of {', '.join(READINGS)}.", field="reading")
        self._reading, self._context_units = reading, context_units

    def __call__(
        self,
        question: str,
        owner: str,
        top_k: int = 5,
        retrieval: Retrieval = "auto",
        save: bool = True,
        early: bool = True,
    ) -> KnowledgeQuery:
        """Raises ``InvalidParameters`` for an empty or oversized question or a bad ``top_k``, and
        ``IndexUnavailable`` when the index cannot be reached. With ``retrieval="auto"`` and no calibration of the
        model, the token-probability rule decides (``signals.gate`` says which gate decided). ``early=False`` turns
        the early decisions off: every question is answered by the model first, to the end, and every signal of the
        calibration is computed whichever gate decides (for analyses)."""
        if self._restore is not None:
            self._restore()
        text = validate_question(question)
        k = validate_top_k(top_k)
        if retrieval not in RETRIEVAL_MODES:
            raise InvalidParameters(f"retrieval must be one of {', '.join(RETRIEVAL_MODES)}.", field="retrieval")
        calibration = self._calibrations.latest(self._llm.name) if retrieval == "auto" else None
        query = KnowledgeQuery(new_query_id(), owner, text, self._clock.now(), model=self._llm.name)
        timer = _Timer()
        known: dict[str, float] = {}
        question_vector: list[float] | None = None
        if early and calibration is not None and calibration.early_threshold is not None:
            known, question_vector, early_estimate = timer.run("early_signals", lambda: self._early(text, calibration))
            query.signals = Signals(
                alpha=known.get("alpha"),
                neighbour_gece=known.get("neighbour_gece"),
                state_probe=known.get("state_probe"),
                early_estimate=early_estimate,
            )
            if early_estimate > calibration.early_threshold:
                retrieval = "always"  # long-tail already before any answer: skip the parametric one
        gate = calibration.gate if calibration is not None else "token_prob"
        needs_detector = gate != "token_prob" or not early  # early=False: every signal, for analysis
        if retrieval == "auto" and calibration is not None and needs_detector and "state_probe" in calibration.features:
            if "state_probe" not in known:  # read before the answer, whose generation reuses the prefill
                known["state_probe"] = timer.run("question_state", lambda: self._state_probe(text, calibration))
            query.signals = replace(query.signals, state_probe=known["state_probe"])
        if retrieval != "always":
            stop = _abort_rule(calibration.abort_min_prob if early and calibration is not None else None)
            first = timer.run("parametric_answer", lambda: self._llm.generate(text, (), self._max_new_tokens, stop))
            query.parametric_answer = query.answer = first.text
            query.decision = Decision.PARAMETRIC
            if first.stopped_early and stop is not None:  # judged long-tail while it was being generated
                probs = first.token_probs
                query.signals = replace(
                    query.signals,
                    mean_token_prob=sum(probs) / len(probs) if probs else None,
                    min_token_prob=min(probs) if probs else None,
                    aborted_at=len(probs),
                )
                query.decision = Decision.RETRIEVED
            elif calibration is not None and needs_detector:
                vector = question_vector
                signals, question_vector = timer.run(
                    "signals", lambda: self._signals(text, first.text, first.token_probs, calibration, known, vector)
                )
                cut = _gate_cut(calibration)
                score = gate_score(gate, signals.gece_estimate or 0.0, signals.min_token_prob or 0.0)
                shown = 1.0 - cut if gate == "token_prob" else cut  # the token gate's cut, as a token probability
                query.signals = replace(signals, early_estimate=query.signals.early_estimate, threshold=shown)
                if score > cut:
                    query.decision = Decision.RETRIEVED
            elif calibration is not None:  # the token-probability gate won the calibration's cross-validation
                probs = first.token_probs
                lowest = min(probs) if probs else 0.0
                floor = 1.0 - _gate_cut(calibration)
                query.signals = replace(
                    query.signals,
                    mean_token_prob=sum(probs) / len(probs) if probs else None,
                    min_token_prob=lowest if probs else None,
                    threshold=floor,
                )
                if lowest < floor:
                    query.decision = Decision.RETRIEVED
            elif retrieval == "auto":  # no calibration of this model: the weaker token-probability rule
                probs = first.token_probs
                lowest = min(probs) if probs else 0.0
                query.signals = replace(
                    query.signals,
                    mean_token_prob=sum(probs) / len(probs) if probs else None,
                    min_token_prob=lowest if probs else None,
                    threshold=FALLBACK_MIN_PROB,
                    gate="token_prob",
                )
                if lowest < FALLBACK_MIN_PROB:
                    query.decision = Decision.RETRIEVED
        else:
            query.decision = Decision.RETRIEVED
        if calibration is not None:  # the calibration's gate decided (with its early decisions)
            query.signals = replace(query.signals, gate=calibration.gate, calibration_id=calibration.id)
        if query.decision is Decision.RETRIEVED:
            vector = question_vector
            query.passages = timer.run("retrieve", lambda: self._retrieve(text, vector, k, owner))
            found = query.passages
            context = timer.run("read", lambda: self._context(text, found))
            second = timer.run("retrieved_answer", lambda: self._llm.generate(text, context, self._max_new_tokens))
            query.answer = second.text
        query.timings = timer.finish()
        if save:
            self._queries.add(query)
        return query

    def _context(self, question: str, passages: list[Passage]) -> list[str]:
        """What the model reads: the passage(s) most about the question within the budget, the sentences that bear
        on it, or every passage whole."""
        if self._reading == "passages" or not passages:
            return [p.text for p in passages]
        weights = term_weights(keyword_terms(self._words.words(question)), self._words.zipf)
        if self._reading == "focused":
            return focus_passages(weights, passages, self._words.words, self._context_units)
        return read_sentences(weights, passages, self._words.words, self._context_units)

    def _early(self, question: str, calibration: Calibration) -> tuple[dict[str, float], list[float] | None, float]:
        """The signals that exist before any answer, and the early detector's long-tail estimate."""
        row = {"alpha": question_alpha(self._words, question)}
        vector = None
        if "neighbour_gece" in calibration.early_features:
            vector = self._embedder.embed([question], "query")[0]
            row["neighbour_gece"] = neighbour_gece(vector, calibration.neighbours, self._neighbours_k)
        if "state_probe" in calibration.early_features:
            row["state_probe"] = self._state_probe(question, calibration)
        fit = DetectorFit(dict(calibration.early_detector), list(calibration.early_features))
        return row, vector, self._detector.probability(fit, row)

    def _signals(
        self,
        question: str,
        answer: str,
        probs: list[float],
        calibration: Calibration,
        known: dict[str, float],
        vector: list[float] | None,
    ) -> tuple[Signals, list[float] | None]:
        features = set(calibration.features)
        row: dict[str, float] = {
            **known,
            "mean_token_prob": sum(probs) / len(probs) if probs else 0.0,
            "min_token_prob": min(probs) if probs else 0.0,
        }
        if "alpha" not in row:
            row["alpha"] = question_alpha(self._words, question)
        if "grad_alignment" in features:
            gradient = self._llm.answer_gradient(question, answer) if answer else None
            row["grad_alignment"] = cosine(gradient.vector, calibration.mean_gradient) if gradient else 0.0
        if "neighbour_gece" in features and "neighbour_gece" not in row:
            vector = vector or self._embedder.embed([question], "query")[0]
            row["neighbour_gece"] = neighbour_gece(vector, calibration.neighbours, self._neighbours_k)
        fit = DetectorFit(dict(calibration.detector), list(calibration.features))
        estimate = self._detector.probability(fit, row)
        return (
            Signals(
                alpha=row["alpha"],
                mean_token_prob=row["mean_token_prob"],
                min_token_prob=row["min_token_prob"],
                grad_alignment=row.get("grad_alignment"),
                neighbour_gece=row.get("neighbour_gece"),
                state_probe=row.get("state_probe"),
                gece_estimate=estimate,
                threshold=calibration.decision_threshold,
            ),
            vector,
        )

    def _state_probe(self, question: str, calibration: Calibration) -> float:
        """The probe's long-tail log-odds from the model's question state."""
        if not calibration.probe:
            raise NotCalibrated(
                f"The calibration of {self._llm.name!r} has no state probe: "
                "run `atelier knowledge calibrate DATASET` again."
            )
        return probe_log_odds(self._probe, calibration.probe, self._llm.question_state(question))

    def _retrieve(self, question: str, vector: list[float] | None, k: int, owner: str) -> list[Passage]:
        """From the owner's own collection and the shared one."""
        return retrieve(self._index, self._embedder, self._words, self._retriever, question, k, owner, vector)


def retrieve(
    index: KnowledgeIndex,
    embedder: Embedder,
    words: WordFrequency,
    retriever: str,
    question: str,
    k: int,
    owner: str,
    vector: list[float] | None = None,
) -> list[Passage]:
    """The ``k`` passages ``retriever`` finds for ``question`` in the owner's collection and the shared one:
    by the question's embedding, by its words, or both fused by reciprocal rank (each list ``HYBRID_DEPTH`` deep,
    at least ``k``)."""
    collections = sorted({owner, SHARED_COLLECTION})
    depth = max(k, HYBRID_DEPTH) if retriever == "hybrid" else k
    found: list[list[Passage]] = []
    if retriever in ("vector", "hybrid"):
        if vector is None:
            vector = embedder.embed([question], "query")[0]
        found.append(index.search(vector, depth, collections))
    if retriever in ("keyword", "hybrid"):
        found.append(index.keyword_search(keyword_terms(words.words(question)), depth, collections))
    return found[0] if len(found) == 1 else fuse(found, k)


def _gate_cut(calibration: Calibration) -> float:
    """The cut of the calibration's gate (a calibration made before gates were chosen: its detector threshold)."""
    return calibration.decision_threshold if calibration.gate_threshold is None else calibration.gate_threshold


def _abort_rule(cut: float | None) -> StopRule | None:
    """Abandon the answer at the first token whose probability is below ``cut``: the running minimum
    token probability has then fallen below it, and can only stay there."""
    if cut is None:
        return None
    return lambda probs: bool(probs) and probs[-1] < cut


class _Timer:
    """Seconds per named stage, and the total since construction."""

    def __init__(self) -> None:
        self._start = time.perf_counter()
        self.stages: dict[str, float] = {}

    def run(self, stage: str, work: Callable[[], T]) -> T:
        t0 = time.perf_counter()
        try:
            return work()
        finally:
            self.stages[stage] = self.stages.get(stage, 0.0) + time.perf_counter() - t0

    def finish(self) -> dict[str, float]:
        total = time.perf_counter() - self._start
        return {**{k: round(v, 6) for k, v in self.stages.items()}, "total": round(total, 6)}
