"""Knowledge queries: the entity, its parts and the validation at the domain edge.

A ``KnowledgeQuery`` is one question answered by the long-tail-aware pipeline: the language model
answers alone first; the detector judges from query-time signals whether that answer rests on
long-tail knowledge; only then are passages retrieved and the model asked again with them.
"""

from __future__ import annotations

import hashlib
import math
import re
import uuid
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from enum import StrEnum

from app.domain.errors import InvalidParameters, NotFound, RequestTooLarge
from app.domain.text import require_text

# The collection every caller searches; documents only an admin may publish. Each owner also has its own
# collection, named by the owner (``local`` where the deployment has no keys).
SHARED_COLLECTION = "shared"
MAX_QUESTION_CHARS = 2000
MAX_DOCUMENT_CHARS = 2_000_000
MAX_TOP_K = 50


class KnowledgeQueryNotFound(NotFound):
    code = "knowledge_query_not_found"
    default_message = "No such knowledge query."


class Decision(StrEnum):
    PARAMETRIC = "parametric"  # the model's own answer was trusted
    RETRIEVED = "retrieved"  # judged long-tail: answered again with retrieved passages


@dataclass(frozen=True)
class Passage:
    """A retrieved chunk of an ingested document, with its similarity to the question."""

    chunk_id: str
    source: str
    text: str
    score: float


@dataclass(frozen=True)
class Signals:
    """What the decision was based on (``None`` where a signal was not computed).

    ``alpha``: mean Zipf word frequency of the question's words; ``mean_token_prob`` and
    ``min_token_prob``: over the tokens of the model's own answer; ``grad_alignment``: cosine between
    the gradient of the answer's NLL and the calibration set's mean gradient E(grad);
    ``neighbour_gece``: mean GECE of the nearest calibration questions; ``gece_estimate``: the
    detector's estimate that the question is long-tail (0..1), compared with ``threshold``;
    ``state_probe``: the log-odds that the question is long-tail, read by a linear probe from the
    model's hidden state before its first answer token;
    ``early_estimate``: the early detector's estimate from the signals that exist before any answer
    (alpha, neighbour_gece, state_probe), which retrieves at once above the calibration's ``early_threshold``;
    ``aborted_at``: the number of tokens after which the parametric answer was abandoned because its
    running minimum token probability fell below the calibration's ``abort_min_prob`` (the token
    probabilities above are then those of the partial answer, and no later signal was computed);
    ``gate``: what decided after the plain answer: the gate the model's calibration chose by cross-validation
    (``"detector"``, ``"token_prob"`` or ``"combined"``, see ``GATES``), or, for a model without a calibration,
    ``"token_prob"`` at the fixed fallback ``threshold``; ``calibration_id``: the calibration that decided (None:
    none did).
    """

    alpha: float | None = None
    mean_token_prob: float | None = None
    min_token_prob: float | None = None
    grad_alignment: float | None = None
    neighbour_gece: float | None = None
    gece_estimate: float | None = None
    threshold: float | None = None
    early_estimate: float | None = None
    aborted_at: int | None = None
    state_probe: float | None = None
    gate: str | None = None  # what decided: a calibrated gate, "token_prob" without calibration, None (no gate)
    calibration_id: str | None = None


@dataclass
class KnowledgeQuery:
    id: str
    owner: str
    question: str
    created_at: datetime
    answer: str = ""
    decision: Decision = Decision.PARAMETRIC
    parametric_answer: str = ""
    signals: Signals = field(default_factory=Signals)
    passages: list[Passage] = field(default_factory=list)
    timings: dict[str, float] = field(default_factory=dict)  # stage -> seconds, "total" included
    model: str = ""


def new_query_id() -> str:
    return uuid.uuid4().hex


def validate_question(question: object) -> str:
    if not isinstance(question, str) or not question.strip():
        raise InvalidParameters("The question is empty.", field="question")
    text = require_text(question.strip(), "question")
    if len(text) > MAX_QUESTION_CHARS:
        raise RequestTooLarge(
            f"The question has {len(text)} characters; at most {MAX_QUESTION_CHARS} are accepted.", field="question"
        )
    return text


def validate_top_k(top_k: object) -> int:
    if isinstance(top_k, bool) or not isinstance(top_k, int) or not 1 <= top_k <= MAX_TOP_K:
        raise InvalidParameters(f"top_k must be an integer from 1 to {MAX_TOP_K}.", field="top_k")
    return top_k


# --- documents and chunks -------------------------------------------------------------------------

