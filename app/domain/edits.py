"""Model edits: sequential corrections of a language model's facts, with an ordered log and rollback.

An ``EditSpec`` says what to change: the prompt (a question, in the form the model is asked), the new
target answer, and optionally the subject, rephrasings (for generality) and locality probes (unrelated
prompts whose answers must not change). An ``EditRequest`` is one applied edit in a model's log: its
position in the chain of active edits, the editor that applied it, its status and its metrics.

The log of a model is a chain: edits are applied one after another on top of all earlier ones; a
rollback to position ``k`` keeps the first ``k`` active edits and marks the rest rolled back. A new
edit after a rollback takes position ``k + 1``. One chain uses one editor.
"""

from __future__ import annotations

import math
import uuid
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime
from enum import StrEnum

from app.domain.errors import Conflict, InvalidParameters, NotFound
from app.domain.text import require_text

MAX_EDIT_CHARS = 1000
MAX_REPHRASES = 16
MAX_LOCALITY = 16
EDITORS = ("dafnet", "mend", "ft", "grace")
# The editor of an edit that names none: GRACE needs no meta-training and leaves prompts outside its
# codebook exactly as they were. DAFNet's fusion is a convex combination (a new edit's weight s, the past's
# decay 1 − s), so networks meta-trained for long sequences make each update large enough to survive
# dilution, and a lone edit is applied whole, which spills into unrelated prompts (docs/model-edits.md).
DEFAULT_EDITOR = "grace"


class EditNotFound(NotFound):
    code = "edit_not_found"
    default_message = "No such edit."


class EditorNotTrained(Conflict):
    """A hypernetwork editor (DAFNet, MEND) needs a meta-trained checkpoint first."""

    code = "editor_not_trained"
    default_message = "The editor has no trained checkpoint: run `atelier edits train` first."


class EditorMismatch(Conflict):
    """The active chain of edits was made by another editor."""

    code = "editor_mismatch"
    default_message = "The model's active edits were made by another editor: roll back to 0 first."


class RollbackOutOfRange(InvalidParameters):
    code = "rollback_out_of_range"
    default_message = "There is no such point in the edit log."


class EditStatus(StrEnum):
    APPLIED = "applied"
    ROLLED_BACK = "rolled_back"


@dataclass(frozen=True)
class LocalityProbe:
    """An unrelated prompt and its answer: the edited model must keep predicting the same tokens there."""

    prompt: str
    answer: str

    def __post_init__(self) -> None:
        _text(self.prompt, "locality.prompt")
        _text(self.answer, "locality.answer")


@dataclass(frozen=True)
class EditSpec:
    """What to edit. Texts are stripped; empty prompt or target is an error."""

    prompt: str
    target: str
    subject: str = ""
    rephrases: tuple[str, ...] = ()
    locality: tuple[LocalityProbe, ...] = ()

    def __post_init__(self) -> None:
        object.__setattr__(self, "prompt", _text(self.prompt, "prompt"))
        object.__setattr__(self, "target", _text(self.target, "target"))
        object.__setattr__(self, "subject", self.subject.strip())
        if len(self.subject) > MAX_EDIT_CHARS:
            raise InvalidParameters(f"subject is longer than {MAX_EDIT_CHARS} characters.", field="subject")
        if self.subject and self.subject.lower() not in self.prompt.lower():
            raise InvalidParameters("subject must occur in the prompt.", field="subject")
        if len(self.rephrases) > MAX_REPHRASES:
            raise InvalidParameters(f"At most {MAX_REPHRASES} rephrasings.", field="rephrases")
        object.__setattr__(self, "rephrases", tuple(_text(r, "rephrases") for r in self.rephrases))
        if len(self.locality) > MAX_LOCALITY:
            raise InvalidParameters(f"At most {MAX_LOCALITY} locality probes.", field="locality")


def _text(value: str, name: str) -> str:
    if not isinstance(value, str) or not value.strip():
        raise InvalidParameters(f"{name} must not be empty.", field=name.split(".")[0])
    if len(value) > MAX_EDIT_CHARS:
        raise InvalidParameters(f"{name} is longer than {MAX_EDIT_CHARS} characters.", field=name.split(".")[0])
    return require_text(value.strip(), name.split(".")[0])


def validate_editor(name: str) -> str:
    if name not in EDITORS:
        raise InvalidParameters(f"editor must be one of {', '.join(EDITORS)}.", field="editor")
    return name


@dataclass(frozen=True)
class EditScores:
    """Edit quality, each in [0, 1] except fluency (``None`` where not measured).

    ``reliability``/``generality``: teacher-forced top-1 accuracy of the target tokens after the edit
    prompts / rephrasings; ``locality``: share of the locality probes' answer tokens whose argmax did not
    change; ``fluency``: weighted 2- and 3-gram entropy (bits) of free generations from the edit prompts.

    Two readings of locality for evaluations (not stored with an edit): ``locality_confident``, the same
    share over the positions where the unedited model's top token led the runner-up by at least
    ``CONFIDENT_MARGIN`` nats; ``locality_unrelated``, the share on a fixed set of prompts unrelated to
    any edit (ZsRE's kind of locality, where the edits' own probes are CounterFact's harder kind)."""

    reliability: float | None = None
    generality: float | None = None
    locality: float | None = None
    fluency: float | None = None
    n: int = 0
    locality_confident: float | None = None
    locality_unrelated: float | None = None


# The unedited model's top token leads the runner-up by at least this much (nats: about 7 times likelier).
CONFIDENT_MARGIN = 2.0


@dataclass
class EditRequest:
    id: str
    model: str
    editor: str
    spec: EditSpec
    position: int  # 1-based place in the chain of active edits when it was applied
    created_at: datetime
    owner: str = "local"
    status: EditStatus = EditStatus.APPLIED
    scores: EditScores = field(default_factory=EditScores)
    seconds: float = 0.0
    rolled_back_at: datetime | None = None

    def roll_back(self, when: datetime) -> None:
        if self.status is EditStatus.ROLLED_BACK:
            return
        self.status = EditStatus.ROLLED_BACK
        self.rolled_back_at = when


def new_edit_id() -> str:
    return uuid.uuid4().hex


def check_chain(active: Sequence[EditRequest], editor: str) -> int:
    """The position the next edit takes; raises ``EditorMismatch`` when the chain uses another editor."""
    if active and active[-1].editor != editor:
        raise EditorMismatch(
            f"The active edits of this model were made with {active[-1].editor!r}; roll back to 0 "
            f"(`atelier edits rollback 0`) before editing with {editor!r}."
        )
    return len(active) + 1


def validate_rollback(to: int, active: int) -> int:
    if not isinstance(to, int) or to < 0 or to > active:
        raise RollbackOutOfRange(f"Rollback point must be between 0 and {active} (the active edits), got {to}.")
    return to


def ngram_entropy(
    tokens: Sequence[str], ns: tuple[int, ...] = (2, 3), weights: tuple[float, ...] = (2 / 3, 4 / 3)
) -> float:
    """Generation entropy as ROME/MEMIT define fluency: the weighted mean of the n-gram entropies (bits).

    Repetitive text ("the the the ...") scores near 0; varied text scores higher."""
    values = []
    for n in ns:
        grams = Counter(tuple(tokens[i : i + n]) for i in range(len(tokens) - n + 1))
        total = sum(grams.values())
        values.append(-sum(c / total * math.log2(c / total) for c in grams.values()) if total else 0.0)
    return sum(w * v for w, v in zip(weights, values, strict=True)) / len(values)
