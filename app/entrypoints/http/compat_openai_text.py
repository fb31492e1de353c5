"""OpenAI's text APIs over the served language model: ``POST /v1/chat/completions``, ``POST /v1/completions`` (both
with ``stream``) and ``POST /v1/embeddings`` (the knowledge embedder). The ``openai`` client works unchanged.

Concurrent requests decode together (``app/adapters/transformers/serving.py``). A sequence stops when its client goes
away, streamed or not. Errors use OpenAI's shape, ``{"error": {"message", "type", "param", "code"}}``.
"""

from __future__ import annotations

import asyncio
import base64
import json
import re
import struct
import time
import uuid
from collections.abc import AsyncIterator, Callable
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Depends, Request
from fastapi.responses import JSONResponse, StreamingResponse
from pydantic import BaseModel, ConfigDict, Field, field_validator
from starlette.concurrency import run_in_threadpool

from app.domain.chat import ChatMessage, Delta, Sampling, TokenLogprob
from app.domain.errors import InvalidParameters, UnknownModel
from app.entrypoints.http import deps
from app.entrypoints.http.compat_openai import error_reply
from app.entrypoints.http.compat_schemas import OPENAI, request_body
from app.entrypoints.library import Atelier
from app.usecases.complete_text import Choice, CompleteText, KnowledgeAnswer, TextRun

router = APIRouter(tags=["openai"])
ERRORS = (400, 404, 429, 500, 503)
CHAT_ERRORS = (400, 404, 409, 429, 500, 503)
DISCONNECT_POLL = 0.25  # seconds between checks that the client of a non-streamed reply is still there


class UsageOut(BaseModel):
    prompt_tokens: int
    completion_tokens: int = 0
    total_tokens: int


class ChatChoiceOut(BaseModel):
    index: int
    message: dict[str, Any] = Field(description='`{"role": "assistant", "content": text}`')
    logprobs: dict[str, Any] | None = Field(None, description="`{content: [{token, logprob, bytes, top_logprobs}]}`")
    finish_reason: Literal["stop", "length"]


class SourceOut(BaseModel):
    chunk_id: str
    source: str = Field(description="The ingested document the passage comes from.")
    text: str
    score: float = Field(description="Its similarity to the question.")


class KnowledgeOut(BaseModel):
    """Atelier's extension of a `NAME+knowledge` reply: how the knowledge flow answered."""

    query_id: str = Field(description="The stored knowledge query (GET /v1/knowledge/queries/{id}).")
    decision: Literal["parametric", "retrieved"] = Field(
        description="parametric: the model's own answer was trusted; retrieved: judged long-tail, answered again"
        " with the sources."
    )
    parametric_answer: str = Field(description="The model's own answer (empty when it retrieved at once).")
    gece_estimate: float | None = Field(description="The detector's estimate that the question is long-tail.")
    sources: list[SourceOut] = Field(description="The passages the answer used (empty for a parametric answer).")


class ChatCompletionOut(BaseModel):
    id: str
    object: Literal["chat.completion"]
    created: int
    model: str
    system_fingerprint: str | None = None
    choices: list[ChatChoiceOut]
    usage: UsageOut
    knowledge: KnowledgeOut | None = Field(None, description="Only for NAME+knowledge (absent otherwise).")


class CompletionChoiceOut(BaseModel):
    index: int
    text: str
    logprobs: dict[str, Any] | None = Field(None, description="`{tokens, token_logprobs, top_logprobs, text_offset}`")
    finish_reason: Literal["stop", "length"]


class CompletionOut(BaseModel):
    id: str
    object: Literal["text_completion"]
    created: int
    model: str
    choices: list[CompletionChoiceOut]
    usage: UsageOut


class EmbeddingOut(BaseModel):
    object: Literal["embedding"]
    index: int
    embedding: list[float] | str = Field(description="Floats, or base64 of little-endian float32s")


class EmbeddingsOut(BaseModel):
    object: Literal["list"]
    data: list[EmbeddingOut]
    model: str
    usage: UsageOut


class _TextPart(BaseModel):
    model_config = ConfigDict(extra="ignore")
    type: Literal["text"]
    text: str


class MessageIn(BaseModel):
    model_config = ConfigDict(extra="ignore")
    role: str
    content: str | list[_TextPart] | None = None

    def plain(self) -> str:
        if isinstance(self.content, list):
            return "".join(part.text for part in self.content)
        return self.content or ""