_CJK = re.compile(r"[\u3400-\u9fff\uf900-\ufaff]")
_CJK_OR_MARK = re.compile(r"[\u3000-\u303f\u3400-\u9fff\uf900-\ufaff\uff00-\uffef]")
_SENTENCE_END = re.compile(r"(?<=[。！？!?；;])|(?<=[.])\s+")


@dataclass(frozen=True)
class Chunk:
    """A piece of a document, the unit the index stores and retrieves. ``id`` is ``<source>#<n>``."""

    id: str
    source: str
    text: str


def text_units(text: str) -> int:
    """Length in the units chunks are measured in: CJK characters plus whitespace-separated words."""
    cjk = len(_CJK.findall(text))
    return cjk + len(_CJK.sub(" ", text).split())


def validate_document(source: object, text: object) -> tuple[str, str]:
    if not isinstance(source, str) or not source.strip():
        raise InvalidParameters("A document needs a source name.", field="source")
    if not isinstance(text, str) or not text.strip():
        raise InvalidParameters(f"The document {source!r} is empty.", field="text")
    if len(text) > MAX_DOCUMENT_CHARS:
        raise RequestTooLarge(
            f"The document {source!r} has {len(text)} characters; at most {MAX_DOCUMENT_CHARS} are accepted.",
            field="text",
        )
    return source.strip(), text


def chunk_document(source: str, text: str, max_units: int = 100, overlap_sentences: int = 0) -> list[Chunk]:
    """Split a document into chunks of about ``max_units`` (see ``text_units``) at sentence ends.

    Lines and paragraphs are packed together while they fit (a markdown title stays with its text);
    a sentence longer than the limit is cut by units. ``overlap_sentences`` repeats that many trailing
    sentences at the next chunk's start.
    """
    if max_units < 1:
        raise InvalidParameters("max_units must be at least 1.", field="max_units")
    pieces: list[str] = []
    sentences = [s.strip() for line in text.splitlines() for s in _SENTENCE_END.split(line) if s and s.strip()]
    current: list[str] = []
    for sentence in _split_long(sentences, max_units):
        if current and text_units(" ".join([*current, sentence])) > max_units:
            pieces.append(_join(current))
            current = current[-overlap_sentences:] if overlap_sentences else []
        current.append(sentence)
    if current:
        pieces.append(_join(current))
    return [Chunk(f"{source}#{i}", source, piece) for i, piece in enumerate(p for p in pieces if p.strip())]


def _split_long(sentences: list[str], max_units: int) -> list[str]:
    out: list[str] = []
    for sentence in sentences:
        if text_units(sentence) <= max_units:
            out.append(sentence)
            continue
        tokens = re.findall(r"[\u3400-\u9fff\uf900-\ufaff]|[^\s\u3400-\u9fff\uf900-\ufaff]+", sentence)
        for i in range(0, len(tokens), max_units):
            out.append(_join(tokens[i : i + max_units]))
    return out


def _join(parts: list[str]) -> str:
    """Join with spaces, except between CJK characters or punctuation."""
    text = ""
    for part in parts:
        if text and not (_CJK_OR_MARK.match(text[-1]) and _CJK_OR_MARK.match(part[0])):
            text += " "
        text += part
    return text


# --- documents and retrieval -----------------------------------------------------------------------------------

RETRIEVERS = ("hybrid", "vector", "keyword")  # how passages are found; the first is the default
RRF_K = 60  # reciprocal rank fusion's constant (Cormack et al. 2009)


@dataclass(frozen=True)
class DocumentInfo:
    """An ingested document: its chunks in one collection under one source name."""

    id: str
    source: str
    collection: str
    chunks: int
    characters: int


_DOCUMENT_ID = re.compile(r"doc_[0-9a-f]{20}")


def document_id(collection: str, source: str) -> str:
    """A document's stable id: the same source in the same collection keeps it across re-ingestion."""
    return "doc_" + hashlib.sha256(f"{collection}\0{source}".encode()).hexdigest()[:20]


def is_document_id(text: str) -> bool:
    """Whether ``text`` has the form of ``document_id``'s ids (else it names a document by its source)."""
    return _DOCUMENT_ID.fullmatch(text) is not None


def keyword_terms(words: list[str]) -> list[str]:
    """The distinct words of a keyword query, in order, without one-character Latin words and punctuation."""
    seen: dict[str, None] = {}
    for word in words:
        if any(ch.isalnum() for ch in word) and (len(word) > 1 or _CJK.match(word)):
            seen.setdefault(word, None)
    return list(seen)


