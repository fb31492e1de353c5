"""The editors of the served language model, their checkpoints and their state in the data dir.

Layout under ``<data dir>/edits/``: ``networks/<model>/<dafnet|mend>/`` (meta-trained checkpoints,
written by ``atelier edits train``) and ``state/<model>/`` (the attached editor's per-edit records).
"""

from __future__ import annotations

import contextlib
from contextlib import AbstractContextManager
from pathlib import Path
from typing import Any

from app.domain.edits import EDITORS, EditorMismatch
from app.domain.errors import InvalidParameters
from app.ports.edits import EditorPool, ModelEditor


def model_slug(name: str) -> str:
    return "".join(c if c.isalnum() or c in "-_." else "_" for c in name) or "model"


def networks_dir(data_dir: str) -> Path:
    return Path(data_dir) / "edits" / "networks"


class TransformersEditorPool(EditorPool):
    def __init__(self, lm: Any, data_dir: str, settings: dict[str, dict[str, Any]] | None = None) -> None:
        self.lm = lm
        self.model = lm.name
        self.chain: tuple[str, ...] = ()
        self.state_dir = Path(data_dir) / "edits" / "state" / model_slug(lm.name)
        self.networks = networks_dir(data_dir)
        self.settings = settings or {}
        self._current: ModelEditor | None = None

    def editor(self, name: str) -> ModelEditor:
        if name not in EDITORS:
            raise InvalidParameters(f"editor must be one of {', '.join(EDITORS)}.", field="editor")
        current = self._current
        if current is not None and current.name == name:
            return current
        if current is not None:
            if current.applied:
                raise EditorMismatch(f"{current.applied} {current.name} edits are applied; roll back to 0 first.")
            close = getattr(current, "close", None)
            if close is not None:
                close()
            self._current = None
        self._current = self._build(name)
        return self._current

    def save(self, editor: ModelEditor) -> None:
        editor.export_state(str(self.state_dir))

    def load(self, name: str, keep: int) -> ModelEditor:
        current = self._current
        if current is not None and current.name != name:
            current.rollback(0)  # its state is on disk; the log says another editor's chain is active
        editor = self.editor(name)
        editor.load_state(str(self.state_dir), keep)
        return editor

    def reset(self) -> None:
        if self._current is not None:
            self._current.rollback(0)

    def unedited(self) -> AbstractContextManager[None]:
        current = self._current
        off = getattr(current, "unedited", None)
        return off() if off is not None else contextlib.nullcontext()

    def _build(self, name: str) -> ModelEditor:
        options = dict(self.settings.get(name, {}))
        if name in ("dafnet", "mend"):
            from app.adapters.editing.dafnet import DafnetEditor, checkpoint_dir

            return DafnetEditor(self.lm, checkpoint_dir(str(self.networks), model_slug(self.lm.name), name), name)
        if name == "ft":
            from app.adapters.editing.ft import FtEditor

            return FtEditor(self.lm, **options)
        from app.adapters.editing.grace import GraceEditor

        return GraceEditor(self.lm, **options)
