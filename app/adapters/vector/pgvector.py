"""The server knowledge index: PostgreSQL with the pgvector extension, through SQLAlchemy core.

One table (``id``, ``source`` indexed, ``text``, ``embedding vector(dim)``) with an HNSW index over
``vector_cosine_ops``; a search orders by ``<=>`` (cosine distance) and reports ``1 - distance``.
The schema is created on first use (``CREATE EXTENSION IF NOT EXISTS vector`` needs a role allowed
to create it, or the extension already installed), under an advisory lock so that two processes
starting together do not race.
"""

from __future__ import annotations

import logging
import re
import threading
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import Any

from sqlalchemy import (
    BigInteger,
    Column,
    Connection,
    Engine,
    Identity,
    Index,
    MetaData,
    Table,
    Text,
    bindparam,
    cast,
    delete,
    func,
    insert,
    literal,
    select,
    text,
)
from sqlalchemy.engine import make_url
from sqlalchemy.exc import DBAPIError
from sqlalchemy.types import UserDefinedType

from app.adapters.sql.engine import make_engine, normalize_url
from app.adapters.vector import check_chunks, check_dim, check_vector
from app.domain.errors import IndexUnavailable, InvalidParameters
from app.domain.knowledge import SHARED_COLLECTION, Chunk, Passage
from app.ports.knowledge import KnowledgeIndex, Vector

_TABLE_NAME = re.compile(r"[a-z_][a-z0-9_]{0,50}")
log = logging.getLogger(__name__)
HNSW_EF_SEARCH = 40  # pgvector's default; an HNSW scan returns at most ef_search rows, so raise it for larger k


class PgVector(UserDefinedType[list[float]]):
    """pgvector's ``vector(dim)``, bound as its text form ``[x,y,...]``."""

    cache_ok = True

    def __init__(self, dim: int) -> None:
        self.dim = dim

    def get_col_spec(self, **kw: Any) -> str:
        return f"vector({self.dim})"

    def bind_processor(self, dialect: Any) -> Any:
        def process(value: Sequence[float] | None) -> str | None:
            return None if value is None else "[" + ",".join(repr(float(x)) for x in value) + "]"

        return process