def fuse(rankings: list[list[Passage]], k: int, constant: int = RRF_K) -> list[Passage]:
    """Reciprocal rank fusion: each passage scores the sum over rankings of 1 / (constant + rank), rank from 1;
    the best ``k``, their ``score`` the fused one (ties by chunk id)."""
    scores: dict[tuple[str, str], float] = {}
    found: dict[tuple[str, str], Passage] = {}
    for ranking in rankings:
        for rank, passage in enumerate(ranking, start=1):
            key = (passage.source, passage.chunk_id)
            scores[key] = scores.get(key, 0.0) + 1.0 / (constant + rank)
            found.setdefault(key, passage)
    order = sorted(scores, key=lambda key: (-scores[key], key[1]))[:k]
    return [Passage(found[key].chunk_id, found[key].source, found[key].text, round(scores[key], 6)) for key in order]


# What the model reads of the retrieved passages (the first is the default; docs/knowledge.md has the measurements):
# the passage most about the question whole, the sentences that bear on it, or every passage whole.
READINGS = ("focused", "sentences", "passages")
CONTEXT_UNITS = 100  # the budget of ``read_sentences`` in ``text_units``
_COMMON_ZIPF = 7.0  # a question word's weight is how much rarer than this it is (Zipf: "the" 7.7, "capital" 4.9)


def split_sentences(text: str) -> list[str]:
    """A passage's sentences (lines and sentence ends), markdown heading marks dropped."""
    return [
        piece.strip().lstrip("#").strip()
        for line in text.splitlines()
        for piece in _SENTENCE_END.split(line)
        if piece and piece.strip().lstrip("#").strip()
    ]


def term_weights(terms: list[str], zipf: Callable[[str], float]) -> dict[str, float]:
    """A question's words weighted by rarity, ``7 − Zipf`` (none for the commonest words): matching "Tuvalu"
    says more than matching "capital", and "the" says nothing."""
    return {term: weight for term in terms if (weight := _COMMON_ZIPF - zipf(term)) > 0}


def read_sentences(
    weights: Mapping[str, float],
    passages: Sequence[Passage],
    words: Callable[[str], list[str]],
    budget: int = CONTEXT_UNITS,
) -> list[str]:
    """What the model reads: the sentences of ``passages`` that bear on the question, best first, within ``budget``
    units. A sentence scores the weights of the question's words it holds plus its passage's ``aboutness`` (so a
    sentence of the passage about the question's subject beats a like sentence of a passage that only names it);
    ties go to the better-ranked passage, then the earlier sentence. The chosen sentences are grouped by passage
    (each in its own order, labelled by its document's name, since a sentence such as "Its capital is Funafuti."
    needs its subject), the groups in the order of their best sentence. At least one sentence is read; none that
    matches nothing while another does."""
    scored: list[tuple[float, int, int, str]] = []
    for rank, passage in enumerate(passages):
        sentences = split_sentences(passage.text)
        context = aboutness(weights, passage.text, words)
        for position, sentence in enumerate(sentences):
            present = set(words(sentence))
            own = sum(w for term, w in weights.items() if term in present)
            scored.append((own + context if own else 0.0, rank, position, sentence))
    scored.sort(key=lambda s: (-s[0], s[1], s[2]))
    chosen: list[tuple[float, int, int, str]] = []
    used = 0
    for item in scored:
        size = text_units(item[3])
        if chosen and (item[0] == 0.0 or used + size > budget):
            continue
        chosen.append(item)
        used += size
    groups: dict[int, list[tuple[float, int, int, str]]] = {}
    for item in chosen:  # best first: a group's place is its best sentence's
        groups.setdefault(item[1], []).append(item)
    out = []
    for rank, items in groups.items():
        label = _label(passages[rank].source)
        text = _join([sentence for _, _, _, sentence in sorted(items, key=lambda s: s[2])])
        out.append(f"{label}: {text}" if label else text)
    return out


def aboutness(weights: Mapping[str, float], text: str, words: Callable[[str], list[str]]) -> float:
    """How much a passage is about the question: each question word's weight times 1 + ln(its count in the
    passage). The passage about Uganda names "Uganda" several times; its neighbours' passages name it once."""
    counts: dict[str, int] = {}
    for word in words(text):
        counts[word] = counts.get(word, 0) + 1
    return sum(w * (1.0 + math.log(counts[t])) for t, w in weights.items() if counts.get(t))


