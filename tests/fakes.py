"""Fakes of every port, shared by the tests. The in-memory adapters double as the
``test`` profile; the rest are test-only."""

from __future__ import annotations

import re
from collections.abc import Callable
from datetime import UTC, datetime, timedelta

from app.adapters.memory.generation import InMemoryModelCatalog, PatternImageGenerator
from app.adapters.memory.jobs import InMemoryJobReader, InMemoryJobStore, InMemoryUnitOfWorkFactory
from app.domain.errors import ImageNotFound, InvalidImage
from app.domain.jobs import ImageRef, image_id_for
from app.domain.models import ModelInfo
from app.domain.scenes import Scene
from app.ports.clock import Clock
from app.ports.generation import (
    BatchHandler,
    GeneratedImage,
    ImageStore,
    InputImage,
    JobExecutor,
    JobHandler,
    RgbImage,
)
from app.ports.scenes import SceneReader

__all__ = [
    "FakeClock",
    "FakeSceneReader",
    "InMemoryImageStore",
    "InMemoryJobReader",
    "InMemoryJobStore",
    "InMemoryModelCatalog",
    "InMemoryUnitOfWorkFactory",
    "ManualExecutor",
    "PatternImageGenerator",
    "demo_catalog",
]


class FakeClock(Clock):
    def __init__(self, start: datetime | None = None) -> None:
        self.current = start or datetime(2026, 1, 1, tzinfo=UTC)

    def now(self) -> datetime:
        self.current += timedelta(milliseconds=1)
        return self.current


class ManualExecutor(JobExecutor):
    """Records enqueued ids; ``run_all`` runs them in this thread."""

    def __init__(self) -> None:
        self.queued: list[str] = []
        self.cancelled: set[str] = set()
        self.handler: JobHandler | None = None
        self.keys: dict[str, str | None] = {}

    def start(self, handler: JobHandler, batch_handler: BatchHandler | None = None) -> None:
        self.handler = handler

    def enqueue(self, job_id: str, batch_key: str | None = None) -> None:
        self.queued.append(job_id)
        self.keys[job_id] = batch_key

    def cancel(self, job_id: str) -> None:
        self.cancelled.add(job_id)

    def wait(self, job_id: str, timeout: float | None = None) -> bool:
        return job_id not in self.queued

    def shutdown(self, wait: bool = True) -> None:
        self.queued.clear()

    def run_all(self, cancel_signal: Callable[[str], bool] | None = None) -> None:
        assert self.handler is not None
        while self.queued:
            job_id = self.queued.pop(0)
            self.handler(
                job_id, (lambda j=job_id: cancel_signal(j)) if cancel_signal else (lambda j=job_id: j in self.cancelled)
            )


class InMemoryImageStore(ImageStore):
    def __init__(self) -> None:
        self.images: dict[str, tuple[GeneratedImage, str]] = {}
        self.inputs: dict[str, InputImage] = {}

    def save(self, job_id: str, index: int, image: GeneratedImage, parameters: str) -> ImageRef:
        image_id = image_id_for(job_id, index)
        self.images[image_id] = (image, parameters)
        return ImageRef(id=image_id, seed=image.seed, width=image.width, height=image.height, nsfw=image.nsfw)

    def path(self, image_id: str) -> str:
        if image_id not in self.images:
            raise ImageNotFound(image_id)
        return f"memory://{image_id}"

    def put_input(self, data: bytes) -> InputImage:
        """Accepts ``b"WxH"`` as a picture of that size; anything else is an invalid image."""
        import hashlib

        match = re.fullmatch(rb"(\d+)x(\d+)", data)
        if match is None:
            raise InvalidImage("not an image")
        input_id = "upload-" + hashlib.sha256(data).hexdigest()[:32]
        self.inputs[input_id] = InputImage(input_id, int(match.group(1)), int(match.group(2)), f"memory://{input_id}")
        return self.inputs[input_id]

    def input_image(self, input_id: str) -> InputImage:
        if input_id not in self.inputs:
            raise ImageNotFound(input_id)
        return self.inputs[input_id]

    def delete_job(self, job_id: str) -> None:
        for image_id in [i for i in self.images if i.startswith(f"{job_id}-")]:
            del self.images[image_id]


def demo_catalog() -> InMemoryModelCatalog:
    return InMemoryModelCatalog([ModelInfo(name="demo", path="memory://demo", source="memory://demo", default_size=64)])


class FakeSceneReader(SceneReader):
    """Sees the scenes it was told, keyed by the image's exact pixels; an empty gray scene otherwise."""

    def __init__(self) -> None:
        self.scenes: dict[bytes, Scene] = {}

    def teach(self, image: RgbImage, scene: Scene) -> None:
        self.scenes[image.rgb] = scene

    def read(self, image: RgbImage) -> Scene:
        return self.scenes.get(image.rgb, Scene(objects=(), background="gray"))