class PgvectorKnowledgeIndex(KnowledgeIndex):
    """``ef_search``: the HNSW candidate list of a search (recall against speed); raised to ``k`` when smaller."""

    def __init__(
        self, url: str, dim: int, table: str = "atelier_knowledge_chunks", ef_search: int = HNSW_EF_SEARCH
    ) -> None:
        if make_url(normalize_url(url)).get_backend_name() != "postgresql":
            raise InvalidParameters("The pgvector index needs a PostgreSQL URL.", field="url")
        if not _TABLE_NAME.fullmatch(table):
            raise InvalidParameters(f"{table!r} is not a valid table name (lower-case, digits, _).", field="table")
        self.dim = check_dim(dim)
        self.ef_search = ef_search
        self._engine: Engine = make_engine(url)  # connects on first use, with a connect timeout
        metadata = MetaData()
        self.table = Table(
            table,
            metadata,
            Column("pk", BigInteger, Identity(), primary_key=True),
            Column("collection", Text, nullable=False, server_default=SHARED_COLLECTION),
            Column("id", Text, nullable=False),
            Column("source", Text, nullable=False),
            Column("text", Text, nullable=False),
            Column("embedding", PgVector(self.dim), nullable=False),
        )
        Index(f"{table}_collection_id", self.table.c.collection, self.table.c.id, unique=True)
        Index(f"{table}_collection_source", self.table.c.collection, self.table.c.source)
        Index(
            f"{table}_embedding_hnsw",
            self.table.c.embedding,
            postgresql_using="hnsw",
            postgresql_ops={"embedding": "vector_cosine_ops"},
        )
        self._ready = False
        self._ready_lock = threading.Lock()
        self._iterative = False  # pgvector >= 0.8: iterative index scans for filtered searches

    def replace_source(
        self, source: str, chunks: Sequence[Chunk], vectors: Sequence[Vector], collection: str = SHARED_COLLECTION
    ) -> int:
        rows = check_chunks(source, chunks, vectors, self.dim)
        t = self.table
        with self._begin() as connection:
            mine = t.c.collection == collection
            dropped = connection.execute(delete(t).where(mine, t.c.source == source)).rowcount
            if chunks:  # an id stored under another source moves here
                connection.execute(delete(t).where(mine, t.c.id.in_([chunk.id for chunk in chunks])))
                connection.execute(
                    insert(t),
                    [
                        {"collection": collection, "id": c.id, "source": c.source, "text": c.text, "embedding": v}
                        for c, v in zip(chunks, rows, strict=True)
                    ],
                )
        return int(dropped)

    def search(self, vector: Vector, k: int, collections: Sequence[str] | None = None) -> list[Passage]:
        query = check_vector(vector, self.dim)
        if k < 1:
            raise InvalidParameters("k must be at least 1.", field="k")
        t = self.table
        vector_type = PgVector(self.dim)
        distance = t.c.embedding.op("<=>")(cast(bindparam("query", query, type_=vector_type), vector_type))
        statement = select(t.c.id, t.c.source, t.c.text, distance.label("distance")).order_by(distance).limit(k)
        if collections is not None:
            statement = statement.where(t.c.collection.in_(list(collections)))
        with self._begin() as connection:
            # SET LOCAL takes no bind parameters; set_config(..., true) is its parameterised form
            connection.execute(select(func.set_config("hnsw.ef_search", literal(str(max(self.ef_search, k))), True)))
            if collections is not None:
                # A filtered HNSW scan returns fewer than k rows when the collections are a small part of the
                # table: pgvector 0.8 scans on until it has k; with an older one the search is exact instead.
                name, value = (
                    ("hnsw.iterative_scan", "relaxed_order") if self._iterative else ("enable_indexscan", "off")
                )
                connection.execute(select(func.set_config(name, literal(value), True)))
            rows = connection.execute(statement).all()
        passages = [Passage(r.id, r.source, r.text, 1.0 - float(r.distance)) for r in rows]
        passages.sort(key=lambda p: (-p.score, p.chunk_id))
        return passages

    def count(self) -> int:
        with self._begin() as connection:
            return int(connection.execute(select(func.count()).select_from(self.table)).scalar_one())

    def close(self) -> None:
        self._engine.dispose()

    def _upgrade(self, connection: Connection) -> None:
        exists = connection.execute(text("SELECT to_regclass(:table)"), {"table": self.table.name}).scalar_one()
        if exists is not None:
            for statement in _upgrade_statements(self.table.name):
                connection.execute(text(statement))

    @contextmanager
    def _begin(self) -> Iterator[Connection]:
        try:
            self._ensure_schema()
            with self._engine.begin() as connection:
                yield connection
        except DBAPIError as error:
            log.warning("knowledge index unavailable: %s", _short(error))
            raise IndexUnavailable("The knowledge index is unavailable; the server log has the details.") from error

    def _ensure_schema(self) -> None:
        with self._ready_lock:
            if self._ready:
                return
            with self._engine.begin() as connection:
                connection.execute(select(func.pg_advisory_xact_lock(func.hashtext(self.table.name))))
                connection.execute(text("CREATE EXTENSION IF NOT EXISTS vector"))
                self._upgrade(connection)
                self.table.metadata.create_all(connection, checkfirst=True)
                stored = connection.execute(
                    text(
                        "SELECT format_type(atttypid, atttypmod) FROM pg_attribute"
                        " WHERE attrelid = to_regclass(:table) AND attname = 'embedding'"
                    ),
                    {"table": self.table.name},
                ).scalar_one_or_none()
                version = connection.execute(
                    text("SELECT extversion FROM pg_extension WHERE extname = 'vector'")
                ).scalar_one()
            self._iterative = tuple(int(p) for p in str(version).split(".")[:2] if p.isdigit()) >= (0, 8)
            if stored != f"vector({self.dim})":
                raise InvalidParameters(
                    f"The table {self.table.name} holds {stored}, not vector({self.dim}): "
                    "use the embedder it was built with, or another table.",
                    field="dim",
                )
            self._ready = True


def _upgrade_statements(table: str) -> list[str]:
    """A table made before collections: its rows become the shared collection's (they were everyone's),
    and chunk ids are unique per collection instead of overall."""
    return [
        f"ALTER TABLE {table} ADD COLUMN IF NOT EXISTS collection TEXT NOT NULL DEFAULT '{SHARED_COLLECTION}'",
        f"ALTER TABLE {table} DROP CONSTRAINT IF EXISTS {table}_id_key",
        f"DROP INDEX IF EXISTS ix_{table}_source",
    ]


def _short(error: DBAPIError) -> str:
    lines = str(error.orig if error.orig is not None else error).strip().splitlines()
    first = lines[0].strip() if lines else type(error).__name__
    return first if len(first) <= 200 else first[:197] + "..."
