"""Adapters over the standard library."""

from __future__ import annotations

import os
import socket
from datetime import UTC, datetime

from app.domain.workers import WorkerInfo
from app.ports.clock import Clock


class SystemClock(Clock):
    def now(self) -> datetime:
        return datetime.now(UTC)


def process_gone(worker: WorkerInfo) -> bool:
    """True when the worker ran on this host and its process no longer exists (a restarted server need not wait
    for the lease of the process it replaces). A reused pid reads as alive: the lease decides then."""
    if worker.host != socket.gethostname() or worker.pid <= 0:
        return False
    try:
        os.kill(worker.pid, 0)
    except ProcessLookupError:
        return True
    except PermissionError:  # it exists, under another user
        return False
    return False
