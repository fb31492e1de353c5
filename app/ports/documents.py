"""Files a user hands to Atelier: documents to ingest, labelled questions, edits to apply or evaluate."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Protocol

from app.domain.edits import EditSpec


class DocumentReader(Protocol):
    def documents(self, paths: Sequence[str]) -> list[tuple[str, str]]:
        """(source, text) of each PDF, HTML, DOCX, Markdown, text or JSONL file (a document per JSONL line),
        folders read recursively; ``InvalidParameters`` for a missing, unreadable or unsupported path,
        ``RequestTooLarge`` past the size or page limit."""

    def parse(self, name: str, data: bytes) -> list[tuple[str, str]]:
        """(source, text) of an uploaded file named ``name`` (its kind by its suffix), as ``documents`` reads a
        file."""

    def labelled(self, path: str, split: str | None = None, limit: int | None = None) -> list[dict[str, Any]]:
        """``{"question", "answers"}`` rows of a jsonl file (``split`` filters on a ``"split"`` field)."""

    def edits(self, path: str, limit: int | None = None) -> list[EditSpec]:
        """Edits from a ZsRE- or CounterFact-shaped JSON file (the format is detected)."""
