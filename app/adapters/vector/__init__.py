"""Vector stores implementing the ``KnowledgeIndex`` port.

- ``sqlite_vec.SqliteVecKnowledgeIndex``: the embedded default, one SQLite file (sqlite-vec's
  ``vec0`` table beside a table of chunk texts); see its docstring for why it was chosen over FAISS.
- ``pgvector.PgvectorKnowledgeIndex``: PostgreSQL with the pgvector extension, for servers.

Both hold L2-normalised embeddings and score by cosine similarity. The checks below are shared by
both, so that they refuse the same inputs; the technology modules are imported only by the factory
that builds them.
"""

from __future__ import annotations

import math
import re
from collections.abc import Sequence

from app.domain.errors import InvalidParameters
from app.domain.knowledge import Chunk
from app.ports.knowledge import Vector


def check_vector(vector: Vector, dim: int, what: str = "The query vector") -> list[float]:
    """``vector`` as floats, if it has ``dim`` finite components and is not zero (cosine needs a direction)."""
    if len(vector) != dim:
        raise InvalidParameters(f"{what} has {len(vector)} dimensions; the index holds {dim}.", field="vector")
    values = [float(x) for x in vector]
    if not all(math.isfinite(x) for x in values):
        raise InvalidParameters(f"{what} has a non-finite component.", field="vector")
    if not any(values):
        raise InvalidParameters(f"{what} is zero; a cosine needs a direction.", field="vector")
    return values


def check_chunks(source: str, chunks: Sequence[Chunk], vectors: Sequence[Vector], dim: int) -> list[list[float]]:
    """The vectors as floats, if there is one valid vector per chunk, all chunks of ``source``, ids unique."""
    if len(chunks) != len(vectors):
        raise InvalidParameters(f"{len(chunks)} chunks but {len(vectors)} vectors.", field="vectors")
    ids = [chunk.id for chunk in chunks]
    if len(set(ids)) != len(ids):
        raise InvalidParameters(f"The chunks of {source!r} repeat an id.", field="chunks")
    strangers = [chunk.id for chunk in chunks if chunk.source != source]
    if strangers:
        raise InvalidParameters(f"Chunk {strangers[0]!r} does not belong to {source!r}.", field="chunks")
    return [check_vector(v, dim, f"The vector of chunk {c.id!r}") for c, v in zip(chunks, vectors, strict=True)]


def check_dim(dim: object) -> int:
    if isinstance(dim, bool) or not isinstance(dim, int) or dim < 1:
        raise InvalidParameters("The index dimension must be a positive integer.", field="dim")
    return dim


_WORD = re.compile(r"[\u3400-\u9fff\uf900-\ufaff]|[^\W\u3400-\u9fff\uf900-\ufaff]+")


def simple_words(text: str) -> list[str]:
    """The keyword index's words without a segmenter: Latin words, lower case, and single Chinese characters."""
    return _WORD.findall(text.lower())


def check_page(limit: int, offset: int) -> None:
    if not 1 <= limit <= 1000:
        raise InvalidParameters("limit must be 1 to 1000.", field="limit")
    if offset < 0:
        raise InvalidParameters("offset must be at least 0.", field="offset")
