"""Generation without a model: deterministic pictures and an in-memory catalog."""

from __future__ import annotations

import hashlib
import threading
import time

from app.domain.errors import JobCancelled, ModelAlreadyRegistered, UnknownModel
from app.domain.generation import GenerationParams
from app.domain.models import ModelInfo, ModelKind
from app.ports.generation import GeneratedImage, GenerationRequest, ImageGenerator, ModelCatalog, ProgressSink


class PatternImageGenerator(ImageGenerator):
    """Paints a colour gradient derived from the prompt and the seed, one step at a time.

    Deterministic (same prompt and seed give the same pixels), it reports progress and
    honours cancellation like a real pipeline; ``step_seconds`` makes it slow on purpose.
    """

    def __init__(self, step_seconds: float = 0.0) -> None:
        self.step_seconds = step_seconds
        self.calls: list[GenerationRequest] = []
        self.batches: list[int] = []  # sizes of the batched calls
        self._lock = threading.Lock()

    def generate(self, request: GenerationRequest, progress: ProgressSink) -> list[GeneratedImage]:
        params = request.params
        with self._lock:
            self.calls.append(request)
        for step in range(params.step_count):
            if self.step_seconds:
                time.sleep(self.step_seconds)
            progress.step(step + 1, params.step_count)
        assert params.width is not None and params.height is not None
        return [self._paint(params, seed) for seed in params.image_seeds()]

    def generate_batch(
        self, requests: list[GenerationRequest], progress: list[ProgressSink]
    ) -> list[list[GeneratedImage] | Exception]:
        """One after the other: the pattern of an image never depends on its batch."""
        with self._lock:
            self.batches.append(len(requests))
        outcomes: list[list[GeneratedImage] | Exception] = []
        for request, sink in zip(requests, progress, strict=True):
            try:
                outcomes.append(self.generate(request, sink))
            except JobCancelled as cancelled:
                outcomes.append(cancelled)
        return outcomes

    @staticmethod
    def _paint(params: GenerationParams, seed: int) -> GeneratedImage:
        width, height = params.width or 0, params.height or 0
        digest = hashlib.sha256(f"{params.prompt}|{params.mode}|{seed}".encode()).digest()
        r0, g0, b0 = digest[0], digest[1], digest[2]
        row = bytearray()
        pixels = bytearray()
        for y in range(height):
            row.clear()
            for x in range(width):
                row += bytes(((r0 + x) % 256, (g0 + y) % 256, (b0 + x + y) % 256))
            pixels += row
        return GeneratedImage(width=width, height=height, rgb=bytes(pixels), seed=seed, nsfw=None)


class InMemoryModelCatalog(ModelCatalog):
    """Models registered in a dict; ``add`` accepts any source without reading it."""

    def __init__(self, models: list[ModelInfo] | None = None) -> None:
        self._models = {m.name: m for m in models or []}

    def get(self, name: str, kind: ModelKind = ModelKind.BASE) -> ModelInfo:
        info = self._models.get(name)
        if info is None or info.kind is not kind:
            raise UnknownModel(f"No {kind.value} model named {name!r} is registered.")
        return info

    def list(self, kind: ModelKind | None = None) -> list[ModelInfo]:
        return [self._models[n] for n in sorted(self._models) if kind is None or self._models[n].kind is kind]

    def remove(self, name: str) -> ModelInfo:
        if name not in self._models:
            raise UnknownModel(f"No model named {name!r} is registered.")
        return self._models.pop(name)

    def add(
        self,
        name: str,
        source: str,
        *,
        kind: ModelKind = ModelKind.BASE,
        replace: bool = False,
        config: str | None = None,  # nothing is converted here
    ) -> ModelInfo:
        if name in self._models and not replace:
            raise ModelAlreadyRegistered(f"A model named {name!r} is already registered.")
        self._models[name] = ModelInfo(
            name=name, path=source, source=source, kind=kind, default_size=64, tokenizer="bert"
        )
        return self._models[name]
