"""Calibrate the long-tail detector of a language model on labelled questions (GECE as published).

For every instance (question, reference answers):
- the model answers alone; M = METEOR of the answer against the references (best reference), words
  from the ``WordFrequency`` port (jieba words for Chinese), stems and synonyms from the ``Lexicon``;
- mean token probability of the answer; alpha = mean Zipf frequency of the question's words;
- grad_ins = the gradient (sketch) of the NLL of the first reference answer, one forward and backward
  pass as in fine-tuning on the instance; E(grad_ins) = their mean over the calibration set;
- GECE = |M - mean p| / (alpha * cos(E(grad_ins), grad_ins)) (``app.domain.gece``).

Labels: an instance is long-tail when its GECE exceeds ``threshold_gece``, chosen on the calibration
set as the cut that best separates wrong from right parametric answers (Youden's J; the summaries of
the paper say nothing of how the cut is set).

The detector then learns to predict that label from what exists at query time: alpha, the mean and
minimum token probability of the model's own answer, the gradient alignment with the model's own
answer as target, and the mean GECE of the nearest other calibration questions (leave-one-out).

Two cuts let a query decide before its parametric answer is complete:
- ``early_threshold``: on the early detector over the signals that exist before any answer. By
  default it is the decision threshold itself: the early detector is a calibrated estimate of the
  same label, so retrieving when it says "more likely long-tail than not" is the decision the late
  detector would make under the same loss, taken without the plain answer's cost (the early-cut
  replay in docs/knowledge.md compares the cuts). ``early_precision`` instead sets it at the lowest
  cut where the calibration set finds the early decision that precise about the label (none where
  no cut is that precise).
- ``abort_min_prob``: on the answer's minimum token probability, where the calibration set finds
  answers below it at least ``ABORT_PRECISION`` long-tail. The running minimum can only fall as
  tokens are generated, so an answer whose running minimum drops below the cut will end below
  it: abandoning it at that token and retrieving decides exactly as waiting would, minus the rest
  of the answer and its backward pass.

The ``state_probe`` signal is a linear probe (L2-penalised logistic regression over the hidden state
of the prompt's last token, ``LanguageModel.question_state``) trained on the GECE labels; it exists
before the model answers, so both detectors may use it. Calibration rows carry cross-fitted probe
scores (see ``_fit_probe``).
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace

from app.domain.errors import InvalidParameters
from app.domain.gece import auroc, cosine, gece, mean_vector
from app.domain.knowledge import (
    DETECTOR_FEATURES,
    EARLY_FEATURES,
    GATES,
    Calibration,
    gate_score,
    new_query_id,
    validate_features,
    validate_question,
)
from app.domain.meteor import meteor_multi
from app.ports.clock import Clock
from app.ports.knowledge import CalibrationStore, Embedder, LanguageModel, Lexicon, LongTailDetector, WordFrequency
from app.usecases.knowledge_signals import answer_matches, log_odds, neighbour_gece, question_alpha, state_row

MIN_INSTANCES = 8
PROBE_FOLDS = 5
# A parametric answer is abandoned below a token probability only where the calibration set finds
# answers below it this precise about the long-tail label.
ABORT_PRECISION = 0.9
GATE_FOLDS = 5
GATE_ORDER = ("token_prob", "detector", "combined")  # the simpler gate first where cross-validation ties
# A gate's cut leaves unretrieved at most this share of the calibration questions whose plain answer was wrong.
MISSED_WRONG = 0.01


@dataclass(frozen=True)
class LabelledQuestion:
    question: str
    answers: list[str]  # the first is the reference used for the gradient; all count for METEOR and correctness


@dataclass(frozen=True)
class InstanceSignals:
    """Everything calibration measured on one instance (kept for reports and benchmarks)."""

    question: str
    answer: str
    correct: bool
    meteor: float
    mean_token_prob: float
    min_token_prob: float
    alpha: float
    reference_alignment: float  # cos(E(grad), grad of the reference answer): GECE's term
    reference_dot: float  # the published raw dot product, for comparison
    grad_alignment: float  # cos(E(grad), grad of the model's own answer): the query-time feature
    gece: float
    neighbour_gece: float
    embedding: list[float]
    state: list[float] = field(default_factory=list, repr=False)  # the model's question state
    state_probe: float = 0.0  # the probe's long-tail log-odds, fitted without this instance's fold


Progress = Callable[[int, int], None]


class CalibrateDetector:
    def __init__(
        self,
        llm: LanguageModel,
        embedder: Embedder,
        words: WordFrequency,
        lexicon: Lexicon,
        detector: LongTailDetector,
        calibrations: CalibrationStore,
        clock: Clock,
        max_new_tokens: int = 32,
        neighbours_k: int = 5,
        probe: LongTailDetector | None = None,
        restore: Callable[[], object] | None = None,
    ) -> None:
        """``restore``: gives the model the edits its log holds; called before measuring, so the calibration
        is of the model as it is served."""
        self._llm, self._embedder, self._words, self._lexicon = llm, embedder, words, lexicon
        self._detector, self._calibrations, self._clock = detector, calibrations, clock
        self._probe = probe or detector
        self._max_new_tokens, self._neighbours_k = max_new_tokens, neighbours_k
        self._restore = restore

    def measure(
        self, items: Sequence[LabelledQuestion], progress: Progress | None = None
    ) -> tuple[list[InstanceSignals], list[float]]:
        """The GECE terms of every instance and E(grad_ins) (no fitting, nothing stored)."""
        if self._restore is not None:
            self._restore()
        raw = []
        for i, item in enumerate(items):
            question = validate_question(item.question)
            if not item.answers or not all(isinstance(a, str) and a.strip() for a in item.answers):
                raise InvalidParameters(f"Instance {i + 1} has no reference answer.", field="answers")
            state = self._llm.question_state(question)  # before generate: its prefill is reused
            answer = self._llm.generate(question, (), self._max_new_tokens)
            probs = answer.token_probs
            hypothesis = self._words.words(answer.text)
            references = [self._words.words(a) for a in item.answers]
            raw.append(
                (
                    question,
                    answer.text,
                    answer_matches(answer.text, item.answers),
                    meteor_multi(references, hypothesis, self._lexicon),
                    sum(probs) / len(probs) if probs else 0.0,
                    min(probs) if probs else 0.0,
                    question_alpha(self._words, question),
                    self._llm.answer_gradient(question, item.answers[0]).vector,
                    self._llm.answer_gradient(question, answer.text).vector if answer.text else None,
                    state,
                )
            )
            if progress:
                progress(i + 1, len(items))
        mean = mean_vector([r[7] for r in raw])
        embeddings = self._embedder.embed([r[0] for r in raw], "query")
        geces = [gece(r[3], r[4], r[6], cosine(mean, r[7])) for r in raw]
        out = []
        for i, r in enumerate(raw):
            others = [(embeddings[j], geces[j]) for j in range(len(raw)) if j != i]
            out.append(
                InstanceSignals(
                    question=r[0],
                    answer=r[1],
                    correct=r[2],
                    meteor=r[3],
                    mean_token_prob=r[4],
                    min_token_prob=r[5],
                    alpha=r[6],
                    reference_alignment=cosine(mean, r[7]),
                    reference_dot=sum(a * b for a, b in zip(mean, r[7], strict=True)),
                    grad_alignment=cosine(mean, r[8]) if r[8] is not None else 0.0,
                    gece=geces[i],
                    neighbour_gece=neighbour_gece(embeddings[i], others, self._neighbours_k),
                    embedding=embeddings[i],
                    state=r[9],
                )
            )
        return out, mean

    def __call__(
        self,
        items: Sequence[LabelledQuestion],
        dataset: str,
        features: Sequence[str] = DETECTOR_FEATURES,
        decision_threshold: float = 0.5,
        progress: Progress | None = None,
        early_precision: float | None = None,
        gate: str = "auto",
    ) -> tuple[Calibration, list[InstanceSignals]]:
        """Measure, label, fit and store the calibration. ``gate``: ``auto`` chooses among ``GATES`` by
        cross-validation (``choose_gate``); naming one uses it (its cut set the same way). ``InvalidParameters`` for
        fewer than ``MIN_INSTANCES`` instances, an instance without a reference, an unknown feature or gate."""
        chosen = validate_features(list(features))
        if gate != "auto" and gate not in GATES:
            raise InvalidParameters(f"gate must be auto or one of {', '.join(GATES)}.", field="gate")
        if len(items) < MIN_INSTANCES:
            raise InvalidParameters(
                f"Calibration needs at least {MIN_INSTANCES} labelled questions; got {len(items)}.", field="dataset"
            )
        if not 0.0 < decision_threshold < 1.0:
            raise InvalidParameters("decision_threshold must lie strictly between 0 and 1.", field="decision_threshold")
        if early_precision is not None and not 0.0 < early_precision <= 1.0:
            raise InvalidParameters("early_precision must lie in (0, 1].", field="early_precision")
        t0 = time.perf_counter()
        signals, mean_gradient = self.measure(items, progress)
        cut = youden_threshold([s.gece for s in signals], [not s.correct for s in signals])
        labels = [s.gece > cut for s in signals]
        probe: dict[str, object] = {}
        if "state_probe" in chosen:
            probe, scores = self._fit_probe([s.state for s in signals], labels)
            signals = [replace(s, state_probe=v) for s, v in zip(signals, scores, strict=True)]
        rows = [feature_row(s) for s in signals]
        fit = self._detector.fit(rows, labels, chosen)
        fitted = [self._detector.probability(fit, row) for row in rows]
        early_names = [f for f in EARLY_FEATURES if f in chosen]
        early_fit = self._detector.fit(rows, labels, early_names) if early_names else None
        early_scores = [self._detector.probability(early_fit, row) for row in rows] if early_fit else []
        if early_fit is None:
            early_cut = None
        elif early_precision is None:
            early_cut = decision_threshold
        else:
            early_cut = precise_threshold(early_scores, labels, early_precision)
        wrong = [not s.correct for s in signals]
        gate, gate_cut, gate_cv = choose_gate(
            self._detector, rows, labels, wrong, chosen, None if gate == "auto" else gate
        )
        abort_cut = precise_threshold([-s.min_token_prob for s in signals], labels, ABORT_PRECISION)
        abort_min_prob = -abort_cut if abort_cut is not None else None
        if gate == "token_prob":  # abandoning the answer at the gate's own cut decides exactly as the gate
            abort_min_prob = 1.0 - gate_cut
        stats = {
            **{f"gate_cv_auroc_{name}": value for name, value in gate_cv.items()},
            "gate_retrieval_share": sum(
                gate_score(gate, p, r["min_token_prob"]) > gate_cut for p, r in zip(fitted, rows, strict=True)
            )
            / len(rows),
            "n": float(len(signals)),
            "parametric_accuracy": sum(s.correct for s in signals) / len(signals),
            "long_tail_share": sum(labels) / len(labels),
            "gece_auroc_wrong": auroc([s.gece for s in signals], wrong),
            "detector_auroc_label": auroc(fitted, labels),
            "detector_auroc_wrong": auroc(fitted, wrong),
            "seconds": time.perf_counter() - t0,
            **{k: float(v) for k, v in fit.stats.items()},
        }
        if early_fit is not None and early_cut is not None:
            early = [score > early_cut for score in early_scores]
            stats["early_retrieval_share"] = sum(early) / len(early)
        if abort_min_prob is not None:
            stats["abort_share"] = sum(s.min_token_prob < abort_min_prob for s in signals) / len(signals)
        stats = {k: v for k, v in stats.items() if not math.isnan(v)}  # an AUROC needs both classes
        calibration = Calibration(
            id=new_query_id(),
            model=self._llm.name,
            embedder=self._embedder.name,
            dataset=dataset,
            created_at=self._clock.now(),
            n=len(signals),
            mean_gradient=mean_gradient,
            threshold_gece=cut,
            features=list(fit.features),
            detector=dict(fit.params),
            decision_threshold=decision_threshold,
            neighbours=[(s.embedding, s.gece) for s in signals],
            stats=stats,
            early_features=list(early_fit.features) if early_fit else [],
            early_detector=dict(early_fit.params) if early_fit else {},
            early_threshold=early_cut,
            abort_min_prob=abort_min_prob,
            probe=probe,
            gate=gate,
            gate_threshold=gate_cut,
        )
        self._calibrations.save(calibration)
        return calibration, signals

    def _fit_probe(
        self, states: Sequence[Sequence[float]], labels: Sequence[bool]
    ) -> tuple[dict[str, object], list[float]]:
        """The state probe fitted on every instance, and each instance's score from a probe fitted
        without its fold (``PROBE_FOLDS``-fold cross-fitting): the detector that stacks the probe's
        score with the other signals must learn from scores like those it will see at query time,
        not from the probe's fit to the instance itself."""
        rows = [state_row(s) for s in states]
        names = list(rows[0]) if rows else []
        full = self._probe.fit(rows, labels, names)
        scores = [0.0] * len(rows)
        for fold in range(PROBE_FOLDS):
            train = [i for i in range(len(rows)) if i % PROBE_FOLDS != fold]
            held = [i for i in range(len(rows)) if i % PROBE_FOLDS == fold]
            if not held:
                continue
            fit = self._probe.fit([rows[i] for i in train], [labels[i] for i in train], names)
            for i in held:
                scores[i] = log_odds(self._probe.probability(fit, rows[i]))
        return dict(full.params), scores


