"""The real ``openai`` client against a real server (test profile: a tiny random Llama and the hashing embedder):
chat and text completions, plain and streamed, embeddings as floats and base64, and OpenAI-shaped errors."""

from __future__ import annotations

import math
import threading
import time
from collections.abc import Iterator
from typing import Any

import openai
import pytest

from tests.conftest import seed_smollm2
from tests.e2e.test_server_process import Server


@pytest.fixture(scope="module")
def client(tmp_path_factory: pytest.TempPathFactory) -> Iterator[openai.OpenAI]:
    server = Server(str(tmp_path_factory.mktemp("openai-text")), env={"ATELIER_PROFILE": "test"})
    server.start()
    try:
        yield openai.OpenAI(base_url=f"{server.url}/v1", api_key="unused", max_retries=0, timeout=60)
    finally:
        server.stop()


def model_name(client: openai.OpenAI) -> str:
    reply = client.chat.completions.create(
        model="tiny-llama", messages=[{"role": "user", "content": "hi"}], max_tokens=1
    )
    return reply.model


def test_chat_completions_plain_and_streamed_agree(client: openai.OpenAI) -> None:
    messages = [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "法国的首都是哪里？"}]
    reply = client.chat.completions.create(model="tiny-llama", messages=messages, max_tokens=12, temperature=0)
    choice = reply.choices[0]
    assert reply.object == "chat.completion" and choice.message.role == "assistant"
    assert choice.finish_reason in ("stop", "length") and choice.message.content
    assert reply.usage is not None and reply.usage.prompt_tokens > 5
    assert 1 <= reply.usage.completion_tokens <= 12
    assert reply.usage.total_tokens == reply.usage.prompt_tokens + reply.usage.completion_tokens
    stream = client.chat.completions.create(
        model="tiny-llama",
        messages=messages,
        max_tokens=12,
        temperature=0,
        stream=True,
        stream_options={"include_usage": True},
    )
    chunks = list(stream)
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text == choice.message.content
    assert [c.choices[0].finish_reason for c in chunks if c.choices and c.choices[0].finish_reason] == [
        choice.finish_reason
    ]
    assert chunks[-1].usage is not None and chunks[-1].usage.completion_tokens == reply.usage.completion_tokens


def test_seeds_n_and_logprobs(client: openai.OpenAI) -> None:
    def ask(seed: int) -> list[str]:
        reply = client.chat.completions.create(
            model="tiny-llama",
            messages=[{"role": "user", "content": "一只猫"}],
            max_tokens=10,
            temperature=1.0,
            seed=seed,
            n=3,
            logprobs=True,
            top_logprobs=2,
        )
        for choice in reply.choices:
            assert choice.logprobs is not None and choice.logprobs.content
            assert all(len(entry.top_logprobs) == 2 and entry.logprob <= 0 for entry in choice.logprobs.content)
        return [c.message.content or "" for c in reply.choices]

    first = ask(5)
    assert len(first) == 3 and ask(5) == first and len(set(first)) > 1


def test_text_completions_plain_and_streamed(client: openai.OpenAI) -> None:
    reply = client.completions.create(model="tiny-llama", prompt="The river", max_tokens=8, temperature=0, logprobs=2)
    assert reply.object == "text_completion" and reply.choices[0].text
    assert reply.choices[0].logprobs is not None and len(reply.choices[0].logprobs.tokens or []) >= 1
    streamed = client.completions.create(
        model="tiny-llama", prompt="The river", max_tokens=8, temperature=0, stream=True
    )
    assert "".join(c.choices[0].text for c in streamed if c.choices) == reply.choices[0].text


def test_embeddings_as_floats_and_base64(client: openai.OpenAI) -> None:
    name = client.embeddings.create(model="hashing-256", input="一只猫").model
    floats = client.embeddings.create(model=name, input=["一只猫", "a cat"], encoding_format="float")
    packed = client.embeddings.create(model=name, input=["一只猫", "a cat"])  # the client asks for base64
    assert [len(e.embedding) for e in floats.data] == [256, 256]
    assert [round(x, 6) for x in packed.data[0].embedding] == [round(x, 6) for x in floats.data[0].embedding]
    assert math.isclose(sum(x * x for x in floats.data[0].embedding), 1.0, rel_tol=1e-5)
    assert floats.usage.prompt_tokens > 0


