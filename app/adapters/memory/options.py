"""Per-owner options in a dict (the ``test`` profile, and the fake in tests)."""

from __future__ import annotations

import copy
import threading
from typing import Any

from app.ports.options import OwnerOptions


class InMemoryOwnerOptions(OwnerOptions):
    def __init__(self) -> None:
        self._items: dict[str, dict[str, Any]] = {}
        self._lock = threading.Lock()

    def get(self, owner: str) -> dict[str, Any]:
        with self._lock:
            return copy.deepcopy(self._items.get(owner, {}))

    def set(self, owner: str, options: dict[str, Any]) -> None:
        with self._lock:
            self._items[owner] = copy.deepcopy(options)