def choose_gate(
    detector: LongTailDetector,
    rows: Sequence[dict[str, float]],
    labels: Sequence[bool],
    wrong: Sequence[bool],
    features: Sequence[str],
    forced: str | None = None,
) -> tuple[str, float, dict[str, float]]:
    """The gate that best tells the plain answers that are wrong from those that are right, by ``GATE_FOLDS``-fold
    cross-validation: each fold's detector is fitted on the other folds' GECE labels (what it learns is unchanged),
    and every gate scores the fold's questions; the gate whose out-of-fold scores have the highest AUROC against
    "the plain answer is wrong" wins (ties: the simplest first, ``GATE_ORDER``).
    Its cut is the highest at which the questions left unretrieved hold at most ``MISSED_WRONG`` of the calibration
    set's wrong answers (as a share of all questions): retrieval fixes what it can, and the gate only spares the
    retrieval where the model already knows. ``forced`` names the gate instead (its cut set the same way). Returns
    the gate, its cut and each gate's cross-validated AUROC."""
    n = len(rows)
    detector_oof = [0.0] * n
    for fold in range(GATE_FOLDS):
        train = [i for i in range(n) if i % GATE_FOLDS != fold]
        held = [i for i in range(n) if i % GATE_FOLDS == fold]
        if not held:
            continue
        fit = detector.fit([rows[i] for i in train], [labels[i] for i in train], features)
        for i in held:
            detector_oof[i] = detector.probability(fit, rows[i])
    lowest = [r["min_token_prob"] for r in rows]
    cv = {
        gate: auroc([gate_score(gate, d, p) for d, p in zip(detector_oof, lowest, strict=True)], wrong)
        for gate in GATES
    }
    ranked = sorted(GATES, key=lambda g: (-(cv[g] if not math.isnan(cv[g]) else -1.0), GATE_ORDER.index(g)))
    gate = forced or ranked[0]
    full = detector.fit(rows, labels, features)
    scores = [gate_score(gate, detector.probability(full, r), r["min_token_prob"]) for r in rows]
    return gate, recall_cut(scores, wrong, MISSED_WRONG), {g: v for g, v in cv.items() if not math.isnan(v)}


