"""Chat and text completions from the served language model (the one knowledge queries use and edits change).

A request names the model (its name, or the ``llm`` setting it was configured by): ``NAME`` is the model as edited
now (the logged edits are restored first, as for knowledge queries), ``NAME@base`` the original. It gives messages
or a prompt and its sampling, and gets ``n`` streams that decode together with whatever else is running. Nothing
is stored.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field

from app.domain.chat import ChatMessage, Sampling, TokenLogprob, check_messages
from app.domain.errors import InvalidParameters, RequestTooLarge, UnknownModel
from app.ports.text_generation import TextGenerator, TokenStream


@dataclass(frozen=True)
class TextRun:
    model: str
    prompt_tokens: int
    streams: list[TokenStream]

    def cancel(self) -> None:
        for stream in self.streams:
            stream.cancel()


@dataclass
class Choice:
    """One finished sequence of a run."""

    index: int
    text: str = ""
    finish_reason: str = "stop"
    completion_tokens: int = 0
    logprobs: list[TokenLogprob] = field(default_factory=list)


class CompleteText:
    def __init__(
        self,
        generator: Callable[[], TextGenerator],
        aliases: Iterable[str] = (),
        restore: Callable[[], object] | None = None,
    ) -> None:
        self._generator = generator
        self._aliases = {a for a in aliases if a}
        self._restore = restore  # brings the model to the logged chain of edits (after a restart, a rollback)

    def models(self) -> list[str]:
        """The names a request may give (the served model's own name first), variants included."""
        generator = self._generator()
        names = [generator.name, *sorted(self._aliases - {generator.name})]
        return names + [f"{generator.name}@{variant}" for variant in generator.variants if variant]

    def chat(self, model: str, messages: Sequence[ChatMessage], sampling: Sampling) -> TextRun:
        generator, variant = self._served(model)
        prompt = generator.chat_prompt(check_messages(list(messages)))
        return self._run(generator, prompt, sampling, "messages", variant)

    def complete(self, model: str, prompt: str, sampling: Sampling) -> TextRun:
        if not prompt:
            raise InvalidParameters("prompt must not be empty.", field="prompt")
        generator, variant = self._served(model)
        return self._run(generator, generator.text_prompt(prompt), sampling, "prompt", variant)

    @staticmethod
    def collect(run: TextRun) -> list[Choice]:
        """Wait for every sequence of the run to end (they decode together)."""
        choices = []
        for index, stream in enumerate(run.streams):
            choice = Choice(index)
            parts = []
            for delta in stream:
                parts.append(delta.text)
                choice.logprobs += delta.logprobs
                choice.completion_tokens = delta.completion_tokens or choice.completion_tokens
                if delta.finish_reason is not None:
                    choice.finish_reason = delta.finish_reason
            choice.text = "".join(parts)
            choices.append(choice)
        return choices

    def _served(self, model: str) -> tuple[TextGenerator, str]:
        generator = self._generator()
        name, _, variant = model.partition("@")
        if (name != generator.name and name not in self._aliases) or variant not in generator.variants:
            names = ", ".join(self.models())
            raise UnknownModel(f"The model {model!r} does not exist; this server has {names}.", code="model_not_found")
        if self._restore is not None:
            self._restore()
        return generator, variant

    @staticmethod
    def _run(
        generator: TextGenerator, prompt: list[int], sampling: Sampling, field_name: str, variant: str = ""
    ) -> TextRun:
        context = generator.context_length
        wanted = len(prompt) + (sampling.max_tokens or 1)
        if context is not None and wanted > context:
            raise RequestTooLarge(
                f"This model's maximum context length is {context} tokens; the request needs {wanted} "
                f"({len(prompt)} in the {field_name}, {sampling.max_tokens or 1} to generate).",
                code="context_length_exceeded",
                field=field_name,
            )
        streams = [generator.start(prompt, sampling, choice, variant) for choice in range(sampling.n)]
        return TextRun(f"{generator.name}@{variant}" if variant else generator.name, len(prompt), streams)
