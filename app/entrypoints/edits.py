"""Model edits in the embedded facade: ``atelier.edits.apply(...)`` and friends.

with Atelier.open() as atelier:
    atelier.edits.train("dafnet")                                   # once per model (meta-training)
    edit = atelier.edits.apply("What is the capital of Peru?", "Cusco", editor="dafnet")
    print(edit.scores.reliability, atelier.knowledge.ask("What is the capital of Peru?").answer)
    atelier.edits.rollback(0)                                       # back to the original model
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any

from app.domain.edits import DEFAULT_EDITOR, EditRequest, EditSpec, LocalityProbe
from app.usecases.evaluate_editor import EditorReport

if TYPE_CHECKING:
    from app.entrypoints.library import Atelier

Progress = Callable[[int, int], None]


class Edits:
    def __init__(self, atelier: Atelier) -> None:
        self._atelier = atelier
        self._container = atelier.container

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
        self._atelier.migrate()
        request: EditRequest = self._container.apply_edit()(spec, editor, owner)
        return request

    def rollback(self, to: int) -> list[EditRequest]:
        """Keep the first ``to`` active edits (0: the original model); returns the edits rolled back."""
        self._atelier.migrate()
        undone: list[EditRequest] = self._container.rollback_edits()(to)
        return undone

    def active(self) -> list[EditRequest]:
        """The served model's active edits, in the order they were applied."""
        self._atelier.migrate()
        active: list[EditRequest] = self._container.edit_log().active(self._container.llm().name)
        return active

    def log(self, limit: int = 50, offset: int = 0, all_models: bool = False) -> tuple[list[EditRequest], int]:
        """The edit log (applied and rolled back), newest first, and its total size."""
        self._atelier.migrate()
        model = None if all_models else self._container.llm().name
        page: tuple[list[EditRequest], int] = self._container.edit_log().list(model, limit, offset)
        return page

    def get(self, edit_id: str) -> EditRequest:
        self._atelier.migrate()
        edit: EditRequest = self._container.edit_log().get(edit_id)
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
        self._atelier.migrate()
        report: EditorReport = self._container.evaluate_editor()(
            editor, specs, sequence_length, seed, max_chunks, fluency_samples, progress
        )
        return report

    def train(
        self,
        editor: str = "dafnet",
        *,
        work_dir: str | None = None,
        restart: bool = False,
        progress: Callable[[int, int, dict[str, float]], None] | None = None,
        **config: Any,
    ) -> dict[str, Any]:
        """Meta-train DAFNet (or MEND) for the served model on the geonames DAFSet-style training split.

        ``config`` overrides ``EditTrainConfig`` fields (``steps``, ``max_sequence``, ...). Resumes from
        the checkpoint in ``work_dir`` (default ``<data dir>/training/edits-<editor>``)."""
        from app.adapters.editing.training_run import train_editor

        self._atelier.migrate()
        llm = self._container.llm()
        pool = self._container.editor_pool()
        pool.reset()  # meta-training needs the original model; the log's edits come back afterwards
        try:
            summary: dict[str, Any] = train_editor(
                llm,
                self._atelier.settings.data_dir,
                editor,
                work_dir=work_dir,
                restart=restart,
                progress=progress,
                **config,
            )
        finally:
            self._container.restore_edits()()
        return summary

    @staticmethod
    def make_dataset(out_dir: str, seed: int = 0) -> dict[str, Any]:
        """Write the DAFSet-style counterfactual edits (ZsRE-shaped ``train.json``/``test.json``)."""
        from app.adapters.knowledge_data.dafset import write_dafset

        return write_dafset(out_dir, seed)

    @staticmethod
    def load_dataset(path: str, limit: int | None = None) -> list[EditSpec]:
        """Edits from a ZsRE- or CounterFact-shaped JSON file (the format is detected)."""
        from app.adapters.knowledge_data.dafset import load_edit_file

        return load_edit_file(path, limit)