def recall_cut(scores: Sequence[float], wrong: Sequence[bool], missed: float) -> float:
    """The highest cut c such that the items scoring at most c (those a gate leaves unretrieved) include at most
    ``missed`` × n wrong ones; below every score (retrieve all) when even the lowest-scoring item is too many."""
    budget = math.floor(missed * len(scores) + 1e-9)
    ordered = sorted(zip(scores, wrong, strict=True))
    cut = ordered[0][0] - 1e-6 if ordered else 0.0
    kept_wrong = 0
    for i, (score, is_wrong) in enumerate(ordered):
        kept_wrong += is_wrong
        if kept_wrong > budget:
            break
        if i + 1 == len(ordered) or ordered[i + 1][0] > score:  # a cut between distinct scores
            cut = score if i + 1 == len(ordered) else (score + ordered[i + 1][0]) / 2
    return cut


def feature_row(s: InstanceSignals) -> dict[str, float]:
    return {
        "alpha": s.alpha,
        "mean_token_prob": s.mean_token_prob,
        "min_token_prob": s.min_token_prob,
        "grad_alignment": s.grad_alignment,
        "neighbour_gece": s.neighbour_gece,
        "state_probe": s.state_probe,
    }


def precise_threshold(scores: Sequence[float], positives: Sequence[bool], precision: float) -> float | None:
    """The lowest cut c with at least ``precision`` of the items scoring above c positive (and at least
    one of them); None when no cut is that precise."""
    ordered = sorted(set(scores))
    for i, cut in enumerate([ordered[0] - 1.0, *ordered[:-1]]):
        above = [y for s, y in zip(scores, positives, strict=True) if s > cut]
        if above and sum(above) / len(above) >= precision:
            return cut if i == 0 else (cut + ordered[i]) / 2
    return None


def youden_threshold(scores: Sequence[float], positives: Sequence[bool]) -> float:
    """The cut c maximising TPR - FPR of ``score > c`` for the positives; the median when one class is empty."""
    ordered = sorted(set(scores))
    if not any(positives) or all(positives):
        return ordered[len(ordered) // 2]
    n_pos = sum(positives)
    n_neg = len(positives) - n_pos
    best, best_cut = -2.0, ordered[0]
    for i, c in enumerate(ordered):
        tp = sum(1 for s, y in zip(scores, positives, strict=True) if y and s > c)
        fp = sum(1 for s, y in zip(scores, positives, strict=True) if not y and s > c)
        j = tp / n_pos - fp / n_neg
        if j > best:
            best, best_cut = j, (c + ordered[i + 1]) / 2 if i + 1 < len(ordered) else c
    return best_cut
