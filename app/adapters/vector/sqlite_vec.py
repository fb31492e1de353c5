"""The embedded knowledge index: one SQLite file holding chunk texts, a sqlite-vec ``vec0`` table of their vectors
and an FTS5 table of their words (the keyword index, ranked by BM25).

Why sqlite-vec and not FAISS: its exact search is slower than a flat FAISS scan, but at the sizes of an
embedded index that is nothing beside a language-model answer, and it grows linearly (past a few hundred
thousand chunks, use pgvector with HNSW). It also survived writers killed mid-write where FAISS files did
not (docs/benchmarks.md has the comparison). What it gives that FAISS does not:

- persistence in one file, texts and vectors together, with no sidecar to keep in step;
- ``replace_source`` as one transaction: a reader sees the old chunks or the new ones, never a mix,
  and a crash rolls back (FAISS would rewrite the whole file on every change);
- deletion by source (HNSW in FAISS cannot remove; a flat index can, at a full rewrite);
- several processes on one file (SQLite locking, WAL), e.g. an ingesting CLI beside a server;
- keyword search in the same transaction as the vectors: FTS5 over each chunk's words as the segmenter gives them
  (jieba for Chinese, where FTS5's own tokenizers would take a run of Chinese characters as one word).

The interpreter's own ``sqlite3`` often cannot load extensions (built without
``--enable-loadable-sqlite-extensions``, as pyenv's default and Apple's are), so the connection comes
from ``sqlean.py``, a drop-in ``sqlite3`` with extension loading, and falls back to ``sqlite3``.
Open the index file only through this module: SQLite's locks are POSIX locks, which two copies of
the SQLite library in one process do not see from each other (other processes are safe).
"""

from __future__ import annotations

import logging
import threading
from array import array
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from types import ModuleType
from typing import Any

from app.adapters.vector import check_chunks, check_dim, check_page, check_vector, simple_words
from app.domain.errors import IndexUnavailable, InvalidParameters
from app.domain.knowledge import SHARED_COLLECTION, Chunk, DocumentInfo, Passage, document_id
from app.ports.knowledge import KnowledgeIndex, Vector

INSTALL_HINT = "pip install sqlite-vec==0.1.9 sqlean.py==3.50.4.5"
SCHEMA_VERSION = 3  # 2: collections (a column of both tables); 3: the keyword index (knowledge_terms)
log = logging.getLogger(__name__)
MAX_K = 4096  # sqlite-vec's limit on k in one query


def sqlite_driver() -> ModuleType:
    """A DB-API ``sqlite3`` module whose connections can load extensions."""
    try:
        import sqlean

        module: ModuleType = sqlean
        return module
    except ImportError:
        import sqlite3

        if hasattr(sqlite3.Connection, "enable_load_extension"):
            return sqlite3
    raise IndexUnavailable(f"This Python's sqlite3 cannot load extensions; install sqlean.py: {INSTALL_HINT}")


