"""Typed factories of training jobs: their store, the uploaded files, the base models a job trains from, trainers."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from app.domain.errors import UnknownModel
from app.domain.families import require_lora_training
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
    """For a language model, the model by the name chat requests give it (the served one, or another registered one);
    for an image LoRA, a registered image model of a family whose LoRAs can be trained."""
    from app.composition.knowledge import default_llm_path, llm_name

    def folder(kind: TrainingKind, name: str) -> str:
        if kind is TrainingKind.IMAGE_LORA:
            return image_base(name)
        if name in (llm_name(settings, catalog), settings.llm):
            return default_llm_path(settings, catalog)
        try:
            return catalog.get(name, ModelKind.LLM).path
        except UnknownModel:
            raise UnknownModel(
                f"No language model named {name!r}: fine-tune the served one ({llm_name(settings, catalog)}) or one "
                "registered with `atelier models add NAME PATH --kind llm`."
            ) from None

    def image_base(name: str) -> str:
        try:
            model = catalog.get(name, ModelKind.BASE)
        except UnknownModel:
            raise UnknownModel(
                f"No image model named {name!r}: train on one listed by `atelier models list` (kind base)."
            ) from None
        require_lora_training(model.family)
        return model.path

    return folder


def trainer(kind: TrainingKind) -> Trainer:
    if kind is TrainingKind.IMAGE_LORA:
        from app.adapters.diffusers.lora_training import DiffusersLoraTrainer

        return DiffusersLoraTrainer()
    from app.adapters.transformers.finetune import TransformersTrainer

    return TransformersTrainer()
