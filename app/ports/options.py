"""Per-owner options a compatible API keeps between requests (A1111's ``/sdapi/v1/options``)."""

from __future__ import annotations

from typing import Any, Protocol


class OwnerOptions(Protocol):
    """One JSON object of options per owner (an API key's digest, or ``local``); owners never see each other's."""

    def get(self, owner: str) -> dict[str, Any]:
        """The owner's options; ``{}`` when none were set."""

    def set(self, owner: str, options: dict[str, Any]) -> None:
        """Replace the owner's options with ``options`` (JSON-native values)."""
