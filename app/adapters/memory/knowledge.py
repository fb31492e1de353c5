"""In-memory knowledge-query and calibration stores (the ``test`` profile, and fakes in tests)."""

from __future__ import annotations

import copy
import threading

from app.domain.knowledge import Calibration, KnowledgeQuery, KnowledgeQueryNotFound
from app.ports.knowledge import CalibrationStore, KnowledgeQueryStore, QueryPage


class InMemoryKnowledgeQueryStore(KnowledgeQueryStore):
    def __init__(self) -> None:
        self._items: dict[str, KnowledgeQuery] = {}
        self._lock = threading.Lock()

    def add(self, query: KnowledgeQuery) -> None:
        with self._lock:
            self._items[query.id] = copy.deepcopy(query)

    def get(self, query_id: str, owner: str | None = None) -> KnowledgeQuery:
        with self._lock:
            query = self._items.get(query_id)
            if query is None or (owner is not None and query.owner != owner):
                raise KnowledgeQueryNotFound(f"No knowledge query {query_id}.")
            return copy.deepcopy(query)

    def list(self, owner: str | None = None, limit: int = 20, offset: int = 0) -> QueryPage:
        with self._lock:
            items = [q for q in self._items.values() if owner is None or q.owner == owner]
        items.sort(key=lambda q: (q.created_at, q.id), reverse=True)
        return QueryPage([copy.deepcopy(q) for q in items[offset : offset + limit]], len(items), limit, offset)


class InMemoryCalibrationStore(CalibrationStore):
    def __init__(self) -> None:
        self._items: list[Calibration] = []
        self._lock = threading.Lock()

    def save(self, calibration: Calibration) -> None:
        with self._lock:
            self._items.append(copy.deepcopy(calibration))

    def latest(self, model: str) -> Calibration | None:
        with self._lock:
            mine = [c for c in self._items if c.model == model]
        return copy.deepcopy(max(mine, key=lambda c: (c.created_at, c.id))) if mine else None
