"""The worker registry in memory (the test profile: one process)."""

from __future__ import annotations

import threading

from app.domain.workers import WorkerInfo
from app.ports.workers import WorkerRegistry


class InMemoryWorkerRegistry(WorkerRegistry):
    def __init__(self) -> None:
        self._rows: dict[str, WorkerInfo] = {}
        self._lock = threading.Lock()

    def beat(self, worker: WorkerInfo) -> None:
        with self._lock:
            self._rows[worker.id] = worker

    def remove(self, worker_id: str) -> None:
        with self._lock:
            self._rows.pop(worker_id, None)

    def workers(self) -> list[WorkerInfo]:
        with self._lock:
            return sorted(self._rows.values(), key=lambda w: (-w.heartbeat_at.timestamp(), w.id))
