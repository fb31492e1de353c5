"""Edit scores on a transformers causal LM, as DAFNet's and EasyEdit's evaluation defines them.

Reliability and generality are teacher-forced top-1 accuracies of the target tokens after the edit prompt
and after each rephrasing (mean over sequences of the share of target tokens predicted exactly). Locality
is the share of the locality probes' answer positions whose argmax token is the one the model predicted
before the edits, pooled over all positions of all probes. Fluency is ROME's generation entropy (the
weighted 2- and 3-gram entropy of :func:`ngram_entropy`) of greedy generations about the edits' subjects
(``FLUENCY_PROMPT``; an edit without a subject uses its prompt). ROME generates from open prompts about
the subject; the edit prompt itself is a question whose edited answer is a few tokens and the end of
the turn, too short for n-gram statistics.

Every sequence is encoded as the model is asked (:func:`encode`: the chat template, the end-of-turn token
after the answer). The probes are scored as one batch in :meth:`baseline` and in :meth:`score` alike:
the same padded shapes give the same arithmetic, so an unchanged model scores locality 1.0 exactly, not
up to an argmax flipped by the rounding of another batch width.

Two more readings of locality (``EditScores``): over the confident positions only (the unedited model's
top token leads by at least ``CONFIDENT_MARGIN`` nats; a small model is unsure at many answer positions,
where any change of the weights may flip the argmax), and on ``unrelated`` prompts that share nothing
with the edits (default: ``unrelated_probes``, standing in for ZsRE's Natural Questions).
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import Any

from app.adapters.editing.encoding import Encoded, encode, pad_id
from app.adapters.editing.predictions import accuracy, teacher_forced, teacher_forced_margins
from app.adapters.editing.records import locked
from app.domain.edits import CONFIDENT_MARGIN, EditScores, EditSpec, LocalityProbe, ngram_entropy
from app.domain.errors import InvalidParameters
from app.ports.edits import EditBaseline, EditEvaluator

# Scripts written without spaces between words: each character counts as a word.
_UNSPACED = "\u3001-\u303f\u3040-\u30ff\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff\uff01-\uff9f"
_WORD = re.compile(f"[{_UNSPACED}]|[^\\s{_UNSPACED}]+")


def words(text: str) -> list[str]:
    """Whitespace-separated words; in Chinese or Japanese text every character is a word of its own."""
    return _WORD.findall(text)


FLUENCY_PROMPT = "Write a few sentences about {subject}."


class TransformersEditEvaluator(EditEvaluator):
    """Scores the model as it is now. ``fluency_tokens``: the length of each fluency generation (48);
    ``unrelated``: the fixed probes of ``locality_unrelated`` (empty: not measured)."""

    def __init__(self, lm: Any, fluency_tokens: int = 48, unrelated: Sequence[LocalityProbe] = ()) -> None:
        if fluency_tokens < 2:
            raise InvalidParameters("fluency_tokens must be at least 2.", field="fluency_tokens")
        self.lm = lm
        self.fluency_tokens = fluency_tokens
        self._pad = pad_id(lm.tokenizer)
        self._unrelated = [encode(lm, p.prompt, p.answer) for p in unrelated]

    def baseline(self, edits: Sequence[EditSpec]) -> EditBaseline:
        probes = self._probes(edits)
        with locked(self.lm):
            tokens, margins = teacher_forced_margins(self.lm.model, probes, self._pad)
            unrelated = teacher_forced(self.lm.model, self._unrelated, self._pad) if self._unrelated else []
        return EditBaseline(locality_tokens=tokens, locality_margins=margins, unrelated_tokens=unrelated)

    def score(self, edits: Sequence[EditSpec], baseline: EditBaseline, fluency_samples: int = 0) -> EditScores:
        rewrites = [encode(self.lm, e.prompt, e.target) for e in edits]
        rephrases = [encode(self.lm, r, e.target) for e in edits for r in e.rephrases]
        probes = self._probes(edits)
        before = baseline.locality_tokens
        if len(before) != len(probes) or any(len(b) != len(p.targets) for b, p in zip(before, probes, strict=True)):
            raise InvalidParameters("The baseline was taken for other edits.", field="baseline")
        if len(baseline.unrelated_tokens) not in (0, len(self._unrelated)):
            raise InvalidParameters("The baseline was taken with other unrelated probes.", field="baseline")
        with locked(self.lm):
            predicted = teacher_forced(self.lm.model, [*rewrites, *rephrases], self._pad)
            after = teacher_forced(self.lm.model, probes, self._pad) if probes else []
            unrelated = teacher_forced(self.lm.model, self._unrelated, self._pad) if baseline.unrelated_tokens else []
        reliability = _accuracy(predicted[: len(rewrites)], rewrites)
        generality = _accuracy(predicted[len(rewrites) :], rephrases)
        locality = _kept(before, after)
        confident = None
        if baseline.locality_margins:
            sure = [[m >= CONFIDENT_MARGIN for m in row] for row in baseline.locality_margins]
            confident = _kept(before, after, sure)
        fluency = None
        samples = list(edits)[: max(0, fluency_samples)]
        if samples:
            # generate() takes the model's lock itself, one generation at a time.
            prompts = [FLUENCY_PROMPT.format(subject=e.subject) if e.subject else e.prompt for e in samples]
            texts = [self.lm.generate(p, max_new_tokens=self.fluency_tokens).text for p in prompts]
            fluency = sum(ngram_entropy(words(t)) for t in texts) / len(texts)
        return EditScores(
            reliability,
            generality,
            locality,
            fluency,
            n=len(edits),
            locality_confident=confident,
            locality_unrelated=_kept(baseline.unrelated_tokens, unrelated),
        )

    def _probes(self, edits: Sequence[EditSpec]) -> list[Encoded]:
        return [encode(self.lm, p.prompt, p.answer) for e in edits for p in e.locality]


def _kept(
    before: Sequence[Sequence[int]], after: Sequence[Sequence[int]], where: Sequence[Sequence[bool]] | None = None
) -> float | None:
    """The share of positions (all, or those ``where`` marks) whose argmax token is unchanged; None if none."""
    kept = positions = 0
    for i, (old, new) in enumerate(zip(before, after, strict=True)):
        for j, (a, b) in enumerate(zip(old, new, strict=True)):
            if where is None or where[i][j]:
                kept += int(a == b)
                positions += 1
    return kept / positions if positions else None


def _accuracy(predicted: list[list[int]], batch: list[Encoded]) -> float | None:
    return accuracy(predicted, batch) if batch else None
