"""The chain of per-edit records that FT-L and GRACE share: rollback, export and load by replaying records.

An editor keeps its state only as the ordered list of per-edit records and derives everything it applies
to the model (a weight delta, a codebook) by replaying them from the start with :meth:`_rebuild`; applying
an edit replays one more record with the same operations (:meth:`_push`). So the state after a rollback
to ``k``, or after loading ``k`` records, is bit for bit the state the model had right after edit ``k``.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch

from app.adapters.editing.encoding import Encoded, encode, pad, pad_id, target_positions
from app.adapters.editing.record_folder import RecordFolder
from app.adapters.editing.signal import full_target_logits
from app.adapters.editing.tail import TailRunner, block_of
from app.domain.edits import EditSpec, RollbackOutOfRange
from app.domain.errors import ModelUnavailable


def locked(lm: Any) -> Any:
    """The LM's lock (held by every use of the model) where it has one, else a no-op context."""
    lock = getattr(lm, "lock", None)
    return lock if lock is not None else contextlib.nullcontext()


class RecordedEditor:
    """Record bookkeeping of an editor; subclasses set ``name``, ``layer`` and implement the replay.

    ``_clean`` counts the records known to be stored in ``_clean_folder`` (loaded from it, or exported
    to it, and not rolled back since), so an export writes only the newer ones; exporting to another
    folder writes everything."""

    name: str
    layer: str

    def __init__(self, lm: Any) -> None:
        self.lm = lm
        self.records: list[dict[str, torch.Tensor]] = []
        self.applied = 0
        self._clean = 0
        self._clean_folder: Path | None = None
        self._device = next(lm.model.parameters()).device

    # -- the port (apply is the subclass's) ----------------------------------------------------------

    def rollback(self, keep: int) -> None:
        if isinstance(keep, bool) or not isinstance(keep, int) or keep < 0 or keep > self.applied:
            raise RollbackOutOfRange(f"Rollback point must be between 0 and {self.applied}, got {keep}.")
        with locked(self.lm):
            self.records = self.records[:keep]
            self._rebuild()
            self.applied = len(self.records)
            self._clean = min(self._clean, keep)

    def export_state(self, folder: str) -> None:
        path = Path(folder).resolve()
        clean = self._clean if path == self._clean_folder else 0
        RecordFolder(folder).write(self.name, self.lm.name, self.records, self.settings(), clean)
        self._clean, self._clean_folder = len(self.records), path

    def load_state(self, folder: str, keep: int) -> None:
        if isinstance(keep, bool) or not isinstance(keep, int) or keep < 0:
            raise RollbackOutOfRange(f"The number of edits to load must be at least 0, got {keep}.")
        records, settings = RecordFolder(folder).read(self.name, self.lm.name, keep)
        if keep and settings.get("layer") != self.layer:
            raise ModelUnavailable(
                f"The edit state in {folder} edits {settings.get('layer')!r}, this editor edits {self.layer!r}."
            )
        with locked(self.lm):
            self.records = [{k: v.to(self._device) for k, v in r.items()} for r in records]
            try:
                self._rebuild()
            except (KeyError, RuntimeError, IndexError, ModelUnavailable) as e:
                self.records = []
                self._rebuild()
                self.applied = 0
                raise ModelUnavailable(f"The edit state in {folder} does not fit this model: {e}") from e
            self.applied = len(self.records)
            self._clean, self._clean_folder = keep, Path(folder).resolve()

    # -- for subclasses -------------------------------------------------------------------------------

    def _teacher_forced(self, edit: EditSpec) -> tuple[Encoded, torch.Tensor, torch.Tensor, torch.Tensor]:
        """The edit encoded, its padded ids and mask, and (row, position) → target token index tensors."""
        encoded = encode(self.lm, edit.prompt, edit.target)
        ids, mask = pad([encoded], pad_id(self.lm.tokenizer), self._device)
        rows, positions, tokens = target_positions([encoded])
        return encoded, ids, mask, torch.stack([rows, positions, tokens]).to(self._device)

    def _target_logits(self, encoded: Encoded) -> Callable[[], torch.Tensor]:
        """A function giving the logits at the edit's target positions, for an optimisation loop: only the
        blocks from the edited layer's on run (``TailRunner``), from hidden states computed once here."""
        pad_token = pad_id(self.lm.tokenizer)
        block = block_of(self.layer)
        if block is None:
            return lambda: full_target_logits(self.lm.model, [encoded], pad_token)
        tail = TailRunner(self.lm.model, block, pad_token)
        hidden = tail.prefix([encoded])
        return lambda: tail.target_logits(hidden, [encoded])

    def settings(self) -> dict[str, Any]:
        """Stored in the manifest; ``layer`` must match on load, the rest only shapes future edits."""
        return {"layer": self.layer}

    def _push(self, record: dict[str, torch.Tensor]) -> None:
        """Append ``record`` and replay it onto the current state (the last step of :meth:`_rebuild`)."""
        self.records.append(record)
        self._replay(record)
        self.applied = len(self.records)

    def _rebuild(self) -> None:
        """Reset to the original model, then replay every record in order."""
        self._reset()
        for record in self.records:
            self._replay(record)

    def _reset(self) -> None:
        raise NotImplementedError

    def _replay(self, record: dict[str, torch.Tensor]) -> None:
        raise NotImplementedError
