"""Give the served model the edits its log holds: at start (a restart serves the same edited model) and
before each use, so edits applied or rolled back by another process are served too."""

from __future__ import annotations

from collections.abc import Sequence

from app.domain.edits import EditRequest
from app.ports.edits import EditLog, EditorPool, ModelEditor


def attach(pool: EditorPool, active: Sequence[EditRequest], name: str) -> ModelEditor:
    """The editor ``name`` holding exactly the state of ``active`` (reloaded from the data dir only when
    the served state is not that one)."""
    ids = tuple(e.id for e in active)
    if pool.chain == ids:
        editor = pool.editor(name)
        if editor.applied == len(ids):
            return editor
    editor = pool.load(name, len(ids))
    pool.chain = ids
    return editor


class RestoreEdits:
    def __init__(self, pool: EditorPool, log: EditLog) -> None:
        self._pool, self._log = pool, log

    def __call__(self) -> int:
        """Returns the number of active edits served."""
        active = self._log.active(self._pool.model)
        if active:
            attach(self._pool, active, active[-1].editor)
        elif self._pool.chain:  # rolled back to the start by another process
            self._pool.reset()
            self._pool.chain = ()
        return len(active)
