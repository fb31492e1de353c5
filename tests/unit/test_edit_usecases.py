"""Model edits end to end over fakes: apply, log, rollback, restore, the evaluation protocol, and errors."""

from __future__ import annotations

from pathlib import Path

import pytest

from app.adapters.memory.edits import InMemoryEditLog
from app.domain.edits import (
    EditorMismatch,
    EditorNotTrained,
    EditSpec,
    EditStatus,
    LocalityProbe,
    RollbackOutOfRange,
    ngram_entropy,
)
from app.domain.errors import DatabaseUnavailable, InvalidParameters
from app.usecases.apply_edit import ApplyEdit
from app.usecases.evaluate_editor import EvaluateEditor
from app.usecases.restore_edits import RestoreEdits
from app.usecases.rollback_edits import RollbackEdits
from tests.fakes import FakeClock, FakeEditEvaluator, FakeEditorPool, FakeLanguageModel

KNOWN = {"What is the capital of France?": "Paris", "Who wrote the book?": "A teacher"}
PROBE = LocalityProbe("Who wrote the book?", "A teacher")


class World:
    def __init__(self, folder: Path) -> None:
        self.lm = FakeLanguageModel(KNOWN)
        self.pool = FakeEditorPool(self.lm, str(folder), untrained=["mend"])
        self.log = InMemoryEditLog()
        self.clock = FakeClock()
        self.evaluator = FakeEditEvaluator(self.lm)
        self.apply = ApplyEdit(self.pool, self.log, self.evaluator, self.clock)
        self.rollback = RollbackEdits(self.pool, self.log, self.clock)
        self.restore = RestoreEdits(self.pool, self.log)
        self.evaluate = EvaluateEditor(self.pool, self.log, self.evaluator)

    def answer(self, question: str) -> str:
        return self.lm.generate(question).text


@pytest.fixture()
def world(tmp_path: Path) -> World:
    return World(tmp_path / "state")


def spec(country: str, target: str) -> EditSpec:
    return EditSpec(
        f"What is the capital of {country}?",
        target,
        subject=country,
        rephrases=(f"Which city is the capital of {country}?",),
        locality=(PROBE,),
    )


def test_an_edit_is_applied_scored_and_logged(world: World) -> None:
    edit = world.apply(spec("France", "Lyon"), editor="dafnet")
    assert world.answer("What is the capital of France?") == "Lyon"
    assert edit.position == 1 and edit.status is EditStatus.APPLIED and edit.editor == "dafnet"
    assert edit.scores.reliability == 1.0 and edit.scores.locality == 1.0
    assert edit.scores.generality == 0.0  # the fake knows only the exact question
    assert world.log.get(edit.id).spec == edit.spec
    assert [e.id for e in world.log.active(world.lm.name)] == [edit.id]
    assert world.pool.chain == (edit.id,) and world.pool.saves == 1


def test_rollback_to_any_point_and_a_new_branch(world: World) -> None:
    first = world.apply(spec("France", "Lyon"))
    world.apply(spec("Peru", "Cusco"))
    world.apply(spec("France", "Nice"))
    assert world.answer("What is the capital of France?") == "Nice"
    undone = world.rollback(1)
    assert [e.position for e in undone] == [3, 2]  # last first
    assert all(world.log.get(e.id).status is EditStatus.ROLLED_BACK for e in undone)
    assert world.answer("What is the capital of France?") == "Lyon"
    assert world.answer("What is the capital of Peru?") == "I don't know"
    branch = world.apply(spec("Chile", "Valparaiso"))
    assert branch.position == 2
    assert [e.id for e in world.log.active(world.lm.name)] == [first.id, branch.id]
    assert world.log.list(None, 10, 0)[1] == 4
    world.rollback(0)
    assert world.answer("What is the capital of France?") == "Paris"
    assert world.rollback(0) == []


@pytest.mark.parametrize("to", [-1, 2])
def test_rollback_past_the_start_or_the_end_is_refused(world: World, to: int) -> None:
    world.apply(spec("France", "Lyon"))
    with pytest.raises(RollbackOutOfRange):
        world.rollback(to)
    assert world.answer("What is the capital of France?") == "Lyon"


