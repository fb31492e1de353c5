"""Ports of model edits: the editor that changes a language model, the evaluator, the edit log."""

from __future__ import annotations

from collections.abc import Sequence
from contextlib import AbstractContextManager
from dataclasses import dataclass, field
from typing import Protocol

from app.domain.edits import EditRequest, EditScores, EditSpec


class ModelEditor(Protocol):
    """Applies edits to one loaded language model, one after another, without touching its base weights.

    The edit state (whatever the method keeps: weight deltas, a representation bank, a codebook) is a
    sequence of per-edit records, so a rollback to any earlier point restores exactly the state the
    model had right after that edit."""

    name: str
    applied: int  # edits in the current state

    def apply(self, edit: EditSpec) -> None:
        """Apply the next edit of the sequence on top of the ones applied so far.

        Raises ``InvalidParameters`` for a prompt or target the tokenizer cannot encode."""

    def rollback(self, keep: int) -> None:
        """Keep the first ``keep`` edits (0: the original model)."""

    def export_state(self, folder: str) -> None:
        """Write the current state into ``folder`` (records already there are not rewritten)."""

    def load_state(self, folder: str, keep: int) -> None:
        """Replace the current state with the first ``keep`` edits stored in ``folder``.

        Raises ``ModelUnavailable`` when the folder holds fewer, or was written for another model."""


@dataclass(frozen=True)
class EditBaseline:
    """What the model predicted before the edits: per locality probe, the argmax token at each of its
    answer positions (teacher-forced); where the evaluator measures them, the margin of each of those
    tokens over the runner-up (nats) and the argmax tokens of its fixed unrelated probes."""

    locality_tokens: list[list[int]]
    locality_margins: list[list[float]] = field(default_factory=list)
    unrelated_tokens: list[list[int]] = field(default_factory=list)


class EditEvaluator(Protocol):
    """Scores edits on the model as it is now (after them)."""

    def baseline(self, edits: Sequence[EditSpec]) -> EditBaseline:
        """Taken before the edits are applied, for the locality score."""

    def score(self, edits: Sequence[EditSpec], baseline: EditBaseline, fluency_samples: int = 0) -> EditScores:
        """Reliability, generality and locality over ``edits``; fluency from the first ``fluency_samples``."""


class EditLog(Protocol):
    """The persisted edit log of every model. Each call is its own short transaction."""

    def add(self, edit: EditRequest) -> None: ...

    def get(self, edit_id: str) -> EditRequest:
        """Raises ``EditNotFound``."""

    def active(self, model: str) -> list[EditRequest]:
        """The applied edits of ``model``, in chain order (position 1 first)."""

    def list(self, model: str | None = None, limit: int = 50, offset: int = 0) -> tuple[list[EditRequest], int]:
        """Newest first, with the total count."""

    def roll_back(self, edits: Sequence[EditRequest]) -> None:
        """Store the rolled-back status of ``edits`` (already changed on the entities), all or none."""


class EditorPool(Protocol):
    """The editors of the one language model this process serves; at most one is attached at a time
    (the one the active chain of edits uses), and its state is kept in the data dir."""

    model: str  # the served language model's name
    chain: tuple[str, ...]  # ids of the logged edits the attached state holds, in order (set by the use cases)

    def editor(self, name: str) -> ModelEditor:
        """The editor ``name`` attached to the model (detaching another one, whose state must be empty).

        Raises ``EditorNotTrained`` for a hypernetwork editor without a checkpoint."""

    def save(self, editor: ModelEditor) -> None:
        """Persist the editor's state (only what changed since the last save)."""

    def load(self, name: str, keep: int) -> ModelEditor:
        """Attach ``name`` with the first ``keep`` edits of the persisted state."""

    def reset(self) -> None:
        """Back to the original model: the attached editor's state is emptied (not on disk)."""

    def unedited(self) -> AbstractContextManager[None]:
        """Inside, the model answers as the original (the attached editor's edits are off); call it with the
        model's lock held, around forward passes."""