class StreamOptions(BaseModel):
    model_config = ConfigDict(extra="ignore")
    include_usage: bool = False


class _SamplingIn(BaseModel):
    model_config = ConfigDict(extra="ignore")
    model: str
    max_tokens: int | None = None
    temperature: float | None = None
    top_p: float | None = None
    seed: int | None = None
    stop: str | list[str] | None = None
    n: int = 1
    stream: bool = False
    stream_options: StreamOptions | None = None

    def sampling(self, max_tokens: int | None, logprobs: bool, top_logprobs: int) -> Sampling:
        stop = (self.stop,) if isinstance(self.stop, str) else tuple(self.stop or ())
        return Sampling(
            max_tokens=max_tokens,
            temperature=1.0 if self.temperature is None else self.temperature,
            top_p=1.0 if self.top_p is None else self.top_p,
            seed=self.seed,
            stop=stop,
            n=self.n,
            logprobs=logprobs,
            top_logprobs=top_logprobs,
        )


class ChatIn(_SamplingIn):
    """OpenAI's chat completion request; `tools`, `response_format`, `user` and the like are ignored. `retrieval` and
    `top_k` are Atelier's own, for `NAME+knowledge` (the `openai` client sends them in `extra_body`)."""

    messages: list[MessageIn]
    max_completion_tokens: int | None = None
    logprobs: bool = False
    top_logprobs: int | None = None
    retrieval: Literal["auto", "always", "never"] = Field(
        "auto",
        description="NAME+knowledge only: auto (the calibrated detector decides), always or never retrieve.",
    )
    top_k: int = Field(5, description="NAME+knowledge only: passages retrieved for a long-tail question (1-50).")


class CompletionIn(_SamplingIn):
    """OpenAI's (legacy) completion request: `logprobs` is the number of top tokens to report (0-5)."""

    prompt: str | list[str]
    logprobs: int | None = None
    echo: bool = False

    @field_validator("echo")
    @classmethod
    def _no_echo(cls, value: bool) -> bool:
        if value:
            raise ValueError("echo is not supported")
        return value


class EmbeddingsIn(BaseModel):
    model_config = ConfigDict(extra="ignore")
    input: str | list[str] = Field(description="A text or a list of texts (token arrays are not taken).")
    model: str
    encoding_format: Literal["float", "base64"] = "float"
    dimensions: int | None = None


async def _body(request: Request) -> Any:
    raw = await request.body()
    try:
        return json.loads(raw)
    except ValueError:
        raise InvalidParameters("The body is not valid JSON.", code="invalid_json") from None


Body = Annotated[Any, Depends(_body)]
AtelierDep = Annotated[Atelier, Depends(deps.atelier)]


def _use(atelier: Atelier) -> CompleteText:
    complete: CompleteText = atelier.container.complete_text()
    return complete


def _usage(prompt_tokens: int, completion_tokens: int) -> dict[str, int]:
    return {
        "prompt_tokens": prompt_tokens,
        "completion_tokens": completion_tokens,
        "total_tokens": prompt_tokens + completion_tokens,
    }


def _chat_logprobs(entries: list[TokenLogprob]) -> dict[str, Any]:
    def one(token: str, logprob: float) -> dict[str, Any]:
        return {"token": token, "logprob": logprob, "bytes": list(token.encode())}

    return {"content": [one(e.token, e.logprob) | {"top_logprobs": [one(t, lp) for t, lp in e.top]} for e in entries]}


def _completion_logprobs(entries: list[TokenLogprob], offset: int = 0) -> dict[str, Any]:
    offsets, at = [], offset
    for entry in entries:
        offsets.append(at)
        at += len(entry.token)
    return {
        "tokens": [e.token for e in entries],
        "token_logprobs": [e.logprob for e in entries],
        "top_logprobs": [dict(e.top) for e in entries],
        "text_offset": offsets,
    }