def test_a_restart_serves_the_logged_edits(world: World, tmp_path: Path) -> None:
    world.apply(spec("France", "Lyon"))
    world.apply(spec("Peru", "Cusco"))
    world.rollback(1)
    restarted = World(tmp_path / "state")
    restarted.log = world.log
    restarted.restore = RestoreEdits(restarted.pool, restarted.log)
    assert restarted.restore() == 1
    assert restarted.answer("What is the capital of France?") == "Lyon"
    assert restarted.answer("What is the capital of Peru?") == "I don't know"


def test_edits_made_by_another_process_are_picked_up(world: World, tmp_path: Path) -> None:
    other = World(tmp_path / "state")
    other.log = world.log
    other.apply = ApplyEdit(other.pool, other.log, other.evaluator, other.clock)
    other.rollback = RollbackEdits(other.pool, other.log, other.clock)
    world.apply(spec("France", "Lyon"))
    other.apply(spec("Peru", "Cusco"))  # it loads the first edit from the shared state, then adds one
    assert other.answer("What is the capital of France?") == "Lyon"
    assert world.restore() == 2
    assert world.answer("What is the capital of Peru?") == "Cusco"
    other.rollback(0)
    assert world.restore() == 0
    assert world.answer("What is the capital of France?") == "Paris"


def test_one_chain_uses_one_editor(world: World) -> None:
    world.apply(spec("France", "Lyon"), editor="grace")
    with pytest.raises(EditorMismatch, match="roll back to 0"):
        world.apply(spec("Peru", "Cusco"), editor="ft")
    world.rollback(0)
    assert world.apply(spec("Peru", "Cusco"), editor="ft").position == 1


def test_bad_editor_untrained_editor_and_bad_targets(world: World) -> None:
    with pytest.raises(InvalidParameters, match="editor must be one of"):
        world.apply(spec("France", "Lyon"), editor="rome")
    with pytest.raises(EditorNotTrained, match="atelier edits train"):
        world.apply(spec("France", "Lyon"), editor="mend")
    with pytest.raises(InvalidParameters):
        world.apply(spec("France", "Lyon\x00"))  # the fake tokenizer cannot encode it
    for target in ("", "  "):
        with pytest.raises(InvalidParameters, match="target must not be empty"):
            spec("France", target)
    with pytest.raises(InvalidParameters, match="subject must occur"):
        EditSpec("What is the capital of France?", "Lyon", subject="Peru")
    assert world.log.list(None, 10, 0)[1] == 0 and world.answer("What is the capital of France?") == "Paris"


def test_an_edit_the_log_cannot_store_is_not_served(world: World) -> None:
    def down(edit: object) -> None:
        raise DatabaseUnavailable()

    world.log.add = down  # type: ignore[method-assign]
    with pytest.raises(DatabaseUnavailable):
        world.apply(spec("France", "Lyon"))
    assert world.answer("What is the capital of France?") == "Paris"


def test_the_protocol_scores_all_t_after_the_last_edit_and_restores(world: World) -> None:
    world.apply(spec("France", "Lyon"))
    edits = [spec(c, f"{c}-city") for c in ("Peru", "Chile", "Kenya", "Egypt", "Cuba", "Mali", "Iran")]
    report = world.evaluate("dafnet", edits, sequence_length=3, seed=0)
    assert report.chunks == 2 and report.scores.n == 6  # the 7th does not fill a chunk
    assert report.scores.reliability == 1.0 and report.scores.locality == 1.0
    assert world.answer("What is the capital of France?") == "Lyon"  # the served edit is back
    assert world.answer("What is the capital of Peru?") == "I don't know"
    assert len(world.log.active(world.lm.name)) == 1
    with pytest.raises(EditorMismatch):
        world.evaluate("ft", edits, sequence_length=3)
    with pytest.raises(InvalidParameters, match="do not fill one chunk"):
        world.evaluate("dafnet", edits[:2], sequence_length=3)


def test_later_edits_of_the_same_question_win_within_a_chunk(world: World) -> None:
    edits = [spec("Peru", "Lima-1"), spec("Peru", "Lima-2")]
    report = world.evaluate("dafnet", edits, sequence_length=2, seed=1)
    assert report.scores.reliability == 0.5  # all T are scored after the last: the earlier one is overwritten


def test_fluency_is_the_rome_generation_entropy() -> None:
    assert ngram_entropy(["a"] * 10) == 0.0
    varied = ["the", "cat", "sat", "on", "the", "mat", "and", "looked", "at", "the", "dog"]
    assert ngram_entropy(varied) > 2.5
