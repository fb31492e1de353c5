"""Where the processes that run jobs report themselves (``atelier cluster status``)."""

from __future__ import annotations

from typing import Protocol

from app.domain.workers import WorkerInfo


class WorkerRegistry(Protocol):
    def beat(self, worker: WorkerInfo) -> None:
        """Insert or refresh the worker's row."""

    def remove(self, worker_id: str) -> None:
        """A worker that stops takes its row away (one that dies leaves it to go stale)."""

    def workers(self) -> list[WorkerInfo]:
        """Every row, live or stale, the most recent heartbeat first."""
