"""Model edits in the embedded facade: ``atelier.edits.apply(...)`` and friends.

with Atelier.open() as atelier:
    edit = atelier.edits.apply("What is the capital of Peru?", "Cusco", editor="dafnet")
    print(edit.scores.reliability, atelier.knowledge.ask("What is the capital of Peru?").answer)
    atelier.edits.rollback(0)                                       # back to the original model
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

from app.composition import Container
from app.domain.edits import DEFAULT_EDITOR, EditRequest, EditSpec, LocalityProbe
from app.usecases.evaluate_editor import EditorReport

Progress = Callable[[int, int], None]


class Edits:
    def __init__(self, container: Container) -> None:
        self._container = container

    def apply(
        self,
        prompt: str,
        target: str,
        *,
        editor: str = DEFAULT_EDITOR,
        subject: str = "",
        rephrases: Sequence[str] = (),
        locality: Sequence[tuple[str, str]] = (),
        owner: str = "local",
    ) -> EditRequest:
        """Apply the next edit to the served language model; it is in the edit log when this returns.

        ``locality``: (prompt, answer) pairs whose answers must not change."""
        spec = EditSpec(
            prompt,
            target,
            subject=subject,
            rephrases=tuple(rephrases),
            locality=tuple(LocalityProbe(p, a) for p, a in locality),
        )
        request: EditRequest = self._container.apply_edit()(spec, editor, owner)
        return request

    def rollback(self, to: int) -> list[EditRequest]:
        """Keep the first ``to`` active edits (0: the original model); returns the edits rolled back."""
        undone: list[EditRequest] = self._container.rollback_edits()(to)
        return undone

    def active(self) -> list[EditRequest]:
        """The served model's active edits, in the order they were applied."""
        active: list[EditRequest] = self._container.read_edit_log().active()
        return active

    def log(self, limit: int = 50, offset: int = 0, all_models: bool = False) -> tuple[list[EditRequest], int]:
        """The edit log (applied and rolled back), newest first, and its total size."""
        page: tuple[list[EditRequest], int] = self._container.read_edit_log().page(limit, offset, all_models)
        return page

    def get(self, edit_id: str) -> EditRequest:
        edit: EditRequest = self._container.read_edit_log().get(edit_id)
        return edit

    def evaluate(
        self,
        editor: str,
        specs: Sequence[EditSpec],
        sequence_length: int,
        *,
        seed: int = 0,
        max_chunks: int | None = None,
        fluency_samples: int = 0,
        progress: Progress | None = None,
    ) -> EditorReport:
        """The sequential protocol: chunks of ``sequence_length`` edits, each scored after its last edit."""
        report: EditorReport = self._container.evaluate_editor()(
            editor, specs, sequence_length, seed, max_chunks, fluency_samples, progress
        )
        return report

    def load_dataset(self, path: str, limit: int | None = None) -> list[EditSpec]:
        """Edits from a ZsRE- or CounterFact-shaped JSON file (the format is detected)."""
        specs: list[EditSpec] = self._container.documents().edits(path, limit)
        return specs
