"""Hybrid retrieval: reciprocal rank fusion of the vector and the keyword ranking, and the keyword query's terms."""

from __future__ import annotations

import pytest

from app.domain.knowledge import (
    Chunk,
    Passage,
    aboutness,
    focus_passages,
    fuse,
    keyword_terms,
    read_sentences,
    split_sentences,
    term_weights,
    text_units,
)
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


# --- reading -------------------------------------------------------------------------------------------------

UGANDA = Passage(
    "uganda#0",
    "corpus/uganda.md",
    "# Uganda Uganda is located in Africa. Its capital is Kampala. Other towns of Uganda include Gulu.",
    0.0,
)
SOUTH_SUDAN = Passage(
    "south-sudan#0",
    "corpus/south-sudan.md",
    "# South Sudan The capital city is Juba. Its neighbours are Ethiopia, Kenya, Sudan and Uganda.",
    0.0,
)


def _words(text: str) -> list[str]:
    return FakeWordFrequency().words(text)


def _weights(question: str) -> dict[str, float]:
    zipf = {"what": 6.4, "which": 6.5, "is": 7.3, "the": 7.7, "capital": 4.9, "city": 5.6, "of": 7.4, "uganda": 4.0}
    return term_weights(keyword_terms(_words(question)), lambda w: zipf.get(w, 3.0))


def test_rare_words_weigh_more_and_the_commonest_nothing() -> None:
    weights = _weights("What is the capital city of Uganda?")
    assert set(weights) == {"what", "capital", "city", "uganda"}
    assert weights["uganda"] > weights["capital"] > weights["city"] > weights["what"] > 0


def test_focused_reading_gives_the_passage_about_the_subject_whole() -> None:
    """Retrieval ranked the neighbour first; the passage that names Uganda three times is read, whole."""
    weights = _weights("Which city is the capital of Uganda?")
    assert aboutness(weights, UGANDA.text, _words) > aboutness(weights, SOUTH_SUDAN.text, _words)
    assert focus_passages(weights, [SOUTH_SUDAN, UGANDA], _words, budget=30) == [UGANDA.text]
    assert focus_passages(weights, [SOUTH_SUDAN, UGANDA], _words, budget=200) == [UGANDA.text, SOUTH_SUDAN.text]
    assert focus_passages(weights, [SOUTH_SUDAN], _words, budget=1) == [SOUTH_SUDAN.text]  # at least one


def test_sentence_reading_keeps_what_bears_on_the_question_with_its_subject() -> None:
    weights = _weights("Which city is the capital of Uganda?")
    read = read_sentences(weights, [SOUTH_SUDAN, UGANDA], _words, budget=20)
    assert read[0].startswith("uganda: ") and "Its capital is Kampala." in read[0]
    assert all("Ethiopia" not in part for part in read[:1])
    assert sum(text_units(part) for part in read) <= 20 + 2 * len(read)  # the labels are not counted
    assert split_sentences("# Title\nOne. Two? 三。四") == ["Title", "One.", "Two?", "三。", "四"]