async def _merged(runs: list[TextRun]) -> AsyncIterator[tuple[int, Delta]]:
    """Every stream's deltas as they come, tagged with the choice index (streams of all runs, in order)."""
    streams = [stream for run in runs for stream in run.streams]
    queue: asyncio.Queue[tuple[int, Delta] | BaseException | None] = asyncio.Queue()

    async def pump(index: int, stream: Any) -> None:
        try:
            async for delta in stream:
                await queue.put((index, delta))
        except Exception as error:  # delivered to the reader, which ends the response
            await queue.put(error)
        finally:
            await queue.put(None)

    tasks = [asyncio.create_task(pump(i, s)) for i, s in enumerate(streams)]
    try:
        left = len(tasks)
        while left:
            item = await queue.get()
            if item is None:
                left -= 1
            elif isinstance(item, BaseException):
                raise item
            else:
                yield item
    finally:
        for run in runs:
            run.cancel()  # a client that went away: the sequences stop at their next token
        for task in tasks:
            task.cancel()


async def _collected(runs: list[TextRun], request: Request) -> list[Choice]:
    """Every run's choices once all their sequences end (a non-streamed reply); a client that goes away
    meanwhile stops them at their next token, as a closed stream does."""

    def collect() -> list[Choice]:
        return [choice for run in runs for choice in CompleteText.collect(run)]

    work = asyncio.ensure_future(run_in_threadpool(collect))
    while not work.done():
        await asyncio.wait({work}, timeout=DISCONNECT_POLL)
        if not work.done() and await request.is_disconnected():
            for run in runs:
                run.cancel()
            break
    return await work


def _sse(chunks: Callable[[], AsyncIterator[dict[str, Any]]]) -> StreamingResponse:
    async def lines() -> AsyncIterator[str]:
        try:
            async for chunk in chunks():
                yield f"data: {json.dumps(chunk, ensure_ascii=False)}\n\n"
        except Exception as error:  # after the headers: the error goes in the stream, in OpenAI's shape
            yield f"data: {bytes(error_reply(error).body).decode()}\n\n"
        yield "data: [DONE]\n\n"

    headers = {"Cache-Control": "no-cache", "X-Accel-Buffering": "no"}
    return StreamingResponse(lines(), media_type="text/event-stream", headers=headers)


@router.post(
    "/v1/chat/completions",
    summary="OpenAI-style chat completion (streamed with `stream`)",
    openapi_extra=request_body(ChatIn),
    **OPENAI.answers(
        ChatCompletionOut, "A `chat.completion`, or with `stream` its chunks as server-sent events.", *CHAT_ERRORS
    ),
)
async def chat_completions(body: Body, atelier: AtelierDep, request: Request) -> Any:
    """The served language model's reply to `messages`, through its chat template: `max_tokens` (or
    `max_completion_tokens`), `temperature` (0: greedy), `top_p`, `seed`, `stop`, `n` (up to 8), `logprobs` and
    `top_logprobs`, `stream` with `stream_options.include_usage`. `model`: `GET /v1/models` lists the names:
    `NAME` (as edited now), `NAME@base` (without the edits), `NAME:ADAPTER` (with an LLM adapter), another
    registered language model, or `NAME+knowledge`: the last user message answered by the knowledge flow, which
    retrieves from the key's documents and the shared ones only when the calibrated detector judges the question
    long-tail (`retrieval`, `top_k`); it answers greedily and adds `knowledge` to the reply: the stored query's id,
    the decision, the sources and the model's own answer (a model without a calibration retrieves when a token of
    its own answer had a probability below 0.5)."""
    try:
        owner = deps.owner(request)
        chat = ChatIn.model_validate(body)
        sampling = chat.sampling(chat.max_completion_tokens or chat.max_tokens, chat.logprobs, chat.top_logprobs or 0)
        messages = [ChatMessage(m.role, m.plain()) for m in chat.messages]
        if CompleteText.is_knowledge(chat.model):
            if chat.n != 1:
                raise InvalidParameters("n must be 1 with +knowledge: the knowledge flow answers once.", field="n")
            answer = await run_in_threadpool(_use(atelier).ask, chat.model, messages, owner, chat.retrieval, chat.top_k)
            return _knowledge_reply(
                answer, chat.stream, bool(chat.stream_options and chat.stream_options.include_usage)
            )
        run = await run_in_threadpool(_use(atelier).chat, chat.model, messages, sampling)
    except Exception as error:
        return error_reply(error)
    ident, created = f"chatcmpl-{uuid.uuid4().hex}", int(time.time())
    head = {"id": ident, "created": created, "model": run.model, "system_fingerprint": None}
    if not chat.stream:
        try:
            choices = await _collected([run], request)
        except Exception as error:
            return error_reply(error)
        return JSONResponse(
            head
            | {
                "object": "chat.completion",
                "choices": [
                    {
                        "index": c.index,
                        "message": {"role": "assistant", "content": c.text},
                        "logprobs": _chat_logprobs(c.logprobs) if sampling.logprobs else None,
                        "finish_reason": c.finish_reason,
                    }
                    for c in choices
                ],
                "usage": _usage(run.prompt_tokens, sum(c.completion_tokens for c in choices)),
            }
        )
    usage_wanted = bool(chat.stream_options and chat.stream_options.include_usage)

    async def chunks() -> AsyncIterator[dict[str, Any]]:
        chunk = head | {"object": "chat.completion.chunk"} | ({"usage": None} if usage_wanted else {})
        for index in range(len(run.streams)):
            opening = {"role": "assistant", "content": ""}
            yield chunk | {"choices": [{"index": index, "delta": opening, "logprobs": None, "finish_reason": None}]}
        produced = [0] * len(run.streams)
        async for index, delta in _merged([run]):
            produced[index] = delta.completion_tokens or produced[index]
            logprobs = _chat_logprobs(delta.logprobs) if sampling.logprobs and delta.logprobs else None
            content = {"content": delta.text} if delta.text else {}
            entry = {"index": index, "delta": content, "logprobs": logprobs, "finish_reason": delta.finish_reason}
            yield chunk | {"choices": [entry]}
        if usage_wanted:
            yield chunk | {"choices": [], "usage": _usage(run.prompt_tokens, sum(produced))}

    return _sse(chunks)


