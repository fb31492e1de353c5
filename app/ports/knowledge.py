"""Ports of knowledge queries: the language model, embeddings, the index, word statistics, the detector."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Literal, Protocol

from app.domain.knowledge import SHARED_COLLECTION, Calibration, Chunk, DocumentInfo, KnowledgeQuery, Passage

Vector = Sequence[float]


@dataclass(frozen=True)
class Generation:
    """A greedy answer with the probability the model gave each of its tokens."""

    text: str
    token_probs: list[float]
    prompt_tokens: int
    seconds: float
    stopped_early: bool = False  # ``stop`` ended it before the model did


@dataclass(frozen=True)
class AnswerGradient:
    """The NLL of a target answer and its gradient over the model's declared parameter subset.

    ``vector`` is a fixed-size sketch of the gradient (see the adapter): dot products and cosines
    between sketches estimate those between the full gradients."""

    nll: float
    vector: list[float]


# Called after each generated token with the probabilities so far; True aborts the generation.
StopRule = Callable[[list[float]], bool]


class LanguageModel(Protocol):
    """A causal language model answering questions, optionally from passages."""

    name: str

    def generate(
        self, question: str, passages: Sequence[str] = (), max_new_tokens: int = 32, stop: StopRule | None = None
    ) -> Generation:
        """Greedy answer to ``question`` (with ``passages`` as context when given)."""

    def answer_gradient(self, question: str, answer: str) -> AnswerGradient:
        """NLL of ``answer`` as the reply to ``question`` and its gradient sketch (one forward and backward)."""

    def question_state(self, question: str) -> list[float]:
        """The model's hidden state at the last token of the passage-free prompt, the position that
        predicts the answer's first token, at the adapter's declared layer: what the model "thinks"
        before it answers (one forward pass over the prompt, which a following ``generate`` of the
        same question may reuse)."""


class Embedder(Protocol):
    """Dense sentence embeddings (L2-normalised)."""

    name: str
    dim: int

    def embed(self, texts: Sequence[str], kind: Literal["query", "passage"]) -> list[list[float]]: ...


class KnowledgeIndex(Protocol):
    """A persistent vector and keyword index of document chunks, kept in collections (``SHARED_COLLECTION``, or
    one per owner). A source names one document within its collection.

    Raises ``app.domain.errors.IndexUnavailable`` when it cannot be reached."""

    def replace_source(
        self, source: str, chunks: Sequence[Chunk], vectors: Sequence[Vector], collection: str = SHARED_COLLECTION
    ) -> int:
        """Store a document's chunks in ``collection``, dropping those stored there before under the same
        source (the same source in another collection is another document).

        Returns how many chunks were dropped."""

    def search(self, vector: Vector, k: int, collections: Sequence[str] | None = None) -> list[Passage]:
        """The ``k`` most similar chunks among ``collections`` (None: all), most similar first
        (``score``: cosine similarity)."""

    def keyword_search(self, terms: Sequence[str], k: int, collections: Sequence[str] | None = None) -> list[Passage]:
        """The ``k`` chunks that best match any of ``terms`` (words as the index's segmenter makes them: Chinese
        segmented into words, lower case), best first (``score``: the engine's relevance, higher better: BM25 in
        SQLite, ``ts_rank`` in PostgreSQL). No terms: no passages."""

    def documents(
        self, collections: Sequence[str], limit: int = 100, offset: int = 0, source: str | None = None
    ) -> tuple[list[DocumentInfo], int]:
        """The documents of ``collections`` (only the one named ``source`` when given), by collection and source,
        and how many there are in all."""

    def delete_source(self, source: str, collection: str) -> int:
        """Remove a document from both the vector and the keyword index; returns how many chunks it had."""

    def count(self) -> int: ...


class WordFrequency(Protocol):
    """Word segmentation and corpus word frequencies (alpha of GECE)."""

    def words(self, text: str) -> list[str]:
        """Lower-cased words, Chinese segmented into words; punctuation dropped."""

    def zipf(self, word: str) -> float:
        """Zipf frequency (log10 of occurrences per billion words); 0 for an unknown word."""


class Lexicon(Protocol):
    """The stemmer and synonyms METEOR's stem and synonym stages use."""

    def stem(self, word: str) -> str: ...

    def synonyms(self, word: str) -> frozenset[str]:
        """Words sharing a synset with ``word`` (empty where no thesaurus is available)."""


@dataclass(frozen=True)
class DetectorFit:
    """A fitted long-tail detector: its parameters (JSON-able) and fit statistics."""

    params: dict[str, object]
    features: list[str]
    stats: dict[str, float] = field(default_factory=dict)


class LongTailDetector(Protocol):
    """Maps query-time signals to the probability that a question is long-tail."""

    def fit(self, rows: Sequence[dict[str, float]], labels: Sequence[bool], features: Sequence[str]) -> DetectorFit: ...

    def probability(self, fit: DetectorFit, row: dict[str, float]) -> float: ...


@dataclass(frozen=True)
class QueryPage:
    items: list[KnowledgeQuery]
    total: int
    limit: int
    offset: int


class KnowledgeQueryStore(Protocol):
    """Answered knowledge queries. Each call is its own short transaction (a query is written once)."""

    def add(self, query: KnowledgeQuery) -> None: ...

    def get(self, query_id: str, owner: str | None = None) -> KnowledgeQuery:
        """Raises ``KnowledgeQueryNotFound``, also for a query of another owner."""

    def list(self, owner: str | None = None, limit: int = 20, offset: int = 0) -> QueryPage:
        """Newest first."""


class CalibrationStore(Protocol):
    """Detector calibrations, one current per language model (the newest)."""

    def save(self, calibration: Calibration) -> None: ...

    def latest(self, model: str) -> Calibration | None: ...