class SqliteVecKnowledgeIndex(KnowledgeIndex):
    """Chunks in ``knowledge_chunks``, their vectors in ``knowledge_vectors`` (vec0, same rowid).

    Nothing touches the file until the first call; it is created then. One connection per instance,
    used under a lock, so an instance can be shared between threads."""

    def __init__(
        self, path: str, dim: int, timeout_s: float = 5.0, words: Callable[[str], list[str]] | None = None
    ) -> None:
        """``words``: the segmenter of the keyword index (the knowledge queries' word statistics, jieba for
        Chinese); by default Latin words and single Chinese characters."""
        self.path = str(Path(path).expanduser())
        self.dim = check_dim(dim)
        self.words = words or simple_words
        self.timeout_s = timeout_s
        self._lock = threading.Lock()
        self._db: Any = None
        self._errors: tuple[type[BaseException], ...] = (OSError,)

    def replace_source(
        self, source: str, chunks: Sequence[Chunk], vectors: Sequence[Vector], collection: str = SHARED_COLLECTION
    ) -> int:
        rows = check_chunks(source, chunks, vectors, self.dim)
        with self._transaction() as db:
            dropped = _drop_source(db, collection, source)
            ids = [(collection, chunk.id) for chunk in chunks]  # an id stored under another source moves here
            for table in ("knowledge_vectors", "knowledge_terms"):
                db.executemany(
                    f"DELETE FROM {table} WHERE rowid IN"
                    " (SELECT pk FROM knowledge_chunks WHERE collection = ? AND id = ?)",
                    ids,
                )
            db.executemany("DELETE FROM knowledge_chunks WHERE collection = ? AND id = ?", ids)
            for chunk, vector in zip(chunks, rows, strict=True):
                pk = db.execute(
                    "INSERT INTO knowledge_chunks (collection, id, source, text) VALUES (?, ?, ?, ?)",
                    (collection, chunk.id, chunk.source, chunk.text),
                ).lastrowid
                db.execute(
                    "INSERT INTO knowledge_vectors (rowid, embedding, collection) VALUES (?, ?, ?)",
                    (pk, array("f", vector).tobytes(), collection),
                )
                db.execute("INSERT INTO knowledge_terms (rowid, terms) VALUES (?, ?)", (pk, self._terms(chunk.text)))
        return dropped

    def delete_source(self, source: str, collection: str) -> int:
        with self._transaction() as db:
            return _drop_source(db, collection, source)

    def keyword_search(self, terms: Sequence[str], k: int, collections: Sequence[str] | None = None) -> list[Passage]:
        if k < 1:
            raise InvalidParameters("k must be at least 1.", field="k")
        match = " OR ".join('"' + term.replace('"', '""') + '"' for term in dict.fromkeys(terms) if term.strip())
        if not match or (collections is not None and not collections):
            return []
        where, arguments = "", [match]
        if collections is not None:
            where = f" AND c.collection IN ({', '.join('?' * len(collections))})"
            arguments += list(collections)
        with self._connection() as db:
            rows = db.execute(
                "SELECT c.id, c.source, c.text, bm25(knowledge_terms) AS rank FROM knowledge_terms"
                " JOIN knowledge_chunks AS c ON c.pk = knowledge_terms.rowid"
                f" WHERE knowledge_terms MATCH ?{where} ORDER BY rank, c.id LIMIT ?",
                [*arguments, k],
            ).fetchall()
        return [Passage(cid, source, text, -float(rank)) for cid, source, text, rank in rows]

    def documents(
        self, collections: Sequence[str], limit: int = 100, offset: int = 0, source: str | None = None
    ) -> tuple[list[DocumentInfo], int]:
        check_page(limit, offset)
        if not collections:
            return [], 0
        where = f"collection IN ({', '.join('?' * len(collections))})"
        arguments: list[object] = list(collections)
        if source is not None:
            where += " AND source = ?"
            arguments.append(source)
        with self._connection() as db:
            total = int(
                db.execute(
                    f"SELECT count(*) FROM (SELECT 1 FROM knowledge_chunks WHERE {where} GROUP BY collection, source)",
                    arguments,
                ).fetchone()[0]
            )
            rows = db.execute(
                f"SELECT collection, source, count(*), sum(length(text)) FROM knowledge_chunks WHERE {where}"
                " GROUP BY collection, source ORDER BY collection, source LIMIT ? OFFSET ?",
                [*arguments, limit, offset],
            ).fetchall()
        items = [DocumentInfo(document_id(c, s), s, c, int(n), int(chars or 0)) for c, s, n, chars in rows]
        return items, total

    def search(self, vector: Vector, k: int, collections: Sequence[str] | None = None) -> list[Passage]:
        query = check_vector(vector, self.dim)
        if k < 1:
            raise InvalidParameters("k must be at least 1.", field="k")
        where, arguments = "", [array("f", query).tobytes(), min(k, MAX_K)]
        if collections is not None:
            if not collections:
                return []
            where = f" AND v.collection IN ({', '.join('?' * len(collections))})"
            arguments += list(collections)
        with self._connection() as db:
            rows = db.execute(
                "SELECT c.id, c.source, c.text, v.distance FROM knowledge_vectors AS v"
                " JOIN knowledge_chunks AS c ON c.pk = v.rowid"
                f" WHERE v.embedding MATCH ? AND k = ?{where} ORDER BY v.distance",
                arguments,
            ).fetchall()
        passages = [Passage(cid, source, text, 1.0 - float(distance)) for cid, source, text, distance in rows]
        passages.sort(key=lambda p: (-p.score, p.chunk_id))
        return passages

    def count(self) -> int:
        with self._connection() as db:
            return int(db.execute("SELECT count(*) FROM knowledge_chunks").fetchone()[0])

    def close(self) -> None:
        with self._lock:
            self._drop()

    # --- connection --------------------------------------------------------------------------------

    @contextmanager
    def _connection(self) -> Iterator[Any]:
        with self._lock:
            try:
                yield self._open()
            except self._errors as error:
                self._drop()  # reconnect next time: the file may have been repaired or unlocked
                log.warning("knowledge index %s unavailable: %s", self.path, error)
                raise IndexUnavailable("The knowledge index is unavailable; the server log has the details.") from error

    @contextmanager
    def _transaction(self) -> Iterator[Any]:
        with self._connection() as db:
            db.execute("BEGIN IMMEDIATE")
            try:
                yield db
            except BaseException:
                db.execute("ROLLBACK")
                raise
            db.execute("COMMIT")

    def _open(self) -> Any:
        if self._db is not None:
            return self._db
        driver = sqlite_driver()
        self._errors = (OSError, driver.Error)
        try:
            import sqlite_vec
        except ImportError as error:
            raise IndexUnavailable(f"The sqlite-vec package is not installed: {INSTALL_HINT}") from error
        if self.path != ":memory:":
            Path(self.path).parent.mkdir(parents=True, exist_ok=True)
        db = driver.connect(self.path, timeout=self.timeout_s, isolation_level=None, check_same_thread=False)
        try:
            db.enable_load_extension(True)
            sqlite_vec.load(db)
            db.enable_load_extension(False)
            db.execute("PRAGMA journal_mode=WAL")
            db.execute("PRAGMA synchronous=NORMAL")
            self._create_schema(db)
        except BaseException:
            db.close()
            raise
        self._db = db
        return db

    def _create_schema(self, db: Any) -> None:
        """Create the tables unless they exist; only creating takes the write lock, so readers open a
        store another process is writing to."""
        stored = _stored_dim(db)
        if stored is None:
            db.execute("BEGIN IMMEDIATE")
            try:
                stored = _stored_dim(db)  # another process may have created it meanwhile
                if stored is None:
                    db.execute("CREATE TABLE knowledge_meta (key TEXT PRIMARY KEY, value TEXT NOT NULL)")
                    db.execute("INSERT INTO knowledge_meta (key, value) VALUES ('dim', ?)", (str(self.dim),))
                    _create_tables(db, self.dim)
            except BaseException:
                db.execute("ROLLBACK")
                raise
            db.execute("COMMIT")
        elif _schema_version(db) < SCHEMA_VERSION:
            self._upgrade(db, stored)
        if stored is not None and stored != self.dim:
            raise InvalidParameters(
                f"The knowledge index {self.path} holds {stored}-d vectors, not {self.dim}-d: "
                "use the embedder it was built with, or another file.",
                field="dim",
            )

    def _upgrade(self, db: Any, dim: int) -> None:
        """Version 1 had no collections: its documents become the shared collection's (they were
        everyone's). vec0 cannot add a column, so both tables are rebuilt in one transaction. Version 2 had no
        keyword index: it is made from the chunks' texts."""
        db.execute("BEGIN IMMEDIATE")
        try:
            version = _schema_version(db)  # read again under the write lock: another process may have upgraded
            if version < 2:
                db.execute("ALTER TABLE knowledge_chunks RENAME TO knowledge_chunks_v1")
                db.execute("DROP INDEX IF EXISTS knowledge_chunks_source")
                db.execute("CREATE TABLE knowledge_vectors_v1 AS SELECT rowid AS pk, embedding FROM knowledge_vectors")
                db.execute("DROP TABLE knowledge_vectors")
                _create_tables(db, dim)
                db.execute(
                    "INSERT INTO knowledge_chunks (pk, collection, id, source, text)"
                    " SELECT pk, ?, id, source, text FROM knowledge_chunks_v1",
                    (SHARED_COLLECTION,),
                )
                db.execute(
                    "INSERT INTO knowledge_vectors (rowid, embedding, collection)"
                    " SELECT pk, embedding, ? FROM knowledge_vectors_v1",
                    (SHARED_COLLECTION,),
                )
                db.execute("DROP TABLE knowledge_chunks_v1")
                db.execute("DROP TABLE knowledge_vectors_v1")
            if version < 3:
                db.execute("CREATE VIRTUAL TABLE IF NOT EXISTS knowledge_terms USING fts5(terms)")
                for pk, body in db.execute(
                    "SELECT pk, text FROM knowledge_chunks WHERE pk NOT IN (SELECT rowid FROM knowledge_terms)"
                ).fetchall():
                    db.execute("INSERT INTO knowledge_terms (rowid, terms) VALUES (?, ?)", (pk, self._terms(body)))
                db.execute(
                    "INSERT OR REPLACE INTO knowledge_meta (key, value) VALUES ('schema', ?)", (str(SCHEMA_VERSION),)
                )
        except BaseException:
            db.execute("ROLLBACK")
            raise
        db.execute("COMMIT")

    def _terms(self, text: str) -> str:
        return " ".join(self.words(text))

    def _drop(self) -> None:
        if self._db is not None:
            try:
                self._db.close()
            finally:
                self._db = None