def _knowledge_reply(answer: KnowledgeAnswer, stream: bool, usage_wanted: bool) -> Any:
    """A chat completion (or its chunks) of a knowledge query's answer, with the query in ``knowledge``."""
    query = answer.query
    knowledge = {
        "query_id": query.id,
        "decision": query.decision.value,
        "parametric_answer": query.parametric_answer,
        "gece_estimate": query.signals.gece_estimate,
        "sources": [
            {"chunk_id": p.chunk_id, "source": p.source, "text": p.text, "score": p.score} for p in query.passages
        ],
    }
    head = {
        "id": f"chatcmpl-{uuid.uuid4().hex}",
        "created": int(time.time()),
        "model": answer.model,
        "system_fingerprint": None,
    }
    usage = _usage(answer.prompt_tokens, answer.completion_tokens)
    message = {"role": "assistant", "content": query.answer}
    if not stream:
        choice = {"index": 0, "message": message, "logprobs": None, "finish_reason": "stop"}
        return JSONResponse(
            head | {"object": "chat.completion", "choices": [choice], "usage": usage} | {"knowledge": knowledge}
        )

    async def chunks() -> AsyncIterator[dict[str, Any]]:  # the answer is whole already: one chunk carries it
        chunk = head | {"object": "chat.completion.chunk"} | ({"usage": None} if usage_wanted else {})
        entry = {"index": 0, "delta": message, "logprobs": None, "finish_reason": None}
        yield chunk | {"choices": [entry], "knowledge": knowledge}
        yield chunk | {"choices": [{"index": 0, "delta": {}, "logprobs": None, "finish_reason": "stop"}]}
        if usage_wanted:
            yield chunk | {"choices": [], "usage": usage}

    return _sse(chunks)


