"""Serving a language model to many clients at once: prompts in, streams of generated text out."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator, Sequence
from typing import Protocol

from app.domain.chat import ChatMessage, Delta, Sampling
from app.domain.models import ModelInfo


class TokenStream(Protocol):
    """One generated sequence, delta by delta, until a delta with a ``finish_reason``; read it from a thread
    (``for``) or an event loop (``async for``) without holding a thread while it waits."""

    def __iter__(self) -> Iterator[Delta]: ...

    def __aiter__(self) -> AsyncIterator[Delta]: ...

    def cancel(self) -> None:
        """Stop the sequence at its next token (a client went away); its stream ends."""


class TextGenerator(Protocol):
    """A served causal language model. Sequences started close together decode together, in one batch."""

    name: str
    context_length: int | None  # tokens of prompt and answer together, when the model has a limit
    variants: tuple[str, ...]  # "" (the model as edited now) and, where edits can be turned off, "base"

    def chat_prompt(self, messages: Sequence[ChatMessage]) -> list[int]:
        """The token ids the model continues for these messages (its chat template, the assistant's turn next)."""

    def text_prompt(self, text: str) -> list[int]:
        """The token ids of a plain prompt."""

    def count_tokens(self, text: str) -> int:
        """How many tokens ``text`` is, without special tokens."""

    def start(
        self,
        prompt: list[int],
        sampling: Sampling,
        choice: int = 0,
        variant: str = "",
        adapter: ModelInfo | None = None,
    ) -> TokenStream:
        """Generate one sequence after ``prompt`` (``choice``: its index among the request's ``n``, for the seed),
        from the model as edited now or, with ``variant`` ``base``, as the original; with ``adapter`` (a registered
        LLM LoRA) applied to this sequence alone. Raises ``InvalidParameters`` (``adapter_mismatch``) when the
        adapter does not fit the model."""


class TextModels(Protocol):
    """Registered language models other than the one served by default, loaded when a request first names one."""

    def get(self, model: ModelInfo) -> TextGenerator:
        """The model served (loaded now if it is not); a model unused for longest may be unloaded to make room.
        Raises ``ModelUnavailable`` when it cannot be loaded."""
