"""Queue a training job: its base model and files are checked first, so a refused request stores nothing.

The result's name must be free (it is registered under it when the job succeeds). The job is in the store before
this returns; a worker process claims it from there (``run_training``).
"""

from __future__ import annotations

from collections.abc import Callable

from app.domain.errors import InvalidParameters, ModelAlreadyRegistered, UnknownModel
from app.domain.image_dataset import parse_image_archive, training_captions
from app.domain.models import ModelKind
from app.domain.training import PURPOSE_OF, TrainingJob, TrainingKind, TrainingSpec
from app.ports.clock import Clock
from app.ports.generation import ModelCatalog
from app.ports.training import FileStore, TrainingJobStore

BaseModels = Callable[[TrainingKind, str], str]
"""The folder of a base model by name for a kind of training; raises ``UnknownModel``."""


class SubmitTraining:
    def __init__(
        self,
        store: TrainingJobStore,
        files: FileStore,
        catalog: ModelCatalog,
        base_models: BaseModels,
        clock: Clock,
        wake: Callable[[], None] = lambda: None,
    ) -> None:
        self._store, self._files, self._catalog, self._base_models = store, files, catalog, base_models
        self._clock, self._wake = clock, wake

    def __call__(self, owner: str, spec: TrainingSpec) -> TrainingJob:
        """Raises ``InvalidParameters`` (bad values, a file of the wrong purpose, images without captions and no
        trigger word, a base family whose LoRAs cannot be trained), ``FileNotFound`` (a file that is not the owner's),
        ``UnknownModel`` (the base) and ``ModelAlreadyRegistered`` (the result's name)."""
        for name, file_id in (("training_file", spec.training_file), ("validation_file", spec.validation_file)):
            purpose = self._files.get(file_id, owner).purpose if file_id else PURPOSE_OF[spec.kind]
            if purpose != PURPOSE_OF[spec.kind]:
                raise InvalidParameters(
                    f"{file_id} was uploaded with purpose {purpose}; {spec.kind.value} training needs a file uploaded "
                    f"with purpose {PURPOSE_OF[spec.kind]}.",
                    field=name,
                )
        if spec.kind is TrainingKind.IMAGE_LORA:
            if spec.validation_file:
                raise InvalidParameters("An image LoRA takes no validation file.", field="validation_file")
            images = parse_image_archive(self._files.read(spec.training_file), "training_file")
            training_captions(images, spec.extra.get("trigger_word"), "training_file")  # captions all there
        self._base_models(spec.kind, spec.base_model)
        if self._taken(spec.result_name):  # one namespace for every kind of model
            raise ModelAlreadyRegistered(
                f"A model named {spec.result_name!r} is already registered; choose another name for the result."
            )
        job = TrainingJob.create(owner, spec, self._clock.now())
        self._store.add(job)
        self._wake()
        return job

    def _taken(self, name: str) -> bool:
        for kind in ModelKind:
            try:
                self._catalog.get(name, kind)
                return True
            except UnknownModel:
                continue
        return False
