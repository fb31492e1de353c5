"""Ingest documents into the knowledge index: chunk, embed, store (a re-ingested source replaces its chunks)."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

from app.domain.knowledge import SHARED_COLLECTION, chunk_document, validate_document
from app.ports.knowledge import Embedder, KnowledgeIndex


@dataclass(frozen=True)
class IngestReport:
    documents: int
    chunks: int
    replaced: int  # chunks dropped because their source was ingested again


class IngestDocuments:
    def __init__(self, embedder: Embedder, index: KnowledgeIndex, chunk_units: int = 100, batch: int = 32) -> None:
        self._embedder, self._index = embedder, index
        self._chunk_units, self._batch = chunk_units, batch

    def __call__(
        self,
        documents: Sequence[tuple[str, str]],
        progress: Callable[[int, int], None] | None = None,
        collection: str = SHARED_COLLECTION,
    ) -> IngestReport:
        """``documents``: (source, text) pairs, stored in ``collection`` (an owner's own, or the shared one).
        All are validated before anything is stored (``InvalidParameters``/``RequestTooLarge`` name the
        document); ``progress(done, total)`` per document."""
        checked = [validate_document(source, text) for source, text in documents]
        chunks = replaced = 0
        for i, (source, text) in enumerate(checked):
            pieces = chunk_document(source, text, self._chunk_units)
            vectors: list[list[float]] = []
            for start in range(0, len(pieces), self._batch):
                vectors += self._embedder.embed([p.text for p in pieces[start : start + self._batch]], "passage")
            replaced += self._index.replace_source(source, pieces, vectors, collection)
            chunks += len(pieces)
            if progress:
                progress(i + 1, len(checked))
        return IngestReport(len(checked), chunks, replaced)
