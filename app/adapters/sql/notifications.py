"""Job announcements across processes through PostgreSQL's ``LISTEN``/``NOTIFY``.

A unit of work that commits job changes sends ``pg_notify('atelier_jobs', 'id:status,...')`` in its transaction:
PostgreSQL delivers it at commit, and never for a rollback. Each process listens on one connection of its own,
opened with its first watcher, and announces what it hears to its watchers; when that connection drops it wakes
every watcher (they read the database) and reconnects.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Sequence

from sqlalchemy import text
from sqlalchemy.engine import make_url
from sqlalchemy.orm import Session

from app.adapters.events import LocalJobEvents

log = logging.getLogger(__name__)
CHANNEL = "atelier_jobs"
_PAYLOAD_BYTES = 7000  # NOTIFY takes payloads below 8000 bytes
_RETRY_SECONDS = 2.0


def notify(session: Session, changes: Sequence[tuple[str, str]]) -> None:
    """Send the changes with the session's transaction (in chunks that fit a payload)."""
    chunk: list[str] = []
    size = 0
    for job_id, status in changes:
        item = f"{job_id}:{status}"
        if chunk and size + len(item) + 1 > _PAYLOAD_BYTES:
            session.execute(
                text("SELECT pg_notify(:channel, :payload)"), {"channel": CHANNEL, "payload": ",".join(chunk)}
            )
            chunk, size = [], 0
        chunk.append(item)
        size += len(item) + 1
    if chunk:
        session.execute(text("SELECT pg_notify(:channel, :payload)"), {"channel": CHANNEL, "payload": ",".join(chunk)})


def parse(payload: str) -> list[tuple[str, str]]:
    changes = []
    for item in payload.split(","):
        job_id, _, status = item.partition(":")
        if job_id and status:
            changes.append((job_id, status))
    return changes


class PostgresJobEvents(LocalJobEvents):
    """Local announcements, and those of every other process on the database (heard on a ``LISTEN`` connection)."""

    def __init__(self, database_url: str) -> None:
        super().__init__()
        self._conninfo = make_url(database_url).set(drivername="postgresql").render_as_string(hide_password=False)
        self._started = False
        self._start_lock = threading.Lock()
        self._stopping = threading.Event()
        self.listening = threading.Event()  # set while the LISTEN connection is up

    def watching(self) -> None:
        with self._start_lock:
            if self._started:
                return
            self._started = True
        threading.Thread(target=self._listen, name="atelier-listen", daemon=True).start()

    def close(self) -> None:
        self._stopping.set()

    def _listen(self) -> None:
        import psycopg

        while not self._stopping.is_set():
            try:
                with psycopg.connect(self._conninfo, autocommit=True, connect_timeout=5) as connection:
                    connection.execute(f"LISTEN {CHANNEL}")
                    self.listening.set()
                    self.wake_all()  # anything committed before the LISTEN was missed: look once
                    while not self._stopping.is_set():
                        for note in connection.notifies(timeout=1.0):
                            self.announce(parse(note.payload))
            except psycopg.Error as e:
                log.warning("job announcements: the listening connection failed (%s); polling until it is back", e)
            self.listening.clear()
            self.wake_all()
            self._stopping.wait(_RETRY_SECONDS)
