"""Read the edit log of the served language model: its active edits in order, or a page of the log."""

from __future__ import annotations

from app.domain.edits import EditRequest
from app.ports.edits import EditLog
from app.ports.knowledge import LanguageModel


class ReadEditLog:
    def __init__(self, log: EditLog, llm: LanguageModel) -> None:
        self._log, self._llm = log, llm

    def active(self) -> list[EditRequest]:
        """The served model's active edits, in the order they were applied."""
        return self._log.active(self._llm.name)

    def page(self, limit: int = 50, offset: int = 0, all_models: bool = False) -> tuple[list[EditRequest], int]:
        """Applied and rolled-back edits, newest first, and the log's size (``all_models``: of every model)."""
        return self._log.list(None if all_models else self._llm.name, limit, offset)

    def get(self, edit_id: str) -> EditRequest:
        """Raises ``EditNotFound``."""
        return self._log.get(edit_id)