def test_errors_have_openais_shape(client: openai.OpenAI) -> None:
    with pytest.raises(openai.NotFoundError) as unknown:
        client.chat.completions.create(model="gpt-4o", messages=[{"role": "user", "content": "hi"}])
    assert unknown.value.code == "model_not_found"
    with pytest.raises(openai.BadRequestError) as overflow:
        client.chat.completions.create(
            model="tiny-llama", messages=[{"role": "user", "content": "hi"}], max_tokens=100_000
        )
    assert overflow.value.code == "context_length_exceeded"
    with pytest.raises(openai.BadRequestError) as empty:
        client.chat.completions.create(model="tiny-llama", messages=[])
    assert empty.value.param == "messages"
    with pytest.raises(openai.BadRequestError) as too_many:
        client.chat.completions.create(model="tiny-llama", messages=[{"role": "user", "content": "hi"}], n=9)
    assert too_many.value.param == "n"
    with pytest.raises(openai.NotFoundError):
        client.embeddings.create(model="text-embedding-3-small", input="hi")


def test_a_client_that_leaves_mid_stream_does_not_stop_the_others(client: openai.OpenAI) -> None:
    results: dict[str, str] = {}

    def steady() -> None:
        reply = client.chat.completions.create(
            model="tiny-llama", messages=[{"role": "user", "content": "The river"}], max_tokens=40, temperature=0
        )
        results["steady"] = reply.choices[0].message.content or ""

    thread = threading.Thread(target=steady)
    thread.start()
    stream = client.chat.completions.create(
        model="tiny-llama", messages=[{"role": "user", "content": "一只猫"}], max_tokens=400, temperature=1, stream=True
    )
    for index, _chunk in enumerate(stream):
        if index == 3:
            stream.close()  # the client goes away
            break
    thread.join(60)
    alone = client.chat.completions.create(
        model="tiny-llama", messages=[{"role": "user", "content": "The river"}], max_tokens=40, temperature=0
    )
    assert results["steady"] == alone.choices[0].message.content


@pytest.mark.slow
def test_smollm2_answers_through_the_openai_client(
    tmp_path_factory: pytest.TempPathFactory, smollm2_folder: str
) -> None:
    data_dir = tmp_path_factory.mktemp("openai-smollm2")
    seed_smollm2(data_dir, smollm2_folder)
    server = Server(str(data_dir))  # the local profile: SmolLM2 from its package
    server.start()
    try:
        client = openai.OpenAI(base_url=f"{server.url}/v1", api_key="unused", max_retries=0, timeout=300)
        question = [{"role": "user", "content": "What is the capital of France?"}]
        reply = client.chat.completions.create(model="smollm2", messages=question, max_tokens=16, temperature=0)
        assert reply.model == "smollm2-135m-instruct" and "Paris" in (reply.choices[0].message.content or "")
        stream = client.chat.completions.create(
            model="smollm2-135m-instruct", messages=question, max_tokens=16, temperature=0, stream=True
        )
        assert (
            "".join(c.choices[0].delta.content or "" for c in stream if c.choices) == reply.choices[0].message.content
        )
    finally:
        server.stop()


def test_an_edit_changes_the_served_model_and_not_its_base_variant(client: openai.OpenAI) -> None:
    import httpx

    question = "What is the capital of France?"
    base_url = str(client.base_url).removesuffix("/v1/")
    messages: list[Any] = [
        {"role": "system", "content": "Give a short answer."},  # the knowledge flow's prompt, where edits are keyed
        {"role": "user", "content": question},
    ]

    def answer(model: str) -> str:
        reply = client.chat.completions.create(model=model, messages=messages, max_tokens=8, temperature=0)
        return (reply.choices[0].message.content or "").strip()

    before = answer("tiny-llama")
    applied = httpx.post(f"{base_url}/v1/edits", json={"prompt": question, "target": "Berlin"}, timeout=120)
    assert applied.status_code == 201, applied.text
    try:
        assert answer("tiny-llama") == "Berlin" != before
        assert answer("tiny-llama@base") == before
        assert client.chat.completions.create(model="tiny-llama@base", messages=messages, max_tokens=1).model == (
            "tiny-llama@base"
        )
        with pytest.raises(openai.NotFoundError):
            answer("tiny-llama@other")
    finally:
        httpx.post(f"{base_url}/v1/edits/rollback", json={"to": 0}, timeout=60)
    assert answer("tiny-llama") == before


