"""Typed factories of training jobs: their store, the uploaded files, the base models a job trains from, trainers."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from app.domain.errors import InvalidParameters, UnknownModel
from app.domain.models import ModelKind
from app.domain.training import TrainingKind
from app.ports.generation import ModelCatalog
from app.ports.training import FileStore, Trainer, TrainingJobStore
from app.settings import Settings
from app.usecases.submit_training import BaseModels

if TYPE_CHECKING:
    from sqlalchemy.orm import Session, sessionmaker


def sql_store(made: sessionmaker[Session]) -> TrainingJobStore:
    from app.adapters.sql.training import SqlTrainingJobStore

    return SqlTrainingJobStore(made)


def files(settings: Settings) -> FileStore:
    from app.adapters.storage.files import LocalFileStore

    return LocalFileStore(str(Path(settings.data_dir) / "files"))


def base_models(settings: Settings, catalog: ModelCatalog) -> BaseModels:
    """A language model by the name chat requests give it (the served one, or another registered one)."""
    from app.composition.knowledge import default_llm_path, llm_name

    def folder(kind: TrainingKind, name: str) -> str:
        if kind is not TrainingKind.LLM_FINETUNE:
            raise InvalidParameters("Training image LoRAs is not available yet.", code="unsupported_training")
        if name in (llm_name(settings, catalog), settings.llm):
            return default_llm_path(settings, catalog)
        try:
            return catalog.get(name, ModelKind.LLM).path
        except UnknownModel:
            raise UnknownModel(
                f"No language model named {name!r}: fine-tune the served one ({llm_name(settings, catalog)}) or one "
                "registered with `atelier models add NAME PATH --kind llm`."
            ) from None

    return folder


def trainer(kind: TrainingKind) -> Trainer:
    if kind is not TrainingKind.LLM_FINETUNE:
        raise InvalidParameters("Training image LoRAs is not available yet.", code="unsupported_training")
    from app.adapters.transformers.finetune import TransformersTrainer

    return TransformersTrainer()
