"""Hybrid retrieval: reciprocal rank fusion of the vector and the keyword ranking, and the keyword query's terms."""

from __future__ import annotations

import pytest

from app.domain.knowledge import Chunk, Passage, fuse, keyword_terms
from app.usecases.ask_question import retrieve
from tests.fakes import FakeEmbedder, FakeWordFrequency, InMemoryKnowledgeIndex


def _p(name: str) -> Passage:
    return Passage(f"{name}#0", name, name, 0.0)


def test_fusion_sums_reciprocal_ranks() -> None:
    vector = [_p("a"), _p("b"), _p("c")]
    keyword = [_p("c"), _p("d")]
    fused = fuse([vector, keyword], 3)
    # c: 1/63 + 1/61 beats a's 1/61 alone; b and d tie at 1/62, by chunk id
    assert [p.source for p in fused] == ["c", "a", "b"]
    assert fused[0].score == pytest.approx(round(1 / 63 + 1 / 61, 6))
    assert fuse([[], []], 5) == []
    assert [p.source for p in fuse([vector], 2)] == ["a", "b"]


def test_a_keyword_query_keeps_words_that_can_match() -> None:
    assert keyword_terms(["what", "is", "the", "capital", "of", "tuvalu", "?", "a", "图瓦卢", "的", "首都"]) == [
        "what",
        "is",
        "the",
        "capital",
        "of",
        "tuvalu",
        "图瓦卢",
        "的",
        "首都",
    ]
    assert keyword_terms(["tuvalu", "tuvalu", "—"]) == ["tuvalu"]


def test_hybrid_finds_what_only_the_words_find() -> None:
    """A rare name the embedding blurs (here: hashed into the same bucket as filler) is found by its word."""
    index = InMemoryKnowledgeIndex()
    embedder = FakeEmbedder(dim=2)  # two buckets: every text looks alike to the vector search
    texts = {f"doc{i}": f"filler text number {i}" for i in range(30)}
    texts["funafuti"] = "Funafuti is the capital of Tuvalu."
    for source, text in texts.items():
        chunk = Chunk(f"{source}#0", source, text)
        index.replace_source(source, [chunk], embedder.embed([text], "passage"), "shared")
    words = FakeWordFrequency()
    question = "What is the capital of Tuvalu?"
    by_keyword = retrieve(index, embedder, words, "keyword", question, 3, "me")
    hybrid = retrieve(index, embedder, words, "hybrid", question, 3, "me")
    assert by_keyword[0].source == "funafuti"
    assert "funafuti" in {p.source for p in hybrid}
    assert len(hybrid) == 3


def test_retrieval_searches_the_owners_and_the_shared_collection_only() -> None:
    index = InMemoryKnowledgeIndex()
    embedder = FakeEmbedder()
    for owner, source in (("me", "mine"), ("you", "yours"), ("shared", "everyone")):
        text = f"Funafuti is the capital of Tuvalu ({source})."
        index.replace_source(source, [Chunk(f"{source}#0", source, text)], embedder.embed([text], "passage"), owner)
    for retriever in ("vector", "keyword", "hybrid"):
        found = retrieve(index, embedder, FakeWordFrequency(), retriever, "capital of Tuvalu", 5, "me")
        assert {p.source for p in found} == {"mine", "everyone"}, retriever
