"""Text generation as a service: chat messages, sampling settings and what a generated sequence reports.

The names and limits follow OpenAI's chat and completions APIs, which clients already speak: ``max_tokens``,
``temperature`` (0: greedy), ``top_p``, ``seed``, up to four ``stop`` strings, ``n`` choices, ``logprobs`` with up to
20 ``top_logprobs``.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from app.domain.errors import InvalidParameters

ROLES = ("system", "user", "assistant", "developer")
MAX_CHOICES = 8
MAX_STOPS = 4
MAX_TOP_LOGPROBS = 20


@dataclass(frozen=True)
class ChatMessage:
    role: str
    content: str

    def __post_init__(self) -> None:
        if self.role not in ROLES:
            raise InvalidParameters(
                f"A message's role must be one of {', '.join(ROLES)}, got {self.role!r}.", field="messages"
            )


def check_messages(messages: list[ChatMessage]) -> list[ChatMessage]:
    if not messages:
        raise InvalidParameters("messages must hold at least one message.", field="messages")
    if all(m.role in ("system", "developer") for m in messages):
        raise InvalidParameters("messages need a user or assistant message to answer.", field="messages")
    return messages


@dataclass(frozen=True)
class Sampling:
    """How to draw tokens. ``max_tokens`` None: up to the model's context. ``seed`` None: a fresh draw each time;
    with a seed, the same request gives the same tokens (choice ``i`` draws with ``seed + i``)."""

    max_tokens: int | None = None
    temperature: float = 1.0
    top_p: float = 1.0
    seed: int | None = None
    stop: tuple[str, ...] = ()
    n: int = 1
    logprobs: bool = False
    top_logprobs: int = 0

    def __post_init__(self) -> None:
        if self.max_tokens is not None and self.max_tokens < 1:
            raise InvalidParameters("max_tokens must be at least 1.", field="max_tokens")
        if not 0.0 <= self.temperature <= 2.0:
            raise InvalidParameters("temperature must lie in [0, 2].", field="temperature")
        if not 0.0 < self.top_p <= 1.0:
            raise InvalidParameters("top_p must lie in (0, 1].", field="top_p")
        if not 1 <= self.n <= MAX_CHOICES:
            raise InvalidParameters(f"n must lie between 1 and {MAX_CHOICES}.", field="n")
        if len(self.stop) > MAX_STOPS or any(not s for s in self.stop):
            raise InvalidParameters(f"stop takes up to {MAX_STOPS} non-empty strings.", field="stop")
        if not 0 <= self.top_logprobs <= MAX_TOP_LOGPROBS:
            raise InvalidParameters(f"top_logprobs must lie between 0 and {MAX_TOP_LOGPROBS}.", field="top_logprobs")
        if self.top_logprobs and not self.logprobs:
            raise InvalidParameters("top_logprobs needs logprobs to be true.", field="top_logprobs")

    @property
    def greedy(self) -> bool:
        return self.temperature == 0.0


@dataclass(frozen=True)
class TokenLogprob:
    token: str
    logprob: float
    top: tuple[tuple[str, float], ...] = ()  # the most likely tokens at this position, most likely first


@dataclass
class Delta:
    """What one sequence produced since its last delta: new text (with its tokens' log-probabilities when asked),
    and at the end why it stopped: ``stop`` (end of turn or a stop string), ``length`` (``max_tokens`` or the
    context) or ``cancelled`` (its reader cancelled it)."""

    text: str = ""
    logprobs: list[TokenLogprob] = field(default_factory=list)
    finish_reason: str | None = None
    completion_tokens: int = 0  # tokens generated so far, in all
