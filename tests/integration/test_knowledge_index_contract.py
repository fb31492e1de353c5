"""One contract for every ``KnowledgeIndex``: the in-memory fake, sqlite-vec and pgvector."""

from __future__ import annotations

import math
import socket
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from app.adapters.vector.pgvector import PgvectorKnowledgeIndex
from app.adapters.vector.sqlite_vec import SqliteVecKnowledgeIndex, sqlite_driver
from app.domain.errors import IndexUnavailable, InvalidParameters
from app.domain.gece import cosine
from app.domain.knowledge import Chunk
from app.ports.knowledge import KnowledgeIndex
from tests.fakes import InMemoryKnowledgeIndex

DIM = 8


@dataclass
class Store:
    """Opens indexes over one storage (each ``open()`` a new instance on the same data)."""

    open: Callable[..., KnowledgeIndex]  # optional argument: the dimension (DIM by default)
    down: Callable[[], KnowledgeIndex]  # an index whose storage cannot be reached
    persistent: bool


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture(params=["fake", "sqlite_vec", pytest.param("pgvector", marks=pytest.mark.postgres)])
def store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Store]:
    opened: list[KnowledgeIndex] = []

    def track(index: KnowledgeIndex) -> KnowledgeIndex:
        opened.append(index)
        return index

    if request.param == "fake":
        fake = InMemoryKnowledgeIndex()

        def down_fake() -> KnowledgeIndex:
            broken = InMemoryKnowledgeIndex()
            broken.unavailable = True
            return broken

        yield Store(lambda: fake, down_fake, persistent=False)
    elif request.param == "sqlite_vec":
        blocker = tmp_path / "not-a-folder"
        blocker.write_text("a file where the index's folder should be")
        yield Store(
            lambda dim=DIM: track(SqliteVecKnowledgeIndex(str(tmp_path / "index" / "knowledge.db"), dim)),
            lambda: track(SqliteVecKnowledgeIndex(str(blocker / "knowledge.db"), DIM)),
            persistent=True,
        )
    else:
        url = request.getfixturevalue("create_postgres_database")("knowledge")
        yield Store(
            lambda dim=DIM: track(PgvectorKnowledgeIndex(url, dim)),
            lambda: track(PgvectorKnowledgeIndex(f"postgresql+psycopg://atelier@127.0.0.1:{_closed_port()}/x", DIM)),
            persistent=True,
        )
    for index in opened:
        close = getattr(index, "close", None)
        if close is not None:
            close()


def unit(*pairs: tuple[int, float]) -> list[float]:
    """A DIM-d vector with the given components, L2-normalised."""
    v = [0.0] * DIM
    for i, x in pairs:
        v[i] = x
    norm = math.sqrt(sum(x * x for x in v))
    return [x / norm for x in v]


def chunks(source: str, *texts: str) -> list[Chunk]:
    return [Chunk(f"{source}#{i}", source, text) for i, text in enumerate(texts)]


CATS = chunks("cats.md", "Cats sleep a lot.", "Cats purr.", "Lions are big cats.")
CAT_VECTORS = [unit((0, 1.0)), unit((0, 1.0), (1, 0.5)), unit((0, 0.3), (2, 1.0))]
TEA = chunks("tea.md", "Green tea is steamed.", "Black tea is oxidised.")
TEA_VECTORS = [unit((5, 1.0)), unit((5, 1.0), (6, 1.0))]


def test_an_empty_index_counts_zero_and_finds_nothing(store: Store) -> None:
    index = store.open()
    assert index.count() == 0
    assert index.search(unit((0, 1.0)), 5) == []


def test_search_returns_the_nearest_first_with_cosine_scores(store: Store) -> None:
    index = store.open()
    assert index.replace_source("cats.md", CATS, CAT_VECTORS) == 0
    assert index.replace_source("tea.md", TEA, TEA_VECTORS) == 0
    assert index.count() == 5

    query = unit((0, 1.0), (1, 0.4))
    found = index.search(query, 3)

    assert [p.chunk_id for p in found] == ["cats.md#1", "cats.md#0", "cats.md#2"]
    everything = {c.id: (c, v) for c, v in zip(CATS + TEA, CAT_VECTORS + TEA_VECTORS, strict=True)}
    for passage in found:
        chunk, vector = everything[passage.chunk_id]
        assert (passage.source, passage.text) == (chunk.source, chunk.text)
        assert passage.score == pytest.approx(cosine(query, vector), abs=1e-5)
    assert [p.score for p in found] == sorted((p.score for p in found), reverse=True)