def _drop_source(db: Any, collection: str, source: str) -> int:
    """Delete a document's chunks, vectors and words; returns how many chunks it had."""
    for table in ("knowledge_vectors", "knowledge_terms"):
        db.execute(
            f"DELETE FROM {table} WHERE rowid IN (SELECT pk FROM knowledge_chunks WHERE collection = ? AND source = ?)",
            (collection, source),
        )
    return int(
        db.execute("DELETE FROM knowledge_chunks WHERE collection = ? AND source = ?", (collection, source)).rowcount
    )


def _create_tables(db: Any, dim: int) -> None:
    db.execute(
        "CREATE TABLE knowledge_chunks (pk INTEGER PRIMARY KEY, collection TEXT NOT NULL, id TEXT NOT NULL,"
        " source TEXT NOT NULL, text TEXT NOT NULL, UNIQUE (collection, id))"
    )
    db.execute("CREATE INDEX knowledge_chunks_source ON knowledge_chunks (collection, source)")
    db.execute(
        f"CREATE VIRTUAL TABLE knowledge_vectors USING vec0("
        f"embedding float[{dim}] distance_metric=cosine, collection text)"
    )
    db.execute("CREATE VIRTUAL TABLE IF NOT EXISTS knowledge_terms USING fts5(terms)")
    db.execute("INSERT OR REPLACE INTO knowledge_meta (key, value) VALUES ('schema', ?)", (str(SCHEMA_VERSION),))


def _schema_version(db: Any) -> int:
    row = db.execute("SELECT value FROM knowledge_meta WHERE key = 'schema'").fetchone()
    return 1 if row is None else int(row[0])


def _stored_dim(db: Any) -> int | None:
    if db.execute("SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'knowledge_meta'").fetchone() is None:
        return None
    row = db.execute("SELECT value FROM knowledge_meta WHERE key = 'dim'").fetchone()
    return None if row is None else int(row[0])
