"""Ingest documents into the knowledge index: chunk, embed, store (a re-ingested source replaces its chunks)."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

from app.domain.knowledge import SHARED_COLLECTION, Chunk, chunk_document, validate_document
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
        chunks = replaced = done = 0
        pending: list[tuple[str, list[Chunk]]] = []  # documents chunked, not yet embedded

        def flush() -> None:
            nonlocal replaced, done
            texts = [piece.text for _, pieces in pending for piece in pieces]
            vectors: list[list[float]] = []
            for start in range(0, len(texts), self._batch):  # batches span documents: short ones share one
                vectors += self._embedder.embed(texts[start : start + self._batch], "passage")
            at = 0
            for source, pieces in pending:
                replaced += self._index.replace_source(source, pieces, vectors[at : at + len(pieces)], collection)
                at += len(pieces)
                done += 1
                if progress:
                    progress(done, len(checked))
            pending.clear()

        for source, text in checked:
            pieces = chunk_document(source, text, self._chunk_units)
            pending.append((source, pieces))
            chunks += len(pieces)
            if sum(len(p) for _, p in pending) >= self._batch:
                flush()
        flush()
        return IngestReport(len(checked), chunks, replaced)
