"""Prompt-session turns that edit the current image (strategy edit, and both kinds ranked together), against
fakes; the SQL store's round trip of what they add, through the migrations on SQLite."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

import pytest
from sqlalchemy import text

from app.adapters.sql import migrate
from app.adapters.sql.engine import make_engine, session_factory
from app.adapters.sql.prompt_sessions import SqlPromptSessionStore
from app.domain.errors import InvalidParameters, UnknownModel
from app.domain.families import Family
from app.domain.jobs import JobStatus, job_id_of
from app.domain.models import ModelInfo
from app.domain.prompt_sessions import (
    Candidate,
    CandidateKind,
    PromptSession,
    TurnSettings,
    TurnStrategy,
    edit_reward_prompt,
)
from app.domain.specs import Mode
from app.ports.generation import ImageCodec, RgbImage
from app.usecases.await_job import AwaitJob
from app.usecases.cancel_job import CancelJob
from app.usecases.choose_candidate import ChooseCandidate
from app.usecases.render_prompts import KeepAsInput, RenderPrompts
from app.usecases.run_generation import RunGeneration
from app.usecases.start_session import StartSession
from app.usecases.submit_generation import SubmitGeneration
from app.usecases.take_turn import TakeTurn, TurnRequest
from tests.fakes import (
    FakeClock,
    FakePromptRewriter,
    FakeReward,
    InlineExecutor,
    InMemoryImageStore,
    InMemoryJobReader,
    InMemoryJobStore,
    InMemoryModelCatalog,
    InMemoryPromptSessionStore,
    InMemoryUnitOfWorkFactory,
    PatternImageGenerator,
)

ANCHOR = "一个红色的圆形在左上角，白色背景"
BLUE = "把圆形换成蓝色"
TRIANGLE = "加一个小三角形"
NOW = datetime(2026, 12, 7, 10, 0, tzinfo=UTC)


class SizeCodec(ImageCodec):
    """Encodes a picture as ``b"WxH"``, the bytes the fake image store takes as an upload of that size."""

    def decode(self, data: bytes) -> RgbImage:
        width, height = (int(side) for side in data.split(b"x"))
        return RgbImage(width, height, bytes(width * height * 3))

    def encode_png(self, image: RgbImage) -> bytes:
        return f"{image.width}x{image.height}".encode()

    def from_base64(self, text: str) -> bytes:
        return text.encode()


def catalog() -> InMemoryModelCatalog:
    """The demo model (Stable Diffusion: no instruct mode) and ``edit``, a Qwen-Image-Edit model."""
    return InMemoryModelCatalog(
        [
            ModelInfo(name="demo", path="memory://demo", source="memory://demo", default_size=64),
            ModelInfo(
                name="edit",
                path="memory://edit",
                source="memory://edit",
                default_size=64,
                family=Family.QWEN_IMAGE_EDIT,
            ),
        ]
    )


@dataclass
class World:
    """Turns against fakes; the renders are jobs an inline executor runs when they are waited on."""

    store: InMemoryPromptSessionStore = field(default_factory=InMemoryPromptSessionStore)
    rewriter: FakePromptRewriter = field(default_factory=FakePromptRewriter)
    generator: PatternImageGenerator = field(default_factory=PatternImageGenerator)
    images: InMemoryImageStore = field(default_factory=InMemoryImageStore)
    clock: FakeClock = field(default_factory=FakeClock)
    integrity: FakeReward = field(default_factory=lambda: FakeReward("integrity"))
    jobs: InMemoryJobStore = field(default_factory=InMemoryJobStore)
    executor: InlineExecutor = field(default_factory=InlineExecutor)
    edit_model: str | None = None  # the deployment's

    def __post_init__(self) -> None:
        models = catalog()
        uow = InMemoryUnitOfWorkFactory(self.jobs)
        self.reader = InMemoryJobReader(self.jobs)
        run = RunGeneration(uow, models, self.generator, self.images, self.clock)
        self.executor.start(run, run.run_batch)
        submit = SubmitGeneration(uow, models, self.images, self.executor, self.clock)
        render = RenderPrompts(
            submit, AwaitJob(self.executor, self.reader), CancelJob(uow, self.executor, self.clock), self.images
        )
        self.start = StartSession(self.store, models, self.clock)
        inputs = KeepAsInput(self.images, SizeCodec())
        self.turn = TakeTurn(
            self.store,
            self.rewriter,
            [self.integrity],
            render,
            self.clock,
            catalog=models,
            inputs=inputs,
            edit_model=self.edit_model,
        )
        self.choose = ChooseCandidate(self.store, self.clock)

    def session_with_an_image(self, owner: str = "alice", edit_model: str | None = "edit") -> PromptSession:
        """A session whose first turn rewrote the anchor (so it has a current image)."""
        session = self.start(ANCHOR, "demo", owner=owner, edit_model=edit_model)
        self.rewriter.answers[(ANCHOR, BLUE)] = ["一个蓝色的圆形在左上角，白色背景"]
        self.turn(session.id, TurnRequest(BLUE, k=1, seed=3, steps=2), owner=owner)
        return self.store.get(session.id)

    def stored_nothing(self, session_id: str, turns: int, jobs: int, inputs: int = 0) -> bool:
        return (len(self.store.get(session_id).turns), len(self.jobs.rows), len(self.images.inputs)) == (
            turns,
            jobs,
            inputs,
        )


def test_an_edit_turn_edits_the_current_image_once_per_seed_and_keeps_the_prompt() -> None:
    w = World()
    session = w.session_with_an_image()
    prompt, image = session.current_prompt, session.current_image
    assert image is not None and session.turns[0].strategy is TurnStrategy.REWRITE

    turn = w.turn(session.id, TurnRequest(TRIANGLE, k=3, seed=40, steps=2, strategy=TurnStrategy.EDIT), owner="alice")

    assert turn.strategy is TurnStrategy.EDIT and turn.edit_model == "edit" and not turn.rewrite
    assert turn.prompt_before == prompt and turn.chosen == prompt  # an edit keeps the prompt
    assert [c.kind for c in turn.candidates] == [CandidateKind.EDIT] * 3
    assert sorted(c.seed for c in turn.candidates if c.seed is not None) == [40, 41, 42]
    assert {(c.prompt, c.source, c.edited_image) for c in turn.candidates} == {(prompt, "current", image)}
    (upload,) = w.images.inputs  # the current image, kept as the owner's upload
    assert w.images.input_owners[upload] == "alice"
    for c in turn.candidates:  # each is an instruct job of the edit model on that upload, the instruction its prompt
        assert c.image_id is not None
        job = w.reader.get(job_id_of(c.image_id), "alice")
        assert job.status is JobStatus.SUCCEEDED and job.params.mode is Mode.INSTRUCT
        assert (job.params.model, job.params.prompt, job.params.init_image) == ("edit", TRIANGLE, upload)
        assert job.seed == c.seed and (job.params.width, job.params.height) == (64, 64)  # the image's size
    judged = [i for i in w.integrity.seen if i.instruction == TRIANGLE]
    assert {(i.prompt, i.source_prompt) for i in judged} == {(edit_reward_prompt(prompt, TRIANGLE), prompt)}
    assert not [call for call in w.rewriter.calls if call[1] == TRIANGLE]  # nothing was rewritten

    stored = w.store.get(session.id)
    assert stored.current_prompt == prompt and stored.current_image == turn.candidates[0].image_id
    w.choose(session.id, turn.number, index=2)  # another edit: the prompt stays, the image follows the pick
    stored = w.store.get(session.id)
    assert stored.current_prompt == prompt and stored.current_image == turn.candidates[2].image_id
    again = w.turn(session.id, TurnRequest("背景改成黑色", k=1, seed=1, steps=2, strategy=TurnStrategy.EDIT))
    assert again.candidates[0].edited_image == turn.candidates[2].image_id  # the next edit starts from it


def test_both_ranks_the_rewrites_and_the_edits_together_by_the_rewards() -> None:
    w = World()
    session = w.session_with_an_image()
    prompt = session.current_prompt
    good, poor = f"{prompt}，右下角一个小三角形", f"{prompt}，一个三角形"
    w.rewriter.answers[(prompt, TRIANGLE)] = [good, poor]
    w.integrity.table = {good: 0.95, poor: 0.2, edit_reward_prompt(prompt, TRIANGLE): 0.7}

    turn = w.turn(session.id, TurnRequest(TRIANGLE, n=2, k=2, seed=5, steps=2, strategy=TurnStrategy.BOTH))

    assert turn.strategy is TurnStrategy.BOTH and turn.edit_model == "edit" and turn.rewrite
    kinds = [(c.kind, c.prompt) for c in turn.candidates]
    assert kinds == [
        (CandidateKind.REWRITE, good),
        (CandidateKind.EDIT, prompt),
        (CandidateKind.EDIT, prompt),
        (CandidateKind.REWRITE, poor),
    ]
    scores = [c.score for c in turn.candidates]
    assert scores == pytest.approx([0.95, 0.7, 0.7, 0.2])  # one ranking, by the same combined reward
    assert [c.seed for c in turn.candidates] == [5, 5, 6, 5]  # rewrites share the turn's seed; edits count up
    assert not any(c.drifted for c in turn.candidates)
    assert turn.chosen == good and w.store.get(session.id).current_prompt == good
    modes = {w.reader.get(job_id_of(c.image_id or "")).params.mode for c in turn.candidates}
    assert modes == {Mode.TXT2IMG, Mode.INSTRUCT}

    w.integrity.table[edit_reward_prompt(good, "再加一个星形")] = 1.0  # now an edit wins
    best = w.turn(
        session.id, TurnRequest("再加一个星形", n=1, k=1, seed=9, steps=2, strategy=TurnStrategy.BOTH)
    ).candidates[0]
    assert best.kind is CandidateKind.EDIT and best.edited_image == turn.candidates[0].image_id


def test_the_edit_model_comes_from_the_turn_the_session_or_the_deployment() -> None:
    w = World(edit_model="edit")
    session = w.session_with_an_image(edit_model=None)
    turn = w.turn(session.id, TurnRequest(TRIANGLE, k=1, steps=2, strategy=TurnStrategy.EDIT))
    assert turn.edit_model == "edit"  # the deployment's

    bare = World()
    session = bare.session_with_an_image(edit_model=None)
    with pytest.raises(InvalidParameters) as missing:
        bare.turn(session.id, TurnRequest(TRIANGLE, k=1, steps=2, strategy=TurnStrategy.EDIT))
    assert (missing.value.code, missing.value.field) == ("missing_edit_model", "edit_model")
    assert bare.stored_nothing(session.id, turns=1, jobs=1)
    named = bare.turn(session.id, TurnRequest(TRIANGLE, k=1, steps=2, strategy=TurnStrategy.EDIT, edit_model="edit"))
    assert named.edit_model == "edit"


def test_an_edit_model_without_the_instruct_capability_is_refused_and_nothing_is_stored() -> None:
    w = World()
    session = w.session_with_an_image()
    with pytest.raises(InvalidParameters) as refused:
        w.turn(session.id, TurnRequest(TRIANGLE, k=2, steps=2, strategy=TurnStrategy.BOTH, edit_model="demo"))
    assert (refused.value.code, refused.value.field) == ("unsupported_capability", "edit_model")
    assert "Stable Diffusion" in refused.value.message and "Qwen-Image-Edit" in refused.value.message
    with pytest.raises(UnknownModel):
        w.turn(session.id, TurnRequest(TRIANGLE, k=2, steps=2, strategy=TurnStrategy.EDIT, edit_model="no-such-model"))
    assert w.stored_nothing(session.id, turns=1, jobs=1)  # no job, no upload, no turn
    assert not [call for call in w.rewriter.calls if call[1] == TRIANGLE]

    with pytest.raises(InvalidParameters) as at_start:  # a session is not started with one either
        w.start(ANCHOR, "demo", edit_model="demo")
    assert at_start.value.field == "edit_model"
    assert w.store.list()[1] == 1


def test_an_edit_without_a_current_image_is_refused_naming_the_strategy() -> None:
    w = World()
    session = w.start(ANCHOR, "demo", edit_model="edit")
    for strategy in (TurnStrategy.EDIT, TurnStrategy.BOTH):  # the first turn has no image to edit
        with pytest.raises(InvalidParameters) as refused:
            w.turn(session.id, TurnRequest(BLUE, k=2, steps=2, strategy=strategy))
        assert (refused.value.code, refused.value.field) == ("no_current_image", "strategy")
        assert "original prompt" in refused.value.message
    assert w.stored_nothing(session.id, turns=0, jobs=0)

    session = w.session_with_an_image()
    w.choose(session.id, 1, prompt="我自己写的提示词")  # a prompt written by hand has no image
    with pytest.raises(InvalidParameters) as by_hand:
        w.turn(session.id, TurnRequest(TRIANGLE, steps=2, strategy=TurnStrategy.EDIT))
    assert by_hand.value.code == "no_current_image" and "written by hand" in by_hand.value.message
    with pytest.raises(InvalidParameters) as bad:
        TurnRequest(TRIANGLE, strategy="paint")  # type: ignore[arg-type]
    assert (bad.value.code, bad.value.field) == ("invalid_strategy", "strategy")
    with pytest.raises(InvalidParameters):
        TurnRequest(TRIANGLE, edit_model=" ")


# ------------------------------------------------------------------ persistence


def _edit_turn_session() -> PromptSession:
    session = PromptSession.start("alice", "demo", ANCHOR, NOW, edit_model="edit")
    first = [Candidate("一个蓝色的圆形", scores={"integrity": 0.9}, score=0.9, image_id="a" * 32 + "-0", seed=7)]
    session.add_turn(BLUE, first, TurnSettings(seed=7, steps=2), NOW)
    edits = [
        Candidate(
            "一个蓝色的圆形",
            "current",
            {"integrity": 0.8},
            0.8,
            0.3,
            False,
            f"{c * 32}-0",
            kind=CandidateKind.EDIT,
            seed=seed,
            edited_image="a" * 32 + "-0",
        )
        for c, seed in (("b", 11), ("c", 12))
    ]
    session.add_turn(
        TRIANGLE, edits, TurnSettings(seed=11, steps=2), NOW, strategy=TurnStrategy.EDIT, edit_model="edit"
    )
    session.choose(2, NOW, index=1)
    return session


def test_edit_turns_round_trip_through_sqlite(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'atelier.db'}"
    migrate.upgrade(url)
    engine = make_engine(url)
    try:
        store = SqlPromptSessionStore(session_factory(engine))
        session = _edit_turn_session()
        turns, head = list(session.turns), session.head
        session.turns, session.head = [], None
        store.add(session)  # then the turns, as turns are taken
        session.turns, session.head = turns, head
        store.save(session)
        stored = store.get(session.id)
    finally:
        engine.dispose()
    assert stored.edit_model == "edit" and stored.turns == session.turns
    assert stored.turns[1].strategy is TurnStrategy.EDIT and stored.turns[1].edit_model == "edit"
    assert stored.turns[0].strategy is TurnStrategy.REWRITE and stored.turns[0].edit_model is None
    assert stored.current_image == "c" * 32 + "-0" and stored.current_prompt == "一个蓝色的圆形"


def test_turns_stored_before_migration_0008_read_as_rewrites(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'atelier.db'}"
    migrate.upgrade(url, "0007")
    engine = make_engine(url)
    try:
        with engine.begin() as connection:
            connection.execute(
                text(
                    "INSERT INTO atelier_prompt_sessions (id, owner, model, anchor, head, version, created_at, "
                    "updated_at) VALUES ('ps-old', 'alice', 'demo', :anchor, 1, 2, :at, :at)"
                ),
                {"anchor": ANCHOR, "at": NOW.isoformat()},
            )
            connection.execute(
                text(
                    "INSERT INTO atelier_prompt_turns (session_id, number, parent, instruction, prompt_before, "
                    "candidates, chosen, chosen_index, settings, rewrite, note, created_at, picked) VALUES "
                    "('ps-old', 1, NULL, :instruction, :anchor, :candidates, '蓝圆', 0, '{\"seed\": 3}', 1, NULL, "
                    ":at, 0)"
                ),
                {
                    "instruction": BLUE,
                    "anchor": ANCHOR,
                    "candidates": '[{"prompt": "蓝圆", "source": "rewriter", "image_id": "' + "d" * 32 + '-0"}]',
                    "at": NOW.isoformat(),
                },
            )
        migrate.upgrade(url)
        stored = SqlPromptSessionStore(session_factory(engine)).get("ps-old")
    finally:
        engine.dispose()
    (turn,) = stored.turns
    assert stored.edit_model is None and turn.strategy is TurnStrategy.REWRITE and turn.edit_model is None
    (candidate,) = turn.candidates
    assert candidate.kind is CandidateKind.REWRITE and candidate.seed is None and candidate.edited_image is None
    assert stored.current_image == "d" * 32 + "-0"