def test_replace_source_drops_that_sources_old_chunks_only(store: Store) -> None:
    index = store.open()
    index.replace_source("cats.md", CATS, CAT_VECTORS)
    index.replace_source("tea.md", TEA, TEA_VECTORS)

    new = [Chunk("cats.md#0", "cats.md", "Cats hunt at night.")]
    assert index.replace_source("cats.md", new, [unit((3, 1.0))]) == 3

    assert index.count() == 3
    texts = {p.text for p in index.search(unit((0, 1.0)), 10)}
    assert texts == {"Cats hunt at night.", "Green tea is steamed.", "Black tea is oxidised."}
    assert index.search(unit((3, 1.0)), 1)[0].text == "Cats hunt at night."
    assert index.replace_source("nothing.md", [], []) == 0
    assert index.replace_source("tea.md", [], []) == 2  # replacing with nothing deletes
    assert index.count() == 1


def test_k_larger_than_the_index_returns_every_chunk(store: Store) -> None:
    index = store.open()
    index.replace_source("tea.md", TEA, TEA_VECTORS)
    found = index.search(unit((5, 1.0)), 50)
    assert [p.chunk_id for p in found] == ["tea.md#0", "tea.md#1"]
    assert found[0].score == pytest.approx(1.0, abs=1e-5)


def test_chunks_survive_reopening(store: Store) -> None:
    if not store.persistent:
        pytest.skip("the fake keeps nothing")
    first = store.open()
    first.replace_source("cats.md", CATS, CAT_VECTORS)
    first.replace_source("cats.md", CATS[:2], CAT_VECTORS[:2])
    getattr(first, "close")()  # noqa: B009 (the port has no close; the real adapters do)

    again = store.open()
    assert again.count() == 2
    assert [p.chunk_id for p in again.search(unit((0, 1.0)), 5)] == ["cats.md#0", "cats.md#1"]


def test_an_unreachable_store_raises_index_unavailable(store: Store) -> None:
    index = store.down()
    with pytest.raises(IndexUnavailable):
        index.count()
    with pytest.raises(IndexUnavailable):
        index.search(unit((0, 1.0)), 3)
    with pytest.raises(IndexUnavailable):
        index.replace_source("tea.md", TEA, TEA_VECTORS)


# --- the real adapters only (the fake checks nothing) ----------------------------------------------


def test_a_vector_of_the_wrong_dimension_is_refused_and_nothing_changes(store: Store) -> None:
    if not store.persistent:
        pytest.skip("the fake does not check dimensions")
    index = store.open()
    index.replace_source("tea.md", TEA, TEA_VECTORS)
    with pytest.raises(InvalidParameters):
        index.replace_source("tea.md", TEA, [TEA_VECTORS[0], [1.0, 0.0]])
    with pytest.raises(InvalidParameters):
        index.search([1.0, 0.0, 0.0], 3)
    assert index.count() == 2


def test_reopening_with_another_dimension_is_refused(store: Store) -> None:
    if not store.persistent:
        pytest.skip("the fake does not check dimensions")
    store.open().replace_source("tea.md", TEA, TEA_VECTORS)
    with pytest.raises(InvalidParameters):
        store.open(DIM * 2).count()


# --- sqlite-vec: what can go wrong with a file ------------------------------------------------------


def test_a_corrupt_file_raises_index_unavailable(tmp_path: Path) -> None:
    path = tmp_path / "knowledge.db"
    path.write_bytes(b"this is not a database, " * 400)
    with pytest.raises(IndexUnavailable):
        SqliteVecKnowledgeIndex(str(path), DIM).count()


def test_a_store_locked_by_another_writer_raises_index_unavailable(tmp_path: Path) -> None:
    path = tmp_path / "knowledge.db"
    index = SqliteVecKnowledgeIndex(str(path), DIM, timeout_s=0.1)
    index.replace_source("tea.md", TEA, TEA_VECTORS)
    other = sqlite_driver().connect(str(path), isolation_level=None)  # the same SQLite library, see the adapter
    other.execute("BEGIN IMMEDIATE")  # another writer holding the write lock
    try:
        with pytest.raises(IndexUnavailable):
            index.replace_source("tea.md", TEA[:1], TEA_VECTORS[:1])
        assert index.count() == 2  # readers are not blocked (WAL)
    finally:
        other.execute("ROLLBACK")
        other.close()
    assert index.replace_source("tea.md", TEA[:1], TEA_VECTORS[:1]) == 2
    index.close()


def test_collections_keep_documents_apart(store: Store) -> None:
    index = store.open()
    index.replace_source("cats.md", CATS, CAT_VECTORS, collection="key:a")
    index.replace_source("cats.md", CATS[:1], CAT_VECTORS[:1], collection="key:b")  # same source, another owner
    index.replace_source("tea.md", TEA, TEA_VECTORS)  # the shared collection
    assert index.count() == 6
    near_cats = unit((0, 1.0))
    assert {p.chunk_id for p in index.search(near_cats, 10, ["key:b", "shared"]) if p.source == "cats.md"} == {
        "cats.md#0"
    }
    assert len([p for p in index.search(near_cats, 10, ["key:a", "shared"]) if p.source == "cats.md"]) == 3
    assert {p.source for p in index.search(near_cats, 10, ["shared"])} == {"tea.md"}
    assert index.search(near_cats, 10, []) == []
    assert len(index.search(near_cats, 10)) == 6  # no filter: every collection
    # replacing a source touches its own collection only
    assert index.replace_source("cats.md", [], [], collection="key:b") == 1
    assert len([p for p in index.search(near_cats, 10, ["key:a"])]) == 3


