"""What a running job reports for monitoring: how long it took and how it ended, and the batches it ran in."""

from __future__ import annotations

from collections.abc import Callable
from typing import Protocol


class JobMetrics(Protocol):
    """Records facts as they happen in the process that runs jobs, and exports them with what is read at scrape."""

    def job_finished(self, mode: str, family: str, status: str, seconds: float) -> None:
        """A job ended (``status``: succeeded, failed or cancelled) after ``seconds`` of running."""

    def batch_ran(self, size: int) -> None:
        """A generator call ran ``size`` jobs together."""

    def watch_models(self, loaded: Callable[[], list[tuple[str, int]]], loads: Callable[[], int]) -> None:
        """Read at each scrape: the names and bytes of the pipelines in this process's memory, and how many it has
        loaded so far (set by a process that runs jobs)."""

    def exposition(self) -> tuple[bytes, str]:
        """Every metric's current value in the monitoring system's text format, and that format's content type."""


class TextMetrics(Protocol):
    """What the served language models record as they decode."""

    def text_batch_ran(self, model: str, size: int) -> None:
        """``size`` sequences started decoding together."""

    def text_first_token(self, model: str, seconds: float) -> None:
        """A sequence's first token came ``seconds`` after the request started it."""

    def text_sequence_ended(self, model: str, finish_reason: str, prompt_tokens: int, completion_tokens: int) -> None:
        """A sequence ended: ``stop``, ``length``, ``cancelled`` (its client went away) or ``error``."""