@router.post(
    "/v1/completions",
    summary="OpenAI-style text completion (streamed with `stream`)",
    openapi_extra=request_body(CompletionIn),
    **OPENAI.answers(CompletionOut, "A `text_completion`, or with `stream` its chunks as server-sent events.", *ERRORS),
)
async def completions(body: Body, atelier: AtelierDep, request: Request) -> Any:
    """The served model's continuation of `prompt` (a text, or a list: `n` choices for each), with the sampling
    fields of chat completions; `logprobs` is the number of top tokens to report per position (0-5)."""
    runs: list[TextRun] = []
    try:
        deps.owner(request)
        given = CompletionIn.model_validate(body)
        if given.logprobs is not None and not 0 <= given.logprobs <= 5:
            raise InvalidParameters("logprobs must lie between 0 and 5.", field="logprobs")
        sampling = given.sampling(given.max_tokens or 16, given.logprobs is not None, given.logprobs or 0)
        prompts = [given.prompt] if isinstance(given.prompt, str) else given.prompt
        if not prompts:
            raise InvalidParameters("prompt must hold at least one text.", field="prompt")
        use = _use(atelier)
        for text in prompts:
            runs.append(await run_in_threadpool(use.complete, given.model, text, sampling))
    except Exception as error:
        for run in runs:  # a later prompt was refused: the ones started stop
            run.cancel()
        return error_reply(error)
    ident, created = f"cmpl-{uuid.uuid4().hex}", int(time.time())
    head = {"id": ident, "object": "text_completion", "created": created, "model": runs[0].model}
    prompt_tokens = sum(run.prompt_tokens for run in runs)
    if not given.stream:
        try:
            found = await _collected(runs, request)
        except Exception as error:
            return error_reply(error)
        choices = [
            {
                "index": i,
                "text": c.text,
                "logprobs": _completion_logprobs(c.logprobs) if sampling.logprobs else None,
                "finish_reason": c.finish_reason,
            }
            for i, c in enumerate(found)
        ]
        usage = _usage(prompt_tokens, sum(c.completion_tokens for c in found))
        return JSONResponse(head | {"choices": choices, "usage": usage})
    usage_wanted = bool(given.stream_options and given.stream_options.include_usage)

    async def chunks() -> AsyncIterator[dict[str, Any]]:
        produced: dict[int, int] = {}
        offsets: dict[int, int] = {}
        async for index, delta in _merged(runs):
            produced[index] = delta.completion_tokens or produced.get(index, 0)
            logprobs = None
            if sampling.logprobs:
                logprobs = _completion_logprobs(delta.logprobs, offsets.get(index, 0))
            offsets[index] = offsets.get(index, 0) + len(delta.text)
            entry = {"index": index, "text": delta.text, "logprobs": logprobs, "finish_reason": delta.finish_reason}
            yield head | {"choices": [entry]} | ({"usage": None} if usage_wanted else {})
        if usage_wanted:
            yield head | {"choices": [], "usage": _usage(prompt_tokens, sum(produced.values()))}

    return _sse(chunks)


_WORD = re.compile(r"[\u3400-\u9fff]|[^\s\u3400-\u9fff]+")


@router.post(
    "/v1/embeddings",
    summary="OpenAI-style embeddings (the knowledge embedder)",
    openapi_extra=request_body(EmbeddingsIn),
    **OPENAI.answers(EmbeddingsOut, "A list of `embedding` objects, as floats or base64.", *ERRORS),
)
async def embeddings(body: Body, atelier: AtelierDep, request: Request) -> Any:
    """L2-normalised embeddings of `input` (a text or up to 256 texts) from the embedder knowledge queries use,
    as `query:` texts (the symmetric use of E5 models). `encoding_format` `base64` gives little-endian float32s.
    `usage.prompt_tokens` counts words and CJK characters."""
    try:
        deps.owner(request)
        given = EmbeddingsIn.model_validate(body)
        texts = [given.input] if isinstance(given.input, str) else given.input
        if not texts or len(texts) > 256 or any(not t for t in texts):
            raise InvalidParameters("input takes 1 to 256 non-empty texts.", field="input")
        embedder = atelier.container.embedder()
        if given.model != embedder.name:
            raise UnknownModel(
                f"The model {given.model!r} does not exist; embeddings come from {embedder.name}.",
                code="model_not_found",
            )
        if given.dimensions is not None and given.dimensions != embedder.dim:
            raise InvalidParameters(f"{embedder.name} gives {embedder.dim} dimensions.", field="dimensions")
        vectors = await run_in_threadpool(embedder.embed, texts, "query")
    except Exception as error:
        return error_reply(error)

    def encoded(vector: list[float]) -> list[float] | str:
        if given.encoding_format == "float":
            return vector
        return base64.b64encode(struct.pack(f"<{len(vector)}f", *vector)).decode()

    tokens = sum(len(_WORD.findall(t)) for t in texts)
    data = [{"object": "embedding", "index": i, "embedding": encoded(v)} for i, v in enumerate(vectors)]
    return JSONResponse(
        {
            "object": "list",
            "data": data,
            "model": embedder.name,
            "usage": {"prompt_tokens": tokens, "total_tokens": tokens},
        }
    )
