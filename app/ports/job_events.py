"""Announcements of committed job changes, so waiters wake at once instead of polling the database.

Every unit of work that commits job changes announces them (job id and new status) in its own process; on
PostgreSQL it also sends them with ``NOTIFY`` in the same transaction, and a listener in every other process
announces them there. A waiter watches one job (the progress stream of ``GET /v1/jobs/{id}/events``) or the queue
(idle workers: a job was queued or requeued). Announcements only wake: the waiter reads the database, and a short
poll remains the fallback where nothing is announced (another process on SQLite, a listener reconnecting).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol

QUEUE = ""  # what ``watch`` takes to hear of queued jobs


class JobWatch(Protocol):
    def wait(self, timeout: float) -> bool:
        """Block until an announcement since the last wait, or ``timeout`` seconds; True when announced."""

    async def wait_async(self, timeout: float) -> bool:
        """``wait`` for an event loop: announcements from any thread wake it without holding a thread."""

    def close(self) -> None:
        """Stop hearing announcements."""


class JobEvents(Protocol):
    def announce(self, changes: Sequence[tuple[str, str]]) -> None:
        """Committed changes, as (job id, status), to this process's watchers (a queued status wakes the queue's)."""

    def watch(self, job_id: str = QUEUE) -> JobWatch:
        """Hear the announcements of one job, or of queued jobs (``QUEUE``)."""
