"""An in-process executor: a FIFO queue served by worker threads, with dynamic batching."""

from __future__ import annotations

import contextvars
import logging
import threading
import time
from collections import OrderedDict, deque
from collections.abc import Callable, Sequence

from app.ports.generation import BatchHandler, JobExecutor, JobHandler

log = logging.getLogger(__name__)
_KEEP_FINISHED = 1000


def _signals(events: dict[str, threading.Event]) -> Callable[[str], bool]:
    return lambda job_id: events[job_id].is_set()


class ThreadJobExecutor(JobExecutor):
    """Runs job handlers on ``workers`` daemon threads.

    **Dynamic batching**: a worker that takes a job with a batching key waits up to
    ``batch_window`` seconds for more queued jobs with the same key (up to ``max_batch``
    jobs), then hands them to the batch handler as one call. Jobs without a key, and every
    job when no batch handler is attached, run alone. Jobs of other keys keep their order.

    Cancellation is signalled per job id with an event the handler polls at every step;
    ``wait`` blocks on a per-job completion event. Jobs enqueued before ``start`` wait until
    a handler is attached.
    """

    pulls = False

    def __init__(self, workers: int = 1, batch_window: float = 0.0, max_batch: int = 8) -> None:
        if workers < 1 or max_batch < 1 or batch_window < 0:
            raise ValueError("an executor needs at least one worker, a batch of one, a window of zero or more")
        self._workers = workers
        self._window = batch_window
        self._max_batch = max_batch
        self._pending: deque[tuple[str, str | None]] = deque()
        self._ready = threading.Condition()
        self._stopping = False
        self._threads: list[threading.Thread] = []
        self._lock = threading.Lock()
        self._cancel: dict[str, threading.Event] = {}
        self._done: OrderedDict[str, threading.Event] = OrderedDict()
        self._runs: dict[str, int] = {}  # runs of a job id still queued or running
        # The context each job was queued in (the submitting request's id, for its log lines); each run gets a copy.
        self._contexts: dict[str, contextvars.Context] = {}
        self._handler: JobHandler | None = None
        self._batch_handler: BatchHandler | None = None

    def start(self, handler: JobHandler, batch_handler: BatchHandler | None = None) -> None:
        with self._lock:
            if self._threads:
                return
            self._handler, self._batch_handler = handler, batch_handler
            self._stopping = False
            for i in range(self._workers):
                thread = threading.Thread(target=self._serve, name=f"atelier-worker-{i}", daemon=True)
                thread.start()
                self._threads.append(thread)

    def enqueue(self, job_id: str, batch_key: str | None = None) -> None:
        with self._lock:
            self._contexts[job_id] = contextvars.copy_context()
            self._done.setdefault(job_id, threading.Event()).clear()
            self._cancel.setdefault(job_id, threading.Event())
            self._runs[job_id] = self._runs.get(job_id, 0) + 1
        with self._ready:
            self._pending.append((job_id, batch_key))
            self._ready.notify_all()

    def enqueue_many(self, jobs: Sequence[tuple[str, str | None]]) -> None:
        context = contextvars.copy_context()
        with self._lock:
            for job_id, _key in jobs:
                self._contexts[job_id] = context
                self._done.setdefault(job_id, threading.Event()).clear()
                self._cancel.setdefault(job_id, threading.Event())
                self._runs[job_id] = self._runs.get(job_id, 0) + 1
        with self._ready:
            self._pending.extend(jobs)
            self._ready.notify_all()

    def cancel(self, job_id: str) -> None:
        with self._lock:
            event = self._cancel.get(job_id)
        if event is not None:
            event.set()

    def wait(self, job_id: str, timeout: float | None = None) -> bool:
        with self._lock:
            event = self._done.get(job_id)
        return True if event is None else event.wait(timeout)

    def live_workers(self) -> int:
        with self._lock:
            return sum(1 for thread in self._threads if thread.is_alive())

    def shutdown(self, wait: bool = True) -> None:
        with self._lock:
            threads, self._threads = self._threads, []
        with self._ready:
            self._stopping = True
            self._ready.notify_all()
        if wait:
            for thread in threads:
                thread.join()

    def _next_batch(self) -> list[str] | None:
        """The next job, and the jobs that share its batching key within the window."""
        with self._ready:
            while not self._pending and not self._stopping:
                self._ready.wait()
            if self._stopping:
                return None
            job_id, key = self._pending.popleft()
            batch = [job_id]
            if key is None or self._batch_handler is None or self._max_batch == 1:
                return batch
            deadline = time.monotonic() + self._window
            while len(batch) < self._max_batch:
                for item in [item for item in self._pending if item[1] == key][: self._max_batch - len(batch)]:
                    self._pending.remove(item)
                    batch.append(item[0])
                remaining = deadline - time.monotonic()
                if len(batch) >= self._max_batch or remaining <= 0 or self._stopping:
                    break
                self._ready.wait(remaining)
            return batch

    def _serve(self) -> None:
        while (batch := self._next_batch()) is not None:
            with self._lock:
                events = {job_id: self._cancel.setdefault(job_id, threading.Event()) for job_id in batch}
                context = self._contexts.get(batch[0], contextvars.Context()).copy()
            try:
                if len(batch) == 1:
                    assert self._handler is not None
                    context.run(self._handler, batch[0], events[batch[0]].is_set)
                else:
                    assert self._batch_handler is not None
                    context.run(self._batch_handler, batch, _signals(events))
            except Exception:
                log.exception("the handler of jobs %s raised", batch)
            finally:
                for job_id in batch:
                    self._finish(job_id)

    def _finish(self, job_id: str) -> None:
        with self._lock:
            left = self._runs.get(job_id, 1) - 1
            if left > 0:  # the same id was enqueued again meanwhile: wait for that run too
                self._runs[job_id] = left
                return
            self._runs.pop(job_id, None)
            self._cancel.pop(job_id, None)
            self._contexts.pop(job_id, None)
            event = self._done.setdefault(job_id, threading.Event())
            event.set()
            self._done.move_to_end(job_id)
            while len(self._done) > _KEEP_FINISHED:
                oldest, old_event = next(iter(self._done.items()))
                if not old_event.is_set():
                    break
                self._done.pop(oldest)
