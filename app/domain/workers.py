"""The processes that run jobs, as they report themselves: where they run and which models they hold."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta


@dataclass(frozen=True)
class WorkerInfo:
    """One process that runs jobs. ``models``: the registered names of the pipelines in its memory."""

    id: str
    host: str
    pid: int
    threads: int
    models: tuple[str, ...]
    started_at: datetime
    heartbeat_at: datetime

    def live(self, now: datetime, interval: float) -> bool:
        """Heard from within three heartbeat intervals."""
        return now - self.heartbeat_at <= timedelta(seconds=3 * interval)
