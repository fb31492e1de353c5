"""Claiming from the shared queue: which model a worker takes next, and what one claim takes."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from app.adapters.memory.job_reader import InMemoryJobReader
from app.adapters.memory.jobs import InMemoryJobStore, InMemoryUnitOfWorkFactory
from app.adapters.memory.workers import InMemoryWorkerRegistry
from app.domain.generation import GenerationParams
from app.domain.jobs import GenerationJob, JobStatus
from app.domain.workers import WorkerInfo
from app.ports.persistence import QueuedModel
from app.usecases.claim_jobs import ClaimJobs, choose_model
from tests.fakes import FakeClock

NOW = datetime(2026, 1, 1, 12, tzinfo=UTC)


def queued(model: str, seconds_ago: float, count: int = 1) -> QueuedModel:
    return QueuedModel(model, count, NOW - timedelta(seconds=seconds_ago))


def test_a_worker_stays_on_a_model_it_holds_while_that_model_has_work() -> None:
    queue = [queued("a", 20), queued("b", 5)]
    assert choose_model(queue, loaded={"b"}, held_elsewhere=set(), now=NOW, switch_after=30) == "b"


def test_it_switches_when_another_models_oldest_job_waited_past_the_bound() -> None:
    queue = [queued("a", 31), queued("b", 5)]
    assert choose_model(queue, loaded={"b"}, held_elsewhere=set(), now=NOW, switch_after=30) == "a"


def test_with_no_work_for_its_models_it_prefers_one_no_other_worker_holds() -> None:
    queue = [queued("a", 10), queued("b", 5)]
    assert choose_model(queue, loaded={"c"}, held_elsewhere={"a"}, now=NOW, switch_after=30) == "b"
    assert choose_model(queue, loaded=set(), held_elsewhere={"a", "b"}, now=NOW, switch_after=30) == "a"  # oldest
    starving = [queued("a", 60), queued("b", 50)]
    assert choose_model(starving, loaded=set(), held_elsewhere={"a"}, now=NOW, switch_after=30) == "b"
    assert choose_model([], loaded={"a"}, held_elsewhere=set(), now=NOW, switch_after=30) is None


class World:
    def __init__(self) -> None:
        self.store = InMemoryJobStore()
        self.uow = InMemoryUnitOfWorkFactory(self.store)
        self.reader = InMemoryJobReader(self.store)
        self.clock = FakeClock()
        self.registry = InMemoryWorkerRegistry()

    def submit(self, model: str, steps: int = 2, width: int = 64) -> str:
        params = GenerationParams(prompt="猫", model=model, width=width, height=64, steps=steps, seed=1)
        job = GenerationJob.create("alice", params, self.clock.now())
        with self.uow() as unit:
            unit.jobs.add(job)
            unit.commit()
        return job.id

    def claimer(self, worker_id: str) -> ClaimJobs:
        return ClaimJobs(self.uow, self.reader, self.clock, self.registry, 10.0, worker_id, switch_after=30)


def test_a_claim_takes_the_oldest_job_and_those_sharing_its_batching_key_and_marks_them_running() -> None:
    world = World()
    first, other_size, same, later_same = (
        world.submit("demo"),
        world.submit("demo", width=128),
        world.submit("demo"),
        world.submit("demo"),
    )
    claimed = world.claimer("w1")(loaded=(), limit=2)
    assert [job.id for job in claimed] == [first, same]  # at most two; the 128-wide job has another batching key
    with world.uow() as unit:
        jobs = {job_id: unit.jobs.get(job_id) for job_id in (first, other_size, same, later_same)}
    assert [(jobs[i].status, jobs[i].worker_id, jobs[i].attempts) for i in (first, same)] == [
        (JobStatus.RUNNING, "w1", 1)
    ] * 2
    assert jobs[other_size].status is JobStatus.QUEUED and jobs[later_same].status is JobStatus.QUEUED
    assert [job.id for job in world.claimer("w2")(loaded=(), limit=8)] == [other_size]  # now the oldest
    assert [job.id for job in world.claimer("w2")(loaded=(), limit=8)] == [later_same]
    assert world.claimer("w2")(loaded=(), limit=8) == []


def test_a_worker_takes_its_loaded_models_jobs_and_leaves_a_model_held_elsewhere() -> None:
    world = World()
    a, b = world.submit("model-a"), world.submit("model-b")
    now = world.clock.now()
    world.registry.beat(WorkerInfo("w2", "h", 2, 1, ("model-a",), now, now))
    assert [job.id for job in world.claimer("w1")(loaded=(), limit=4)] == [b]  # model-a is warm in w2
    assert [job.id for job in world.claimer("w2")(loaded=("model-a",), limit=4)] == [a]
