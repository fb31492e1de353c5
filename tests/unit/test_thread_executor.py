"""ThreadJobExecutor with one and with two workers. Handlers block on events, never on long
sleeps, and every wait has a timeout so a broken executor fails the test instead of hanging it."""

from __future__ import annotations

import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator

import pytest

from app.adapters.executor.threads import ThreadJobExecutor

TIMEOUT = 5.0  # only ever reached when something is broken


class Recorder:
    """A handler that records what ran, and can hold chosen jobs until they are released."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.runs: Counter[str] = Counter()
        self.order: list[str] = []
        self.started: dict[str, threading.Event] = {}
        self.gates: dict[str, threading.Event] = {}
        self.cancel_seen: dict[str, bool] = {}
        self.fail: set[str] = set()

    def hold(self, job_id: str) -> threading.Event:
        """Make ``job_id`` block until the returned event is set."""
        self.gates[job_id] = threading.Event()
        return self.gates[job_id]

    def started_event(self, job_id: str) -> threading.Event:
        with self.lock:
            return self.started.setdefault(job_id, threading.Event())

    def __call__(self, job_id: str, cancel_requested: Callable[[], bool]) -> None:
        with self.lock:
            self.runs[job_id] += 1
            self.order.append(job_id)
        self.started_event(job_id).set()
        gate = self.gates.get(job_id)
        if gate is not None:
            assert gate.wait(TIMEOUT), f"{job_id} was never released"
        self.cancel_seen[job_id] = cancel_requested()
        if job_id in self.fail:
            raise RuntimeError(f"handler of {job_id} failed")


@pytest.fixture
def recorder() -> Iterator[Recorder]:
    recorder = Recorder()
    yield recorder
    for gate in recorder.gates.values():  # never leave a worker blocked behind a failed test
        gate.set()


def shutdown_within(executor: ThreadJobExecutor, seconds: float = TIMEOUT) -> None:
    """``shutdown(wait=True)``, failing instead of hanging when it never returns."""
    stopper = threading.Thread(target=executor.shutdown, kwargs={"wait": True}, daemon=True)
    stopper.start()
    stopper.join(seconds)
    assert not stopper.is_alive(), "shutdown(wait=True) did not return"


@pytest.fixture(params=[1, 2], ids=["1-worker", "2-workers"])
def executor(request: pytest.FixtureRequest, recorder: Recorder) -> Iterator[ThreadJobExecutor]:
    executor = ThreadJobExecutor(workers=request.param)
    yield executor
    for gate in recorder.gates.values():
        gate.set()
    shutdown_within(executor)


def test_every_enqueued_job_runs_exactly_once(executor: ThreadJobExecutor, recorder: Recorder) -> None:
    executor.start(recorder)
    jobs = [f"job-{i}" for i in range(25)]
    for job_id in jobs:
        executor.enqueue(job_id)
    assert all(executor.wait(job_id, TIMEOUT) for job_id in jobs)
    shutdown_within(executor)
    assert recorder.runs == Counter(jobs)


def test_wait_times_out_while_the_handler_runs_and_succeeds_after(
    executor: ThreadJobExecutor, recorder: Recorder
) -> None:
    gate = recorder.hold("slow")
    executor.start(recorder)
    executor.enqueue("slow")
    assert recorder.started_event("slow").wait(TIMEOUT)
    assert executor.wait("slow", timeout=0.05) is False
    assert "slow" not in recorder.cancel_seen  # the handler really has not returned yet
    threading.Timer(0.2, gate.set).start()
    assert executor.wait("slow", timeout=TIMEOUT) is True  # blocks until the handler returned
    assert "slow" in recorder.cancel_seen


def test_wait_without_timeout_blocks_until_the_handler_returned(
    executor: ThreadJobExecutor, recorder: Recorder
) -> None:
    gate = recorder.hold("slow")
    executor.start(recorder)
    executor.enqueue("slow")
    threading.Timer(0.2, gate.set).start()
    assert executor.wait("slow") is True
    assert "slow" in recorder.cancel_seen


def test_wait_on_a_queued_job_times_out_until_it_ran(recorder: Recorder) -> None:
    executor = ThreadJobExecutor(workers=1)
    gate = recorder.hold("first")
    executor.start(recorder)
    executor.enqueue("first")
    executor.enqueue("second")
    try:
        assert executor.wait("second", timeout=0.05) is False
        gate.set()
        assert executor.wait("second", timeout=TIMEOUT) is True
        assert recorder.runs == Counter(["first", "second"])
    finally:
        gate.set()
        shutdown_within(executor)


def test_cancel_reaches_only_that_jobs_handler(executor: ThreadJobExecutor, recorder: Recorder) -> None:
    gate_a, gate_b = recorder.hold("a"), recorder.hold("b")
    executor.start(recorder)
    executor.enqueue("a")
    executor.enqueue("b")
    assert recorder.started_event("a").wait(TIMEOUT)
    executor.cancel("a")
    gate_a.set()
    gate_b.set()
    assert executor.wait("a", TIMEOUT) and executor.wait("b", TIMEOUT)
    assert recorder.cancel_seen == {"a": True, "b": False}


def test_cancelling_a_queued_job_reaches_its_handler_when_it_runs(recorder: Recorder) -> None:
    executor = ThreadJobExecutor(workers=1)
    gate = recorder.hold("running")
    executor.start(recorder)
    for job_id in ["running", "queued", "other"]:
        executor.enqueue(job_id)
    try:
        assert recorder.started_event("running").wait(TIMEOUT)
        executor.cancel("queued")
        executor.cancel("never-enqueued")  # harmless
        gate.set()
        assert all(executor.wait(job_id, TIMEOUT) for job_id in ["running", "queued", "other"])
        assert recorder.cancel_seen == {"running": False, "queued": True, "other": False}
    finally:
        gate.set()
        shutdown_within(executor)


def test_a_cancel_does_not_stick_to_a_job_id_run_again(executor: ThreadJobExecutor, recorder: Recorder) -> None:
    gate = recorder.hold("retried")
    executor.start(recorder)
    executor.enqueue("retried")
    assert recorder.started_event("retried").wait(TIMEOUT)
    executor.cancel("retried")
    gate.set()
    assert executor.wait("retried", TIMEOUT) and recorder.cancel_seen == {"retried": True}
    del recorder.gates["retried"]
    executor.enqueue("retried")  # a retry of the same job
    assert executor.wait("retried", TIMEOUT)
    assert recorder.runs["retried"] == 2 and recorder.cancel_seen == {"retried": False}


def test_a_failing_handler_does_not_kill_the_worker(
    executor: ThreadJobExecutor, recorder: Recorder, caplog: pytest.LogCaptureFixture
) -> None:
    recorder.fail = {"bad-1", "bad-2", "bad-3"}
    executor.start(recorder)
    jobs = ["bad-1", "bad-2", "bad-3", "good-1", "good-2"]
    for job_id in jobs:
        executor.enqueue(job_id)
    assert all(executor.wait(job_id, TIMEOUT) for job_id in jobs)
    assert recorder.runs == Counter(jobs)
    executor.enqueue("good-3")  # the workers are still alive afterwards
    assert executor.wait("good-3", TIMEOUT) and recorder.runs["good-3"] == 1
    assert "bad-1" in caplog.text


def test_jobs_enqueued_before_start_run_after_it(executor: ThreadJobExecutor, recorder: Recorder) -> None:
    for job_id in ["early-1", "early-2", "early-3"]:
        executor.enqueue(job_id)
    assert executor.wait("early-1", timeout=0.05) is False
    assert recorder.runs == Counter()
    executor.start(recorder)
    assert all(executor.wait(job_id, TIMEOUT) for job_id in ["early-1", "early-2", "early-3"])
    assert recorder.runs == Counter(["early-1", "early-2", "early-3"])


def test_shutdown_waits_for_the_running_job_and_joins_the_threads(
    executor: ThreadJobExecutor, recorder: Recorder
) -> None:
    before = set(threading.enumerate())
    gate = recorder.hold("running")
    executor.start(recorder)
    workers = set(threading.enumerate()) - before
    assert workers and all(thread.is_alive() for thread in workers)
    executor.enqueue("running")
    assert recorder.started_event("running").wait(TIMEOUT)

    finished = threading.Event()

    def stop() -> None:
        executor.shutdown(wait=True)
        finished.set()

    stopper = threading.Thread(target=stop, daemon=True)
    stopper.start()
    assert not finished.wait(0.1)  # still running the job
    gate.set()
    assert finished.wait(TIMEOUT)
    stopper.join(TIMEOUT)
    assert "running" in recorder.cancel_seen  # the handler returned before shutdown did
    assert not any(thread.is_alive() for thread in workers)


def test_one_worker_runs_jobs_in_fifo_order(recorder: Recorder) -> None:
    executor = ThreadJobExecutor(workers=1)
    gate = recorder.hold("first")
    executor.start(recorder)
    jobs = ["first", *(f"job-{i}" for i in range(15))]
    for job_id in jobs:
        executor.enqueue(job_id)
    gate.set()
    try:
        assert all(executor.wait(job_id, TIMEOUT) for job_id in jobs)
        assert recorder.order == jobs
    finally:
        shutdown_within(executor)


def test_two_workers_run_two_jobs_at_once(recorder: Recorder) -> None:
    executor = ThreadJobExecutor(workers=2)
    gate_a, gate_b = recorder.hold("a"), recorder.hold("b")
    executor.start(recorder)
    executor.enqueue("a")
    executor.enqueue("b")
    try:
        assert recorder.started_event("a").wait(TIMEOUT) and recorder.started_event("b").wait(TIMEOUT)
    finally:
        gate_a.set()
        gate_b.set()
        shutdown_within(executor)
    assert recorder.runs == Counter(["a", "b"])


def test_an_executor_needs_a_worker() -> None:
    with pytest.raises(ValueError):
        ThreadJobExecutor(workers=0)


def test_jobs_with_one_batching_key_run_as_one_batch() -> None:
    singles: list[str] = []
    batches: list[list[str]] = []
    done = threading.Event()

    def single(job_id: str, cancel: Callable[[], bool]) -> None:
        singles.append(job_id)

    def batch(job_ids: list[str], cancel_of: Callable[[str], bool]) -> None:
        batches.append(list(job_ids))
        done.set()

    executor = ThreadJobExecutor(workers=1, batch_window=0.2, max_batch=3)
    for job_id, key in [("a", "k"), ("x", None), ("b", "k"), ("c", "other"), ("d", "k"), ("e", "k")]:
        executor.enqueue(job_id, key)
    executor.start(single, batch)
    assert all(executor.wait(j, TIMEOUT) for j in "abcdex")
    shutdown_within(executor)
    assert batches == [["a", "b", "d"]]  # at most three; "e" waits for the next turn
    assert singles == ["x", "c", "e"]  # alone: no key, a lone key, and the one left over
    assert done.is_set()


def test_a_batch_gathers_jobs_that_arrive_within_the_window() -> None:
    batches: list[list[str]] = []
    executor = ThreadJobExecutor(workers=1, batch_window=0.5, max_batch=8)
    executor.start(lambda job_id, cancel: batches.append([job_id]), lambda ids, cancel_of: batches.append(list(ids)))
    executor.enqueue("first", "k")
    time.sleep(0.05)
    executor.enqueue("second", "k")
    assert executor.wait("first", TIMEOUT) and executor.wait("second", TIMEOUT)
    shutdown_within(executor)
    assert batches == [["first", "second"]]


def test_cancel_signals_are_per_job_inside_a_batch() -> None:
    seen: dict[str, bool] = {}
    release = threading.Event()
    started = threading.Event()

    def batch(job_ids: list[str], cancel_of: Callable[[str], bool]) -> None:
        started.set()
        assert release.wait(TIMEOUT)
        seen.update({job_id: cancel_of(job_id) for job_id in job_ids})

    executor = ThreadJobExecutor(workers=1, batch_window=0.1, max_batch=4)
    executor.enqueue("a", "k")
    executor.enqueue("b", "k")
    executor.start(lambda job_id, cancel: None, batch)
    assert started.wait(TIMEOUT)
    executor.cancel("b")
    release.set()
    assert executor.wait("a", TIMEOUT) and executor.wait("b", TIMEOUT)
    shutdown_within(executor)
    assert seen == {"a": False, "b": True}
