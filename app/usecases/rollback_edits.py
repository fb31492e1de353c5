"""Roll the served model back to an earlier point of its edit log (0: the original model)."""

from __future__ import annotations

from app.domain.edits import EditRequest, validate_rollback
from app.ports.clock import Clock
from app.ports.edits import EditLog, EditorPool
from app.usecases.restore_edits import attach


class RollbackEdits:
    def __init__(self, pool: EditorPool, log: EditLog, clock: Clock) -> None:
        self._pool, self._log, self._clock = pool, log, clock

    def __call__(self, to: int) -> list[EditRequest]:
        """Keep the first ``to`` active edits; returns the edits rolled back (last first).

        Raises ``RollbackOutOfRange`` for a point before the start or past the last edit. The log is
        written first: it decides what the next start loads."""
        active = self._log.active(self._pool.model)
        keep = validate_rollback(to, len(active))
        undone = active[keep:]
        if not undone:
            return []
        now = self._clock.now()
        for edit in undone:
            edit.roll_back(now)
        self._log.roll_back(undone)
        editor = attach(self._pool, active, active[-1].editor)
        editor.rollback(keep)
        self._pool.chain = tuple(e.id for e in active[:keep])
        self._pool.save(editor)
        return list(reversed(undone))