def test_knowledge_variant_answers_through_the_knowledge_flow_with_its_sources(client: openai.OpenAI) -> None:
    import httpx

    base_url = str(client.base_url).removesuffix("/v1/")
    document = {"source": "rivers.txt", "text": "The Qiantang River flows past Hangzhou into the East China Sea."}
    ingested = httpx.post(f"{base_url}/v1/knowledge/documents", json={"documents": [document]}, timeout=60)
    assert ingested.status_code == 201, ingested.text
    assert "tiny-llama+knowledge" in [m.id for m in client.models.list()]
    messages: list[Any] = [{"role": "user", "content": "Where does the Qiantang River flow?"}]
    reply = client.chat.completions.create(
        model="tiny-llama+knowledge", messages=messages, extra_body={"retrieval": "always", "top_k": 1}
    )
    knowledge = (reply.model_extra or {})["knowledge"]
    assert reply.model == "tiny-llama+knowledge" and knowledge["decision"] == "retrieved"
    assert [s["source"] for s in knowledge["sources"]] == ["rivers.txt"] and "Qiantang" in knowledge["sources"][0][
        "text"
    ]
    stored = httpx.get(f"{base_url}/v1/knowledge/queries/{knowledge['query_id']}", timeout=30).json()
    assert stored["answer"] == reply.choices[0].message.content and reply.usage and reply.usage.completion_tokens > 0
    chunks = list(
        client.chat.completions.create(
            model="tiny-llama+knowledge", messages=messages, stream=True, extra_body={"retrieval": "always"}
        )
    )
    assert "".join(c.choices[0].delta.content or "" for c in chunks if c.choices) == reply.choices[0].message.content
    assert (chunks[0].model_extra or {})["knowledge"]["decision"] == "retrieved"
    uncalibrated = client.chat.completions.create(model="tiny-llama+knowledge", messages=messages)
    assert (uncalibrated.model_extra or {})["knowledge"]["decision"] in ("parametric", "retrieved")  # never refused
    with pytest.raises(openai.APIStatusError) as too_long:  # what the studio shows for a refused question
        client.chat.completions.create(model="tiny-llama+knowledge", messages=[{"role": "user", "content": "x" * 2001}])
    assert too_long.value.status_code == 400 and "at most 2000" in too_long.value.message
    with pytest.raises(openai.BadRequestError):  # streamed (as the studio asks): refused before the stream starts
        client.chat.completions.create(
            model="tiny-llama+knowledge", messages=[{"role": "user", "content": "x" * 2001}], stream=True
        )
    with pytest.raises(openai.BadRequestError) as two:
        client.chat.completions.create(model="tiny-llama+knowledge", messages=messages, n=2)
    assert two.value.param == "n"
    with pytest.raises(openai.NotFoundError):
        client.chat.completions.create(model="tiny-llama@base+knowledge", messages=messages)


def test_a_client_that_leaves_before_a_plain_reply_stops_its_sequence(client: openai.OpenAI) -> None:
    """Counted in the metrics: the sequence ends as cancelled, long before the 1500 tokens it would have taken."""
    import httpx

    base_url = str(client.base_url).removesuffix("/v1/")
    series = 'atelier_llm_sequences_total{finish_reason="cancelled",model="tiny-llama"}'

    def cancelled() -> float:
        lines = httpx.get(f"{base_url}/metrics", timeout=30).text.splitlines()
        return next((float(line.split()[-1]) for line in lines if line.startswith(series)), 0.0)

    before = cancelled()
    body = {"model": "tiny-llama", "messages": [{"role": "user", "content": "The river"}], "max_tokens": 1500}
    with pytest.raises(httpx.ReadTimeout):  # greedy, this prompt runs to its limit (13 s here)
        httpx.post(f"{base_url}/v1/chat/completions", json=body | {"temperature": 0}, timeout=0.5)
    deadline = time.monotonic() + 8
    while cancelled() == before and time.monotonic() < deadline:
        time.sleep(0.2)
    assert cancelled() == before + 1
    metrics = httpx.get(f"{base_url}/metrics", timeout=30).text
    assert 'atelier_llm_time_to_first_token_seconds_count{model="tiny-llama"}' in metrics
    assert 'atelier_llm_tokens_total{kind="completion",model="tiny-llama"}' in metrics
