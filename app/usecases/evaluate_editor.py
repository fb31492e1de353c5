"""The sequential-editing evaluation protocol (as DAFNet and WISE evaluate).

Shuffle the edits (seeded, seed 0 by default), cut them into chunks of T, and for each chunk: apply the
T edits one by one, score **all T after the last one** (reliability, generality, locality, and fluency
on a few of them), then restore the model. The scores are averaged over edits (chunks weighted by their
size; the two extra locality readings likewise, where the evaluator gives them).
Nothing is written to the edit log; the served model is back as it was afterwards.
"""

from __future__ import annotations

import random
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from app.domain.edits import EditorMismatch, EditScores, EditSpec, validate_editor
from app.domain.errors import InvalidParameters
from app.ports.edits import EditEvaluator, EditLog, EditorPool
from app.usecases.restore_edits import attach


@dataclass(frozen=True)
class EditorReport:
    editor: str
    sequence_length: int
    chunks: int
    scores: EditScores
    ms_per_edit: float


class EvaluateEditor:
    def __init__(self, pool: EditorPool, log: EditLog, evaluator: EditEvaluator) -> None:
        self._pool, self._log, self._evaluator = pool, log, evaluator

    def __call__(
        self,
        editor: str,
        edits: Sequence[EditSpec],
        sequence_length: int,
        seed: int = 0,
        max_chunks: int | None = None,
        fluency_samples: int = 0,
        progress: Callable[[int, int], None] | None = None,
    ) -> EditorReport:
        name = validate_editor(editor)
        if sequence_length < 1:
            raise InvalidParameters("The sequence length T must be at least 1.", field="sequence_length")
        if len(edits) < sequence_length:
            raise InvalidParameters(
                f"{len(edits)} edits do not fill one chunk of T={sequence_length}.", field="dataset"
            )
        active = self._log.active(self._pool.model)
        if active and active[-1].editor != name:
            raise EditorMismatch(f"The served model has {len(active)} {active[-1].editor} edits; roll back to 0 first.")
        instance = attach(self._pool, active, name)
        start = instance.applied
        order = list(edits)
        random.Random(seed).shuffle(order)
        chunks = [order[i : i + sequence_length] for i in range(0, len(order) - sequence_length + 1, sequence_length)]
        chunks = chunks[:max_chunks] if max_chunks else chunks
        totals = dict.fromkeys(
            ("reliability", "generality", "locality", "fluency", "locality_confident", "locality_unrelated"), 0.0
        )
        counts = dict.fromkeys(totals, 0)
        seconds = 0.0
        for done, chunk in enumerate(chunks):
            baseline = self._evaluator.baseline(chunk)
            try:
                t0 = time.perf_counter()
                for spec in chunk:
                    instance.apply(spec)
                seconds += time.perf_counter() - t0
                scores = self._evaluator.score(chunk, baseline, fluency_samples)
            finally:
                instance.rollback(start)
            for key in totals:
                value = getattr(scores, key)
                if value is not None:
                    weight = min(fluency_samples, len(chunk)) if key == "fluency" else len(chunk)
                    totals[key] += value * weight
                    counts[key] += weight
            if progress:
                progress(done + 1, len(chunks))
        n = sum(len(c) for c in chunks)
        mean = {k: (totals[k] / counts[k] if counts[k] else None) for k in totals}
        return EditorReport(
            editor=name,
            sequence_length=sequence_length,
            chunks=len(chunks),
            scores=EditScores(
                mean["reliability"],
                mean["generality"],
                mean["locality"],
                mean["fluency"],
                n,
                locality_confident=mean["locality_confident"],
                locality_unrelated=mean["locality_unrelated"],
            ),
            ms_per_edit=1000 * seconds / max(n, 1),
        )