def test_a_filtered_search_finds_k_in_a_small_collection(store: Store) -> None:
    """The collection asked for is a sliver of the index: a search still returns its k nearest."""
    index = store.open()
    many = chunks("bulk.md", *[f"filler {i}" for i in range(120)])
    index.replace_source("bulk.md", many, [unit((0, 1.0), (1, 0.01 * i)) for i in range(120)])
    mine = chunks("mine.md", "Green tea is steamed.", "Black tea is oxidised.")
    index.replace_source("mine.md", mine, [unit((0, 0.2), (5, 1.0)), unit((0, 0.1), (6, 1.0))], collection="key:a")
    found = index.search(unit((0, 1.0)), 2, ["key:a"])
    assert [p.source for p in found] == ["mine.md", "mine.md"]


def test_an_index_made_before_collections_opens_with_its_documents_shared(tmp_path: Path) -> None:
    path = tmp_path / "old.db"
    driver = sqlite_driver()
    from array import array

    import sqlite_vec

    db = driver.connect(str(path))
    db.enable_load_extension(True)
    sqlite_vec.load(db)
    db.execute("CREATE TABLE knowledge_meta (key TEXT PRIMARY KEY, value TEXT NOT NULL)")
    db.execute("INSERT INTO knowledge_meta VALUES ('dim', ?)", (str(DIM),))
    db.execute(
        "CREATE TABLE knowledge_chunks (pk INTEGER PRIMARY KEY, id TEXT NOT NULL UNIQUE, source TEXT NOT NULL,"
        " text TEXT NOT NULL)"
    )
    db.execute(f"CREATE VIRTUAL TABLE knowledge_vectors USING vec0(embedding float[{DIM}] distance_metric=cosine)")
    for pk, (chunk, vector) in enumerate(zip(CATS, CAT_VECTORS, strict=True), start=1):
        db.execute("INSERT INTO knowledge_chunks VALUES (?, ?, ?, ?)", (pk, chunk.id, chunk.source, chunk.text))
        db.execute("INSERT INTO knowledge_vectors (rowid, embedding) VALUES (?, ?)", (pk, array("f", vector).tobytes()))
    db.commit()
    db.close()
    index = SqliteVecKnowledgeIndex(str(path), DIM)
    try:
        assert index.count() == 3
        found = index.search(unit((0, 1.0)), 1, ["key:x", "shared"])
        assert found[0].chunk_id == "cats.md#0" and found[0].text == "Cats sleep a lot."
        assert index.search(unit((0, 1.0)), 5, ["key:x"]) == []
        index.replace_source("cats.md", CATS[:1], CAT_VECTORS[:1], collection="key:x")
        assert index.count() == 4
        # the keyword index was made from the old chunks' texts
        assert [p.chunk_id for p in index.keyword_search(["purr"], 5, ["shared"])] == ["cats.md#1"]
    finally:
        index.close()


# --- keyword search, documents, deletion --------------------------------------------------------------

ZH = chunks("tuvalu.md", "图瓦卢的首都是富纳富提。", "汤加的首都是努库阿洛法。", "Funafuti is the capital of Tuvalu.")
ZH_VECTORS = [unit((3, 1.0)), unit((3, 1.0), (4, 1.0)), unit((4, 1.0))]


def test_keyword_search_ranks_chunks_by_their_words(store: Store) -> None:
    index = store.open()
    index.replace_source("cats.md", CATS, CAT_VECTORS)
    index.replace_source("tea.md", TEA, TEA_VECTORS)
    index.replace_source("tuvalu.md", ZH, ZH_VECTORS)
    assert [p.chunk_id for p in index.keyword_search(["purr"], 5)] == ["cats.md#1"]
    found = index.keyword_search(["oxidised", "steamed", "tea"], 5)
    assert {p.chunk_id for p in found} == {"tea.md#0", "tea.md#1"}
    assert all(p.score > 0 for p in found) and [p.score for p in found] == sorted(
        (p.score for p in found), reverse=True
    )
    # Chinese words (single characters for the default segmenter): the chunk with more of them first
    assert index.keyword_search(["富", "纳", "提"], 5)[0].chunk_id == "tuvalu.md#0"
    assert index.keyword_search(["capital", "tuvalu"], 1)[0].chunk_id == "tuvalu.md#2"
    assert index.keyword_search(["zebra"], 5) == []
    assert index.keyword_search([], 5) == []
    assert index.keyword_search(['"quoted" OR', "purr"], 5)[0].chunk_id == "cats.md#1"  # terms are not syntax


