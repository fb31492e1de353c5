"""Job announcements within one process: each watch is a flag that an announcement raises, for threads and for
event loops alike."""

from __future__ import annotations

import asyncio
import contextlib
import threading
from collections.abc import Sequence

from app.ports.job_events import QUEUE, JobEvents, JobWatch


class _Watch(JobWatch):
    def __init__(self, events: LocalJobEvents, job_id: str) -> None:
        self._events, self.job_id = events, job_id
        self._flag = threading.Event()
        self._lock = threading.Lock()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._async: asyncio.Event | None = None

    def fire(self) -> None:
        self._flag.set()
        with self._lock:
            loop, flag = self._loop, self._async
        if loop is not None and flag is not None:
            with contextlib.suppress(RuntimeError):  # the loop has closed: nobody waits any more
                loop.call_soon_threadsafe(flag.set)

    def wait(self, timeout: float) -> bool:
        fired = self._flag.wait(timeout)
        self._flag.clear()
        return fired

    async def wait_async(self, timeout: float) -> bool:
        with self._lock:
            if self._async is None:
                self._loop, self._async = asyncio.get_running_loop(), asyncio.Event()
            flag = self._async
        if not self._flag.is_set():
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(flag.wait(), timeout)
        fired = self._flag.is_set()
        self._flag.clear()
        flag.clear()
        return fired

    def close(self) -> None:
        self._events.forget(self)


class LocalJobEvents(JobEvents):
    """Announcements reach the watchers of this process only."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._watches: dict[str, set[_Watch]] = {}

    def announce(self, changes: Sequence[tuple[str, str]]) -> None:
        with self._lock:
            found = {w for job_id, _ in changes for w in self._watches.get(job_id, ())}
            if any(status == "queued" for _, status in changes):
                found |= self._watches.get(QUEUE, set())
        for watch in found:
            watch.fire()

    def wake_all(self) -> None:
        """Wake every watcher (announcements may have been missed: each reads the database again)."""
        with self._lock:
            found = [w for watches in self._watches.values() for w in watches]
        for watch in found:
            watch.fire()

    def watch(self, job_id: str = QUEUE) -> JobWatch:
        watch = _Watch(self, job_id)
        with self._lock:
            self._watches.setdefault(job_id, set()).add(watch)
        self.watching()
        return watch

    def watching(self) -> None:
        """Called on each new watch (a subclass starts listening to other processes then)."""

    def forget(self, watch: _Watch) -> None:
        with self._lock:
            watches = self._watches.get(watch.job_id)
            if watches is not None:
                watches.discard(watch)
                if not watches:
                    del self._watches[watch.job_id]
