"""Registered language models besides the default one, loaded on a request's first use (as Ollama does).

At most ``keep`` of them stay in memory: loading one more unloads the one unused for longest, unless it is still
decoding (then the pool holds one more until it is idle). The default model (the one knowledge queries use and edits
change) is not in the pool and never unloaded.
"""

from __future__ import annotations

import gc
import threading
from collections import OrderedDict

import torch

from app.adapters.transformers.llm import TransformersLanguageModel
from app.adapters.transformers.serving import BatchedTextGenerator
from app.domain.models import ModelInfo
from app.ports.metrics import TextMetrics
from app.ports.text_generation import TextGenerator, TextModels


class LoadedTextModels(TextModels):
    def __init__(
        self, device: str = "cpu", keep: int = 1, dtype: str = "auto", metrics: TextMetrics | None = None
    ) -> None:
        self._device, self._keep, self._dtype, self._metrics = device, max(keep, 1), dtype, metrics
        self._loaded: OrderedDict[str, tuple[str, BatchedTextGenerator]] = OrderedDict()
        self._lock = threading.Lock()
        self.loads = 0  # models loaded so far (for tests and metrics)

    def get(self, model: ModelInfo) -> TextGenerator:
        with self._lock:
            held = self._loaded.get(model.name)
            if held is not None and held[0] == model.path:
                self._loaded.move_to_end(model.name)
                return held[1]
            if held is not None:  # re-registered under the same name with other weights
                self._unload(model.name)
            lm = TransformersLanguageModel(model.path, name=model.name, device=self._device, dtype=self._dtype)
            generator = BatchedTextGenerator(lm, metrics=self._metrics)
            self._loaded[model.name] = (model.path, generator)
            self.loads += 1
            for name in [n for n, (_, g) in self._loaded.items() if n != model.name and not g.busy]:
                if len(self._loaded) <= self._keep:
                    break
                self._unload(name)
            return generator

    def loaded(self) -> list[str]:
        with self._lock:
            return list(self._loaded)

    def close(self) -> None:
        with self._lock:
            for name in list(self._loaded):
                self._unload(name)

    def _unload(self, name: str) -> None:
        _, generator = self._loaded.pop(name)
        generator.close()
        del generator
        gc.collect()
        if torch.cuda.is_available():
            torch.cuda.empty_cache()
