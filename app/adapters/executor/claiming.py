"""An executor whose threads claim jobs from the shared queue in the database (``ClaimJobs``).

Any number of processes on any hosts can run one each over one database: none keeps a queue of its own, so a
submission in one process is run by whichever worker claims it first, and a process that dies loses nothing
(its running jobs are requeued when its heartbeat stops). Idle threads wake when a job is queued: through the
job announcements (``watch``; from every process on PostgreSQL) or ``enqueue`` in this process, and look at the
queue every ``poll`` seconds anyway, for what no announcement reached them about.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Sequence

from app.domain.errors import AtelierError
from app.ports.generation import BatchHandler, JobExecutor, JobHandler
from app.ports.job_events import JobWatch

log = logging.getLogger(__name__)

Claim = Callable[[int], list[str]]
"""``claim(limit)``: ids of at most ``limit`` jobs now running under this process (one batching key)."""


def _signals(events: dict[str, tuple[threading.Event, threading.Event]]) -> Callable[[str], bool]:
    return lambda job_id: events[job_id][0].is_set()


class ClaimingJobExecutor(JobExecutor):
    """``workers`` threads, each claiming up to ``max_batch`` jobs at a time and running them as one batch."""

    pulls = True

    def __init__(
        self,
        claim: Claim,
        workers: int = 1,
        max_batch: int = 8,
        poll: float = 1.0,
        watch: Callable[[], JobWatch] | None = None,
    ) -> None:
        if workers < 1 or max_batch < 1 or poll <= 0:
            raise ValueError("a queue executor needs at least one worker, a batch of one and a poll above 0")
        self._claim, self._workers, self._max_batch, self._poll = claim, workers, max_batch, poll
        self._watch = watch
        self._wake = threading.Condition()
        self._signals = 0  # wake-ups not yet seen by a thread
        self._stopping = threading.Event()
        self._lock = threading.Lock()
        self._threads: list[threading.Thread] = []
        self._running: dict[str, tuple[threading.Event, threading.Event]] = {}  # job id: (cancel, done)
        self._handler: JobHandler | None = None
        self._batch_handler: BatchHandler | None = None

    def start(self, handler: JobHandler, batch_handler: BatchHandler | None = None) -> None:
        with self._lock:
            if self._threads:
                return
            self._handler, self._batch_handler = handler, batch_handler
            self._stopping.clear()
            for i in range(self._workers):
                thread = threading.Thread(target=self._serve, name=f"atelier-queue-{i}", daemon=True)
                thread.start()
                self._threads.append(thread)

    def enqueue(self, job_id: str, batch_key: str | None = None) -> None:
        self._notify()

    def enqueue_many(self, jobs: Sequence[tuple[str, str | None]]) -> None:
        self._notify()

    def _notify(self) -> None:
        with self._wake:
            self._signals += 1
            self._wake.notify_all()

    def cancel(self, job_id: str) -> None:
        with self._lock:
            events = self._running.get(job_id)
        if events is not None:
            events[0].set()

    def wait(self, job_id: str, timeout: float | None = None) -> bool:
        with self._lock:
            events = self._running.get(job_id)
        return True if events is None else events[1].wait(timeout)

    def live_workers(self) -> int:
        with self._lock:
            return sum(1 for thread in self._threads if thread.is_alive())

    def shutdown(self, wait: bool = True) -> None:
        with self._lock:
            threads, self._threads = self._threads, []
        self._stopping.set()
        self._notify()
        if wait:
            for thread in threads:
                thread.join()

    def _next(self, watch: JobWatch | None) -> list[str] | None:
        """Claimed job ids; None once stopping. Waits for a wake-up or the poll interval when nothing is queued."""
        while not self._stopping.is_set():
            with self._wake:
                seen = self._signals
            try:
                ids = self._claim(self._max_batch)
            except AtelierError as e:  # the database is away: try again after the poll interval
                log.warning("claiming jobs: %s", e.message)
                ids = []
            except Exception:
                log.exception("claiming jobs failed")
                ids = []
            if ids:
                return ids
            if watch is not None:
                watch.wait(self._poll)  # a job queued anywhere (or an enqueue here) ends it early
                continue
            with self._wake:
                if self._signals == seen and not self._stopping.is_set():
                    self._wake.wait(self._poll)
        return None

    def _serve(self) -> None:
        watch = self._watch() if self._watch is not None else None
        try:
            self._serve_with(watch)
        finally:
            if watch is not None:
                watch.close()

    def _serve_with(self, watch: JobWatch | None) -> None:
        while (ids := self._next(watch)) is not None:
            with self._lock:
                for job_id in ids:
                    self._running[job_id] = (threading.Event(), threading.Event())
                events = {job_id: self._running[job_id] for job_id in ids}
            try:
                if len(ids) == 1 or self._batch_handler is None:
                    assert self._handler is not None
                    for job_id in ids:
                        self._handler(job_id, events[job_id][0].is_set)
                else:
                    self._batch_handler(ids, _signals(events))
            except Exception:
                log.exception("the handler of jobs %s raised", ids)
            finally:
                with self._lock:
                    for job_id in ids:
                        self._running.pop(job_id, None)
                for _cancel, done in events.values():
                    done.set()