def test_keyword_search_keeps_to_its_collections(store: Store) -> None:
    index = store.open()
    index.replace_source("cats.md", CATS, CAT_VECTORS, collection="key:a")
    index.replace_source("tea.md", TEA, TEA_VECTORS, collection="key:b")
    assert index.keyword_search(["purr", "tea"], 5, ["key:b"])[0].source == "tea.md"
    assert {p.source for p in index.keyword_search(["purr", "tea"], 5, ["key:b"])} == {"tea.md"}
    assert index.keyword_search(["purr"], 5, []) == []


def test_documents_are_listed_by_collection_and_deleted_from_both_indexes(store: Store) -> None:
    from app.domain.knowledge import document_id

    index = store.open()
    index.replace_source("cats.md", CATS, CAT_VECTORS, collection="key:a")
    index.replace_source("tea.md", TEA, TEA_VECTORS, collection="key:a")
    index.replace_source("tea.md", TEA[:1], TEA_VECTORS[:1], collection="key:b")
    items, total = index.documents(["key:a"])
    assert total == 2 and [(d.source, d.chunks) for d in items] == [("cats.md", 3), ("tea.md", 2)]
    assert items[1].id == document_id("key:a", "tea.md") != document_id("key:b", "tea.md")
    assert items[0].characters == sum(len(c.text) for c in CATS)
    page, total = index.documents(["key:a", "key:b"], limit=1, offset=2)
    assert total == 3 and [(d.collection, d.source) for d in page] == [("key:b", "tea.md")]
    assert index.documents(["key:a"], source="tea.md")[1] == 1

    assert index.delete_source("tea.md", "key:a") == 2
    assert index.delete_source("tea.md", "key:a") == 0
    assert [d.source for d in index.documents(["key:a"])[0]] == ["cats.md"]
    assert index.keyword_search(["tea"], 5, ["key:a"]) == []
    assert all(p.source != "tea.md" for p in index.search(unit((5, 1.0)), 10, ["key:a"]))
    assert [p.source for p in index.keyword_search(["tea"], 5)] == ["tea.md"]  # key:b's copy stays
    assert index.count() == 4


@pytest.mark.postgres
def test_a_pgvector_table_made_before_the_keyword_index_gets_one(
    create_postgres_database: Callable[[str], str],
) -> None:
    from sqlalchemy import text

    from app.adapters.sql.engine import make_engine

    url = create_postgres_database("old_keywords")
    engine = make_engine(url)
    with engine.begin() as connection:
        connection.execute(text("CREATE EXTENSION IF NOT EXISTS vector"))
        connection.execute(
            text(
                "CREATE TABLE atelier_knowledge_chunks (pk BIGINT GENERATED BY DEFAULT AS IDENTITY PRIMARY KEY,"
                " collection TEXT NOT NULL DEFAULT 'shared', id TEXT NOT NULL, source TEXT NOT NULL,"
                f" text TEXT NOT NULL, embedding vector({DIM}) NOT NULL)"
            )
        )
        for chunk, vector in zip(CATS, CAT_VECTORS, strict=True):
            connection.execute(
                text("INSERT INTO atelier_knowledge_chunks (id, source, text, embedding) VALUES (:i, :s, :t, :e)"),
                {"i": chunk.id, "s": chunk.source, "t": chunk.text, "e": "[" + ",".join(map(str, vector)) + "]"},
            )
    engine.dispose()
    index = PgvectorKnowledgeIndex(url, DIM)
    try:
        assert [p.chunk_id for p in index.keyword_search(["purr"], 5)] == ["cats.md#1"]
        assert index.search(unit((0, 1.0)), 1)[0].chunk_id == "cats.md#0"
    finally:
        index.close()


def test_chinese_keyword_search_uses_the_word_segmenter(tmp_path: Path) -> None:
    """With jieba's words (what composition gives the index), a Chinese question finds its passage by words."""
    from app.adapters.text.words import WordfreqWordFrequency
    from app.domain.knowledge import keyword_terms

    words = WordfreqWordFrequency()
    index = SqliteVecKnowledgeIndex(str(tmp_path / "zh.db"), DIM, words=words.words)
    try:
        index.replace_source("tuvalu.md", ZH, ZH_VECTORS)
        found = index.keyword_search(keyword_terms(words.words("图瓦卢的首都是哪座城市？")), 3)
        assert found[0].chunk_id == "tuvalu.md#0"
        assert index.keyword_search(keyword_terms(words.words("努库阿洛法在哪里")), 3)[0].chunk_id == "tuvalu.md#1"
    finally:
        index.close()