def focus_passages(
    weights: Mapping[str, float],
    passages: Sequence[Passage],
    words: Callable[[str], list[str]],
    budget: int = CONTEXT_UNITS,
) -> list[str]:
    """What the model reads, focused: the passages re-ranked by ``aboutness`` (ties by retrieval rank), the best
    one whole and the next ones while they fit ``budget`` units in all."""
    order = sorted(range(len(passages)), key=lambda i: (-aboutness(weights, passages[i].text, words), i))
    out: list[str] = []
    used = 0
    for i in order:
        size = text_units(passages[i].text)
        if out and used + size > budget:
            break
        out.append(passages[i].text)
        used += size
    return out


def _label(source: str) -> str:
    """A document's name for the reader: its file name without folders, suffix or the ``#n`` of a JSONL line."""
    name = source.split("#", 1)[0].rstrip("/").rsplit("/", 1)[-1]
    stem = name.rsplit(".", 1)[0] if "." in name else name
    return re.sub(r"[-_]+", " ", stem).strip()


# --- calibration -----------------------------------------------------------------------------------

# The query-time signals the detector may use, in a fixed order (see ``Signals``).
DETECTOR_FEATURES = ("alpha", "mean_token_prob", "min_token_prob", "grad_alignment", "neighbour_gece", "state_probe")
# Those that exist before the model answers: the early decision uses them.
EARLY_FEATURES = ("alpha", "neighbour_gece", "state_probe")
# The gates calibration chooses among, each a long-tail score in [0, 1] compared with ``gate_threshold``: the detector's
# probability, 1 − the answer's minimum token probability, and the mean of the two.
GATES = ("detector", "token_prob", "combined")


def gate_score(gate: str, detector: float | None, min_token_prob: float) -> float:
    """A gate's long-tail score from the detector's probability (None where the gate does not need it) and the
    plain answer's lowest token probability."""
    if gate == "token_prob":
        return 1.0 - min_token_prob
    if detector is None:
        raise ValueError(f"the {gate} gate needs the detector's probability")
    return detector if gate == "detector" else (detector + 1.0 - min_token_prob) / 2.0


@dataclass
class Calibration:
    """What ``atelier knowledge calibrate`` learned for one language model.

    ``mean_gradient``: E(grad_ins), the mean gradient sketch of the calibration instances' NLL;
    ``threshold_gece``: GECE above which a calibration instance is labelled long-tail;
    ``detector``: the fitted detector's parameters over ``features``; ``decision_threshold``: the
    detector probability above which a query retrieves; ``neighbours``: calibration questions'
    embeddings with their GECE (for ``neighbour_gece``); ``stats``: figures of the calibration run;
    ``early_*``: the early detector over ``EARLY_FEATURES`` and the probability above which a question
    retrieves without a parametric answer first; ``abort_min_prob``: the token probability below which a
    parametric answer is abandoned while it is being generated, and the question retrieves; ``probe``:
    the parameters of the linear probe from the model's question state to the long-tail label (the
    ``state_probe`` feature), over as many inputs as its weights; ``gate``: which of ``GATES`` decides after the
    plain answer, and ``gate_threshold`` its cut (None in calibrations made before the choice: the detector at
    ``decision_threshold``).
    """

    id: str
    model: str
    embedder: str
    dataset: str
    created_at: datetime
    n: int
    mean_gradient: list[float]
    threshold_gece: float
    features: list[str]
    detector: dict[str, object]
    decision_threshold: float
    neighbours: list[tuple[list[float], float]]
    stats: dict[str, float] = field(default_factory=dict)
    early_features: list[str] = field(default_factory=list)
    early_detector: dict[str, object] = field(default_factory=dict)
    early_threshold: float | None = None  # None: every question is answered by the model first
    abort_min_prob: float | None = None  # None: every parametric answer is generated to its end
    probe: dict[str, object] = field(default_factory=dict)  # the state probe's fit; empty: not used
    gate: str = "detector"  # which gate decides after the plain answer (GATES), chosen by cross-validation
    gate_threshold: float | None = None  # the gate's long-tail score above which a query retrieves


def validate_features(features: object) -> list[str]:
    if not isinstance(features, list | tuple) or not features:
        raise InvalidParameters("Name at least one detector feature.", field="features")
    unknown = [f for f in features if f not in DETECTOR_FEATURES]
    if unknown:
        raise InvalidParameters(
            f"Unknown detector feature(s) {unknown}; choose from {', '.join(DETECTOR_FEATURES)}.", field="features"
        )
    return list(dict.fromkeys(features))
