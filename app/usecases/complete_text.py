"""Chat and text completions from the served language model (the one knowledge queries use and edits change).

A request names the model (its name, or the ``llm`` setting it was configured by): ``NAME`` is the model as edited
now (the logged edits are restored first, as for knowledge queries), ``NAME@base`` the original, ``NAME:ADAPTER``
the model with a registered LoRA adapter applied to this request's sequences alone, ``NAME+knowledge`` the answer of
the GECE-gated knowledge flow to the last user message (retrieving only for long-tail questions). Another registered
language model (``atelier models add NAME PATH --kind llm``) is served by its name too, loaded on first use, never
edited. A request gives messages or a prompt and its sampling, and gets ``n`` streams that decode together with
whatever else is running. Nothing is stored but a knowledge query.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field

from app.domain.chat import ChatMessage, Sampling, TokenLogprob, check_messages
from app.domain.errors import InvalidParameters, RequestTooLarge, UnknownModel
from app.domain.knowledge import KnowledgeQuery
from app.domain.models import ModelInfo, ModelKind
from app.ports.generation import ModelCatalog
from app.ports.text_generation import TextGenerator, TextModels, TokenStream
from app.usecases.ask_question import AskQuestion, Retrieval


@dataclass(frozen=True)
class TextRun:
    model: str
    prompt_tokens: int
    streams: list[TokenStream]

    def cancel(self) -> None:
        for stream in self.streams:
            stream.cancel()


KNOWLEDGE = "+knowledge"


@dataclass(frozen=True)
class KnowledgeAnswer:
    model: str
    query: KnowledgeQuery  # the stored query: its decision, passages and signals
    prompt_tokens: int  # of the messages through the chat template
    completion_tokens: int  # of the answer


@dataclass(frozen=True)
class ServedModel:
    """A name a chat or completion request may give."""

    id: str
    kind: ModelKind  # LLM, or LLM_LORA for ``NAME:ADAPTER``
    parent: str | None = None  # the model a variant or an adapter applies to
    info: ModelInfo | None = None  # the registered model or adapter
    default: bool = False  # the model knowledge queries use and edits change


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
        restore: Callable[[], Callable[[], object]] | None = None,
        catalog: ModelCatalog | None = None,
        others: Callable[[], TextModels] | None = None,
        default_name: str | None = None,
        ask: Callable[[], AskQuestion] | None = None,
    ) -> None:
        self._generator = generator
        self._aliases = {a for a in aliases if a}
        # Makes the step that brings the model to the logged chain of edits (after a restart, a rollback); made when
        # a request runs, so that listing the models loads none.
        self._restore = restore
        self._catalog = catalog  # registered language models and LLM adapters
        self._others = others
        self._default_name = default_name  # known without loading the model
        self._ask = ask  # the knowledge flow, for NAME+knowledge

    def listing(self) -> list[ServedModel]:
        """What a client may name, without loading any model: the default model and its unedited variant, the
        other registered language models, and each LLM adapter on the model it was trained from (the default model
        when that is not a registered one)."""
        name = self._default_name or self._generator().name
        entries = [ServedModel(name, ModelKind.LLM, info=self._registered(name, ModelKind.LLM), default=True)]
        if self._restore is not None:  # edits are wired: the unedited variant exists
            entries.append(ServedModel(f"{name}@base", ModelKind.LLM, parent=name))
        if self._ask is not None:
            entries.append(ServedModel(f"{name}{KNOWLEDGE}", ModelKind.LLM, parent=name))
        if self._catalog is not None:
            entries += [ServedModel(m.name, ModelKind.LLM, info=m) for m in self._catalog.list(ModelKind.LLM)]
            entries = [e for i, e in enumerate(entries) if e.id not in {x.id for x in entries[:i]}]
            # An adapter is listed on the registered model it was trained from (its recorded base), else the default.
            bases = {m.path: m.name for m in self._catalog.list(ModelKind.LLM)}
            for a in self._catalog.list(ModelKind.LLM_LORA):
                base = bases.get(a.base_model or "", name)
                entries.append(ServedModel(f"{base}:{a.name}", ModelKind.LLM_LORA, parent=base, info=a))
        return entries

    def models(self) -> list[str]:
        """The names a request may give (the default model's own name first), variants and adapters included."""
        generator = self._generator()
        names = [generator.name, *sorted(self._aliases - {generator.name})]
        names += [f"{generator.name}@{variant}" for variant in generator.variants if variant]
        if self._catalog is not None:
            names += [m.name for m in self._catalog.list(ModelKind.LLM) if m.name != generator.name]
            names += [f"{generator.name}:{m.name}" for m in self._catalog.list(ModelKind.LLM_LORA)]
        return names

    def chat(self, model: str, messages: Sequence[ChatMessage], sampling: Sampling) -> TextRun:
        checked = check_messages(list(messages))
        served = self._served(model)
        return self._run(served, served.generator.chat_prompt(checked), sampling, "messages")

    def complete(self, model: str, prompt: str, sampling: Sampling) -> TextRun:
        if not prompt:
            raise InvalidParameters("prompt must not be empty.", field="prompt")
        served = self._served(model)
        return self._run(served, served.generator.text_prompt(prompt), sampling, "prompt")

    def ask(
        self,
        model: str,
        messages: Sequence[ChatMessage],
        owner: str,
        retrieval: Retrieval = "auto",
        top_k: int = 5,
    ) -> KnowledgeAnswer:
        """``NAME+knowledge``: the last message (a user's) as a knowledge query of ``owner``'s documents and the
        shared ones, answered by the default model as edited now; the query is stored as any other. Raises
        ``NotCalibrated`` with ``retrieval="auto"`` before the detector was calibrated."""
        checked = check_messages(list(messages))
        name = model.removesuffix(KNOWLEDGE)
        generator = self._generator()
        if self._ask is None or (name != generator.name and name not in self._aliases):
            raise self._unknown(model)
        if checked[-1].role != "user":
            raise InvalidParameters(
                f"With {KNOWLEDGE}, the last message is the question: it must be a user's.", field="messages"
            )
        query = self._ask()(checked[-1].content, owner, top_k=top_k, retrieval=retrieval)
        return KnowledgeAnswer(
            model=f"{generator.name}{KNOWLEDGE}",
            query=query,
            prompt_tokens=len(generator.chat_prompt(checked)),
            completion_tokens=generator.count_tokens(query.answer),
        )

    @staticmethod
    def is_knowledge(model: str) -> bool:
        return model.endswith(KNOWLEDGE)

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

    def _served(self, model: str) -> _Served:
        """``NAME[@VARIANT][:ADAPTER]`` as the generator that serves it; raises ``UnknownModel``."""
        head, _, adapter_name = model.partition(":")
        name, _, variant = head.partition("@")
        generator = self._generator()
        default = name == generator.name or name in self._aliases
        if not default:
            other = self._registered(name, ModelKind.LLM)
            if other is None or self._others is None:
                raise self._unknown(model)
            generator = self._others().get(other)
        if variant not in generator.variants:
            raise self._unknown(model)
        adapter = None
        if adapter_name:
            adapter = self._registered(adapter_name, ModelKind.LLM_LORA)
            if adapter is None:
                raise UnknownModel(
                    f"The adapter {adapter_name!r} does not exist; register it with "
                    f"`atelier models add {adapter_name} FOLDER --kind llm-lora`.",
                    code="model_not_found",
                )
        if default and self._restore is not None:
            self._restore()()
        label = generator.name + (f"@{variant}" if variant else "") + (f":{adapter_name}" if adapter_name else "")
        return _Served(generator, variant, adapter, label)

    def _registered(self, name: str, kind: ModelKind) -> ModelInfo | None:
        if self._catalog is None or not name:
            return None
        try:
            return self._catalog.get(name, kind)
        except (UnknownModel, InvalidParameters):
            return None

    def _unknown(self, model: str) -> UnknownModel:
        names = ", ".join(self.models())
        return UnknownModel(f"The model {model!r} does not exist; this server has {names}.", code="model_not_found")

    @staticmethod
    def _run(served: _Served, prompt: list[int], sampling: Sampling, field_name: str) -> TextRun:
        generator = served.generator
        context = generator.context_length
        wanted = len(prompt) + (sampling.max_tokens or 1)
        if context is not None and wanted > context:
            raise RequestTooLarge(
                f"This model's maximum context length is {context} tokens; the request needs {wanted} "
                f"({len(prompt)} in the {field_name}, {sampling.max_tokens or 1} to generate).",
                code="context_length_exceeded",
                field=field_name,
            )
        streams: list[TokenStream] = []
        try:
            for choice in range(sampling.n):
                streams.append(generator.start(prompt, sampling, choice, served.variant, served.adapter))
        except Exception:
            for stream in streams:
                stream.cancel()
            raise
        return TextRun(served.label, len(prompt), streams)


@dataclass(frozen=True)
class _Served:
    generator: TextGenerator
    variant: str
    adapter: ModelInfo | None
    label: str  # the model as the reply names it
