"""Apply the next edit to the served language model, score it and record it in the edit log.

The edit is scored right after it is applied (reliability and generality on its own prompt and
rephrasings, locality on its probes against the model just before it), its state is saved in the data
dir, and the ``EditRequest`` is stored before it is returned. The log decides what the state is: a
crash between saving the state and storing the row leaves a record the log does not count, which the
next start ignores.
"""

from __future__ import annotations

import time

from app.domain.edits import EditRequest, EditSpec, check_chain, new_edit_id, validate_editor
from app.ports.clock import Clock
from app.ports.edits import EditEvaluator, EditLog, EditorPool
from app.usecases.restore_edits import attach


class ApplyEdit:
    def __init__(self, pool: EditorPool, log: EditLog, evaluator: EditEvaluator, clock: Clock) -> None:
        self._pool, self._log, self._evaluator, self._clock = pool, log, evaluator, clock

    def __call__(self, spec: EditSpec, editor: str = "dafnet", owner: str = "local") -> EditRequest:
        """Raises ``InvalidParameters`` (bad editor name, a text the tokenizer cannot encode),
        ``EditorMismatch`` (the active chain uses another editor) and ``EditorNotTrained``."""
        name = validate_editor(editor)
        active = self._log.active(self._pool.model)
        position = check_chain(active, name)
        instance = attach(self._pool, active, name)
        baseline = self._evaluator.baseline([spec])
        started = time.perf_counter()
        instance.apply(spec)
        seconds = time.perf_counter() - started
        try:
            scores = self._evaluator.score([spec], baseline)
            self._pool.save(instance)
            request = EditRequest(
                id=new_edit_id(),
                model=self._pool.model,
                editor=name,
                spec=spec,
                position=position,
                created_at=self._clock.now(),
                owner=owner,
                scores=scores,
                seconds=seconds,
            )
            self._log.add(request)
            self._pool.chain = (*self._pool.chain, request.id)
        except BaseException:
            instance.rollback(len(active))  # the log did not take it: neither does the served model
            raise
        return request
