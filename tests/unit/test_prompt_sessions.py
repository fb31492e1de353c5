"""Prompt sessions: the session tree, ranking, drift, and a turn against fakes (end state, not calls)."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime

import pytest

from app.adapters.imaging.codec import PillowImageCodec
from app.adapters.rewards.integrity import CheckerIntegrityReward, expected_scene
from app.adapters.rewriting.rules import ConcatPromptRewriter, RulePromptRewriter
from app.demo_world.parsing import parse_caption
from app.demo_world.scenes import Scene, SceneObject
from app.domain.errors import ConcurrentUpdate, InvalidParameters, ModelUnavailable, RenderFailed, UnknownModel
from app.domain.jobs import JobStatus, job_id_of
from app.domain.prompt_sessions import (
    Candidate,
    PromptSession,
    PromptSessionNotFound,
    RewardWeights,
    TurnNotFound,
    TurnSettings,
    deduplicate,
    drift,
    preference_pairs,
    rank,
)
from app.ports.generation import RgbImage
from app.ports.prompt_sessions import RewardInput
from app.usecases.await_job import AwaitJob
from app.usecases.cancel_job import CancelJob
from app.usecases.choose_candidate import ChooseCandidate
from app.usecases.move_head import MoveHead
from app.usecases.render_prompts import KeepAsInput, RenderPrompts
from app.usecases.run_generation import RunGeneration
from app.usecases.start_session import StartSession
from app.usecases.submit_generation import SubmitGeneration
from app.usecases.take_turn import NOTHING_USABLE, REWRITE_OFF, TakeTurn, TurnRequest
from tests.fakes import (
    FakeClock,
    FakePromptRewriter,
    FakeReward,
    FakeSceneReader,
    InlineExecutor,
    InMemoryImageStore,
    InMemoryJobReader,
    InMemoryJobStore,
    InMemoryPromptSessionStore,
    InMemoryUnitOfWorkFactory,
    PatternImageGenerator,
    demo_catalog,
)

NOW = datetime(2026, 1, 1, tzinfo=UTC)
ANCHOR = "一个红色的圆形在左上角，白色背景"


def test_deduplicate_ignores_spacing_and_punctuation_and_drops_empty() -> None:
    assert deduplicate(["一个 蓝色圆形。", "一个蓝色圆形", "", "  ", "a  red circle", "A red circle!"]) == [
        "一个 蓝色圆形。",
        "a red circle",
    ]


def test_drift_is_zero_for_the_same_prompt_and_grows_with_change() -> None:
    assert drift(ANCHOR, ANCHOR) == 0.0
    small = drift(ANCHOR, "一个蓝色的圆形在左上角，白色背景")
    large = drift(ANCHOR, "一只在海边奔跑的小狗")
    assert 0 < small < large <= 1.0
    assert drift("", "") == 0.0


def test_rank_puts_drifted_candidates_last_and_orders_by_weighted_score() -> None:
    weights = RewardWeights(aesthetic=1, preference=0, integrity=3, max_drift=0.5)
    ranked = rank(
        [
            Candidate("a", scores={"aesthetic": 1.0, "integrity": 0.0}, drift=0.1),
            Candidate("b", scores={"aesthetic": 0.0, "integrity": 1.0}, drift=0.1),
            Candidate("c", scores={"aesthetic": 1.0, "integrity": 1.0}, drift=0.9),
        ],
        weights,
    )
    assert [c.prompt for c in ranked] == ["b", "a", "c"]
    assert ranked[0].score == pytest.approx(0.75) and ranked[1].score == pytest.approx(0.25)
    assert ranked[2].drifted and not ranked[0].drifted
    # Only the measured rewards count: a missing one is not a zero.
    assert weights.combine({"integrity": 0.5}) == pytest.approx(0.5)
    with pytest.raises(InvalidParameters):
        RewardWeights(integrity=-1)


def _session() -> PromptSession:
    return PromptSession.start("alice", "demo", ANCHOR, NOW)


def test_session_tree_undo_branch_and_choose() -> None:
    s = _session()
    settings = TurnSettings(seed=1)
    first = s.add_turn("把圆形换成蓝色", [Candidate("蓝圆"), Candidate("蓝色圆")], settings, NOW)
    assert (first.number, first.parent, first.prompt_before, first.chosen) == (1, None, ANCHOR, "蓝圆")
    second = s.add_turn("加一个小三角形", [Candidate("蓝圆和三角")], settings, NOW)
    assert (second.parent, second.prompt_before, s.current_prompt) == (1, "蓝圆", "蓝圆和三角")
    assert s.undo(NOW) == 1 and s.current_prompt == "蓝圆"
    s.choose(1, NOW, index=1)
    assert s.current_prompt == "蓝色圆" and s.turn(1).chosen_index == 1
    third = s.add_turn("背景改成黑色", [Candidate("蓝色圆黑底")], settings, NOW)
    assert third.parent == 1 and [t.number for t in s.path()] == [1, 3]  # turn 2 stays, off the path
    s.choose(3, NOW, prompt="  我自己写的  提示词 ")
    assert s.current_prompt == "我自己写的 提示词" and s.turn(3).chosen_index is None
    s.branch(None, NOW)
    assert s.current_prompt == ANCHOR and s.path() == []
    with pytest.raises(InvalidParameters):
        s.undo(NOW)  # already at the anchor
    with pytest.raises(TurnNotFound):
        s.branch(9, NOW)
    with pytest.raises(InvalidParameters):
        s.choose(1, NOW, index=5)
    with pytest.raises(InvalidParameters):
        s.choose(1, NOW)
    with pytest.raises(InvalidParameters):
        s.add_turn("   ", [Candidate("x")], settings, NOW)
    with pytest.raises(InvalidParameters):
        PromptSession.start("alice", "demo", "  ", NOW)


def test_candidate_and_settings_round_trip_through_dicts() -> None:
    c = Candidate("p", "rewriter", {"integrity": 0.5}, 0.5, 0.2, True, "img-1")
    assert Candidate.from_dict(c.to_dict()) == c
    t = TurnSettings(seed=7, steps=4, width=64, height=None, guidance_scale=3.0, negative_prompt="模糊")
    assert TurnSettings.from_dict(t.to_dict()) == t


@dataclass
class World:
    """A turn against fakes: its renders are jobs, run (batched) by an executor that runs what is queued
    when a job is waited on; ``started=False``: no worker runs them."""

    store: InMemoryPromptSessionStore = field(default_factory=InMemoryPromptSessionStore)
    rewriter: FakePromptRewriter = field(default_factory=FakePromptRewriter)
    generator: PatternImageGenerator = field(default_factory=PatternImageGenerator)
    images: InMemoryImageStore = field(default_factory=InMemoryImageStore)
    clock: FakeClock = field(default_factory=FakeClock)
    integrity: FakeReward = field(default_factory=lambda: FakeReward("integrity"))
    jobs: InMemoryJobStore = field(default_factory=InMemoryJobStore)
    executor: InlineExecutor = field(default_factory=InlineExecutor)
    started: bool = True
    timeout: float = 0.0
    max_queued: int = 0

    def __post_init__(self) -> None:
        catalog = demo_catalog()
        uow = InMemoryUnitOfWorkFactory(self.jobs)
        self.reader = InMemoryJobReader(self.jobs)
        self.run = RunGeneration(uow, catalog, self.generator, self.images, self.clock)
        if self.started:
            self.executor.start(self.run, self.run.run_batch)
        self.submit = SubmitGeneration(uow, catalog, self.images, self.executor, self.clock, self.max_queued)
        self.render = RenderPrompts(
            self.submit,
            AwaitJob(self.executor, self.reader),
            CancelJob(uow, self.executor, self.clock),
            self.images,
            self.timeout,
        )
        self.start = StartSession(self.store, catalog, self.clock)
        inputs = KeepAsInput(self.images, PillowImageCodec())  # edit turns: tests/unit/test_instruct_turns.py
        self.turn = TakeTurn(
            self.store, self.rewriter, [self.integrity], self.render, self.clock, catalog=catalog, inputs=inputs
        )
        self.choose = ChooseCandidate(self.store, self.clock)
        self.move = MoveHead(self.store, self.clock)


def test_a_turn_renders_the_first_k_unique_rewrites_with_one_seed_and_ranks_them() -> None:
    w = World()
    session = w.start(ANCHOR, "demo", owner="alice")
    w.rewriter.answers[(ANCHOR, "把圆形换成蓝色")] = ["蓝 圆", "蓝圆", "蓝色圆", "绿圆", "黄圆"]
    w.integrity.table = {"蓝 圆": 0.4, "蓝色圆": 0.9, "绿圆": 0.1}
    turn = w.turn(session.id, TurnRequest("把圆形换成蓝色", n=5, k=3, seed=42, steps=2), owner="alice")
    assert [c.prompt for c in turn.candidates] == ["蓝色圆", "蓝 圆", "绿圆"]  # 黄圆 was not rendered (k=3)
    assert turn.chosen == "蓝色圆" and turn.chosen_index == 0 and turn.settings.seed == 42
    assert {r.params.seed for r in w.generator.calls} == {42} and len(w.generator.calls) == 3
    assert w.generator.batches == [3]  # one batch: the candidates' jobs share a batching key
    assert all(c.image_id in w.images.images for c in turn.candidates)
    for c in turn.candidates:  # each candidate is an ordinary succeeded job of the session's owner
        assert c.image_id is not None
        job = w.reader.get(job_id_of(c.image_id), "alice")
        assert job.status is JobStatus.SUCCEEDED and job.params.prompt == c.prompt and job.params.seed == 42
        assert [i.id for i in job.images] == [c.image_id]
    assert all(i.source_prompt == ANCHOR and i.instruction == "把圆形换成蓝色" for i in w.integrity.seen)
    stored = w.store.get(session.id, "alice")
    assert stored.current_prompt == "蓝色圆" and stored.turns[0].candidates == turn.candidates
    # The next turn starts from the chosen prompt.
    w.turn(session.id, TurnRequest("加一个小三角形", seed=1, steps=2))
    assert w.rewriter.calls[-1][0] == "蓝色圆"


def test_a_turn_without_usable_rewrites_keeps_the_prompt_and_says_so() -> None:
    w = World()
    session = w.start(ANCHOR, "demo")
    w.rewriter.answers[(ANCHOR, "随便改改")] = ["", "   "]
    turn = w.turn(session.id, TurnRequest("随便改改", seed=3, steps=2))
    assert [c.prompt for c in turn.candidates] == [ANCHOR] and turn.candidates[0].source == "current"
    assert turn.note == NOTHING_USABLE
    off = w.turn(session.id, TurnRequest("把圆形换成蓝色", rewrite=False, seed=3, steps=2))
    assert off.note == REWRITE_OFF and not off.rewrite and off.chosen == ANCHOR


def test_turn_errors_lose_nothing() -> None:
    w = World()
    session = w.start(ANCHOR, "demo", owner="alice")
    with pytest.raises(InvalidParameters):
        TurnRequest(" ")
    with pytest.raises(InvalidParameters):
        TurnRequest("x", k=0)
    with pytest.raises(PromptSessionNotFound):
        w.turn("ps-missing", TurnRequest("把圆形换成蓝色"))
    with pytest.raises(PromptSessionNotFound):
        w.turn(session.id, TurnRequest("把圆形换成蓝色"), owner="bob")  # another owner's session
    with pytest.raises(UnknownModel):
        w.start(ANCHOR, "no-such-model")
    with pytest.raises(InvalidParameters):
        w.start("", "demo")
    assert w.store.get(session.id).turns == []


def test_a_failed_render_records_failed_jobs_and_no_turn() -> None:
    class Broken(PatternImageGenerator):
        def generate_batch(self, requests, progress):  # type: ignore[no-untyped-def]
            return [ModelUnavailable("the model is gone")] * len(requests)

    w = World(generator=Broken())
    session = w.start(ANCHOR, "demo")
    w.rewriter.answers[(ANCHOR, "把圆形换成蓝色")] = ["蓝圆", "蓝色圆"]
    with pytest.raises(RenderFailed) as failed:
        w.turn(session.id, TurnRequest("把圆形换成蓝色", k=2, steps=2))
    assert failed.value.code == "model_unavailable" and failed.value.message == "the model is gone"
    assert w.store.get(session.id).turns == []
    jobs = [w.reader.get(j) for j in w.jobs.rows]
    assert len(jobs) == 2 and all(j.status is JobStatus.FAILED and j.error_code == "model_unavailable" for j in jobs)


def test_a_cancelled_render_job_fails_the_turn_and_leaves_no_job_for_a_worker() -> None:
    w = World()
    session = w.start(ANCHOR, "demo")
    w.rewriter.answers[(ANCHOR, "把圆形换成蓝色")] = ["蓝圆", "蓝色圆", "绿圆"]
    original = w.executor.enqueue

    def enqueue_then_cancel_the_second(job_id: str, batch_key: str | None = None) -> None:
        original(job_id, batch_key)
        if len(w.executor.queued) == 2:
            w.render._cancel(job_id)  # another client cancels it while it waits in the queue

    w.executor.enqueue = enqueue_then_cancel_the_second  # type: ignore[method-assign]
    with pytest.raises(RenderFailed) as failed:
        w.turn(session.id, TurnRequest("把圆形换成蓝色", n=3, k=3, steps=2))
    assert failed.value.code == "cancelled" and failed.value.job_id in w.jobs.rows
    assert w.store.get(session.id).turns == []
    statuses = {w.reader.get(j).params.prompt: w.reader.get(j).status for j in w.jobs.rows}
    assert statuses["蓝色圆"] is JobStatus.CANCELLED
    assert all(status.finished for status in statuses.values())  # none is left for a worker


def test_without_a_worker_the_render_stops_waiting_and_cancels_its_jobs() -> None:
    w = World(started=False, timeout=0.2)
    session = w.start(ANCHOR, "demo")
    with pytest.raises(RenderFailed) as failed:
        w.turn(session.id, TurnRequest("把圆形换成蓝色", k=2, steps=2))
    assert failed.value.code == "render_timeout" and "worker" in failed.value.message
    assert w.store.get(session.id).turns == []
    assert {w.reader.get(j).status for j in w.jobs.rows} == {JobStatus.CANCELLED}


def test_a_render_larger_than_the_owners_queue_limit_runs_in_parts() -> None:
    w = World(max_queued=2)
    session = w.start(ANCHOR, "demo")
    w.rewriter.answers[(ANCHOR, "把圆形换成蓝色")] = ["蓝圆", "蓝色圆", "绿圆", "黄圆", "紫圆"]
    turn = w.turn(session.id, TurnRequest("把圆形换成蓝色", n=5, k=5, steps=2))
    assert len(turn.candidates) == 5 and all(c.image_id in w.images.images for c in turn.candidates)
    assert {w.reader.get(j).status for j in w.jobs.rows} == {JobStatus.SUCCEEDED}


def test_choose_undo_and_branch_are_stored() -> None:
    w = World()
    session = w.start(ANCHOR, "demo")
    w.rewriter.answers[(ANCHOR, "把圆形换成蓝色")] = ["蓝圆", "蓝色圆"]
    w.turn(session.id, TurnRequest("把圆形换成蓝色", seed=1, steps=2))
    w.choose(session.id, 1, index=1)
    assert w.store.get(session.id).current_prompt == "蓝色圆"
    w.choose(session.id, 1, prompt="一个深蓝色的圆形")
    assert w.store.get(session.id).current_prompt == "一个深蓝色的圆形"
    assert w.move.undo(session.id).current_prompt == ANCHOR
    assert w.move.branch(session.id, 1).current_prompt == "一个深蓝色的圆形"
    with pytest.raises(TurnNotFound):
        w.choose(session.id, 2, index=0)


def test_a_turn_keeps_what_was_stored_while_it_rendered() -> None:
    moves: list[str] = []

    class Meddling(PatternImageGenerator):
        def generate_batch(self, requests, progress):  # type: ignore[no-untyped-def]
            for session_id in moves:
                w.move.undo(session_id)  # another client moves the head meanwhile
            return super().generate_batch(requests, progress)

    w = World(generator=Meddling())
    session = w.start(ANCHOR, "demo")
    w.turn(session.id, TurnRequest("把圆形换成蓝色", seed=1, steps=2))
    moves.append(session.id)
    turn = w.turn(session.id, TurnRequest("加一个小三角形", n=2, k=2, seed=1, steps=2))
    stored = w.store.get(session.id)
    assert turn.parent == 1 and stored.head == 2 and len(stored.turns) == 2


def test_the_store_refuses_a_stale_save() -> None:
    store = InMemoryPromptSessionStore()
    s = _session()
    store.add(s)
    a, b = store.get(s.id), store.get(s.id)
    a.add_turn("x", [Candidate("y")], TurnSettings(seed=1), NOW)
    store.save(a)
    b.branch(None, NOW)
    with pytest.raises(ConcurrentUpdate):
        store.save(b)


# ------------------------------------------------------------------ rewriters and the integrity reward


def test_rule_rewriter_applies_demo_world_instructions() -> None:
    rule = RulePromptRewriter()
    out = rule.rewrite(ANCHOR, "把圆形换成蓝色", 3, seed=0)
    assert len(out) == 3 and len(set(out)) == 3
    assert all(parse_caption(p).objects[0].colour == "blue" for p in out)
    added = parse_caption(rule.rewrite(ANCHOR, "加一个小三角形", 1, seed=0)[0])
    assert [o.shape for o in added.objects] == ["circle", "triangle"] and added.objects[1].size == "small"
    assert added.objects[1].colour not in ("red", "white")
    assert rule.rewrite("一只猫在沙发上", "把圆形换成蓝色", 3, seed=0) == []  # not a demo-world prompt
    assert rule.rewrite(ANCHOR, "去掉圆形", 3, seed=0) == []  # nothing would be left
    assert ConcatPromptRewriter().rewrite(ANCHOR + "。", "把圆形换成蓝色", 4, 0) == [f"{ANCHOR}，把圆形换成蓝色"]


def test_integrity_reward_asks_for_the_instruction_applied_and_the_rest_kept() -> None:
    reader = FakeSceneReader()
    reward = CheckerIntegrityReward(reader)
    blue = Scene((SceneObject("circle", "blue", "top-left"),), "white")
    red = Scene((SceneObject("circle", "red", "top-left"),), "white")
    moved = Scene((SceneObject("circle", "blue", "bottom-right"),), "white")
    images = {name: RgbImage(1, 1, bytes([i, 0, 0])) for i, name in enumerate(("blue", "red", "moved"))}
    for name, scene in (("blue", blue), ("red", red), ("moved", moved)):
        reader.teach(images[name], scene)
    inputs = [RewardInput(images[n], "whatever", "把圆形换成蓝色", ANCHOR) for n in ("blue", "red", "moved")]
    done, ignored, drifted = reward.score(inputs)
    assert done == 1.0 and ignored < 1.0 and drifted < 1.0
    # An instruction it cannot read: the candidate's own prompt is the reference.
    assert expected_scene(ANCHOR, "随便改改", "一个蓝色的圆形在左上角，白色背景") == blue
    assert expected_scene("一只猫", "随便改改", "一只狗") is None


def test_only_picked_turns_with_images_give_preference_pairs() -> None:
    s = _session()
    settings = TurnSettings(seed=1)
    a, b, c = (Candidate(p, image_id=f"{'a' * 32}-{i}") for i, p in enumerate("xyz"))
    s.add_turn("把圆形换成蓝色", [a, b, c], settings, NOW)  # ranked, not picked: no pair
    s.add_turn("加一个小三角形", [a, b, Candidate("no image")], settings, NOW)
    s.choose(2, NOW, index=1)
    s.add_turn("背景改成黑色", [a, b], settings, NOW)
    s.choose(3, NOW, prompt="我自己写的")  # a hand-written prompt has no image: no pair
    assert not s.turn(1).picked and s.turn(2).picked and s.turn(3).picked
    assert [(w.prompt, loser.prompt) for w, loser in preference_pairs([s])] == [("y", "x")]


def test_score_prompts_renders_each_prompt_with_its_seed_and_combines_the_rewards() -> None:
    from app.domain.prompt_sessions import COMBINED, RewardWeights, ScoreItem
    from app.usecases.score_prompts import ScorePrompts

    w = World()
    aesthetic = FakeReward("aesthetic", {"蓝色圆": 1.0})
    w.integrity.table = {"蓝色圆": 0.5}
    score = ScorePrompts(w.render, [w.integrity, aesthetic], RewardWeights())
    items = [ScoreItem("蓝色圆", "把圆形换成蓝色", ANCHOR, 7), ScoreItem("  ", "把圆形换成蓝色", ANCHOR, 8)]
    rows = score(items, model="demo", steps=2, owner="lab")
    # integrity 0.6 and aesthetic 0.2 of the weights (no preference measured): (0.6·0.5 + 0.2·1.0) / 0.8
    assert rows[0] == {"integrity": 0.5, "aesthetic": 1.0, COMBINED: pytest.approx(0.625)}
    assert rows[1] == {"integrity": 0.0, "aesthetic": 0.0, COMBINED: 0.0}  # an empty rewrite is not drawn
    assert [(r.params.prompt, r.params.seed) for r in w.generator.calls] == [("蓝色圆", 7)]
    (job,) = [w.reader.get(j, "lab") for j in w.jobs.rows]  # each drawn item is an ordinary job of the owner
    assert job.status is JobStatus.SUCCEEDED and (job.params.prompt, job.seed) == ("蓝色圆", 7)
    assert [i.id for i in job.images] == list(w.images.images)
    assert [i.instruction for i in w.integrity.seen] == ["把圆形换成蓝色"]
