"""An in-process executor: a FIFO queue served by worker threads."""

from __future__ import annotations

import logging
import queue
import threading
from collections import OrderedDict

from app.ports.generation import JobExecutor, JobHandler

log = logging.getLogger(__name__)
_STOP = object()
_KEEP_FINISHED = 1000


class ThreadJobExecutor(JobExecutor):
    """Runs job handlers on ``workers`` daemon threads.

    Cancellation is signalled per job id with an event the handler polls at every step;
    ``wait`` blocks on a per-job completion event. Jobs enqueued before ``start`` wait in
    the queue until a handler is attached.
    """

    def __init__(self, workers: int = 1) -> None:
        if workers < 1:
            raise ValueError("an executor needs at least one worker")
        self._workers = workers
        self._queue: queue.Queue[object] = queue.Queue()
        self._threads: list[threading.Thread] = []
        self._lock = threading.Lock()
        self._cancel: dict[str, threading.Event] = {}
        self._done: OrderedDict[str, threading.Event] = OrderedDict()
        self._pending: dict[str, int] = {}  # runs of a job id still queued or running
        self._handler: JobHandler | None = None

    def start(self, handler: JobHandler) -> None:
        with self._lock:
            if self._threads:
                return
            self._handler = handler
            for i in range(self._workers):
                thread = threading.Thread(target=self._serve, name=f"atelier-worker-{i}", daemon=True)
                thread.start()
                self._threads.append(thread)

    def enqueue(self, job_id: str) -> None:
        with self._lock:
            self._done.setdefault(job_id, threading.Event()).clear()
            self._cancel.setdefault(job_id, threading.Event())
            self._pending[job_id] = self._pending.get(job_id, 0) + 1
        self._queue.put(job_id)

    def cancel(self, job_id: str) -> None:
        with self._lock:
            event = self._cancel.get(job_id)
        if event is not None:
            event.set()

    def wait(self, job_id: str, timeout: float | None = None) -> bool:
        with self._lock:
            event = self._done.get(job_id)
        return True if event is None else event.wait(timeout)

    def shutdown(self, wait: bool = True) -> None:
        with self._lock:
            threads, self._threads = self._threads, []
        for _ in threads:
            self._queue.put(_STOP)
        if wait:
            for thread in threads:
                thread.join()

    def _serve(self) -> None:
        while True:
            item = self._queue.get()
            if item is _STOP:
                return
            job_id = str(item)
            with self._lock:
                cancel = self._cancel.setdefault(job_id, threading.Event())
            try:
                assert self._handler is not None
                self._handler(job_id, cancel.is_set)
            except Exception:
                log.exception("the handler of job %s raised", job_id)
            finally:
                self._finish(job_id)

    def _finish(self, job_id: str) -> None:
        with self._lock:
            left = self._pending.get(job_id, 1) - 1
            if left > 0:  # the same id was enqueued again meanwhile: wait for that run too
                self._pending[job_id] = left
                return
            self._pending.pop(job_id, None)
            self._cancel.pop(job_id, None)
            event = self._done.setdefault(job_id, threading.Event())
            event.set()
            self._done.move_to_end(job_id)
            while len(self._done) > _KEEP_FINISHED:
                oldest, old_event = next(iter(self._done.items()))
                if not old_event.is_set():
                    break
                self._done.pop(oldest)
