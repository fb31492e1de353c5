"""The documents of the knowledge index: listed by the caller's collections, deleted by id or by source."""

from __future__ import annotations

from dataclasses import dataclass

from app.domain.errors import Forbidden, InvalidParameters, NotFound
from app.domain.knowledge import SHARED_COLLECTION, DocumentInfo
from app.ports.knowledge import KnowledgeIndex

PAGE = 1000  # documents read at a time when an id is looked up


class DocumentNotFound(NotFound):
    code = "document_not_found"
    default_message = "No such document."


@dataclass(frozen=True)
class DocumentPage:
    items: list[DocumentInfo]
    total: int
    limit: int
    offset: int


class ListDocuments:
    def __init__(self, index: KnowledgeIndex) -> None:
        self._index = index

    def __call__(self, owner: str, limit: int = 100, offset: int = 0, source: str | None = None) -> DocumentPage:
        """The documents a caller searches: its own collection's and the shared one's."""
        items, total = self._index.documents(sorted({owner, SHARED_COLLECTION}), limit, offset, source)
        return DocumentPage(items, total, limit, offset)


class DeleteDocument:
    def __init__(self, index: KnowledgeIndex) -> None:
        self._index = index

    def __call__(
        self,
        owner: str,
        admin: bool,
        document_id: str | None = None,
        source: str | None = None,
        shared: bool = False,
    ) -> DocumentInfo:
        """Delete one document from the vector and the keyword index: by ``document_id`` (among the caller's
        collection and the shared one), or by ``source`` in the caller's collection (the shared one with
        ``shared``). A shared document needs an admin (``Forbidden``); ``DocumentNotFound`` where there is none."""
        if (document_id is None) == (source is None):
            raise InvalidParameters("Name the document by its id or by its source, not both.", field="source")
        if document_id is not None:
            found = self._by_id(owner, document_id)
        else:
            collection = SHARED_COLLECTION if shared else owner
            items, _ = self._index.documents([collection], 1, 0, source)
            if not items:
                raise DocumentNotFound(f"No document {source!r} in {'the shared' if shared else 'your'} collection.")
            found = items[0]
        if found.collection == SHARED_COLLECTION and not admin:
            raise Forbidden("Deleting a shared document needs an admin key.")
        self._index.delete_source(found.source, found.collection)
        return found

    def _by_id(self, owner: str, document_id: str) -> DocumentInfo:
        offset = 0
        while True:
            items, total = self._index.documents(sorted({owner, SHARED_COLLECTION}), PAGE, offset)
            for item in items:
                if item.id == document_id:
                    return item
            offset += PAGE
            if offset >= total:
                raise DocumentNotFound()
