"""Language models registered with ``atelier models add --kind llm`` and adapters with ``--kind llm-lora``, served by
a real server (the registered model chosen by ATELIER_LLM) to the real ``openai`` client: ``models.list()`` shows them
with their kind, ``NAME:ADAPTER`` applies an adapter to one request, another registered model loads on first use."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import openai
import pytest
from click.testing import CliRunner

from app.adapters.transformers.tiny import build_tiny_llama, build_tiny_lora
from app.entrypoints.cli.main import cli
from tests.e2e.test_server_process import Server


def atelier(data_dir: Path, *args: str) -> str:
    done = CliRunner().invoke(cli, ["--data-dir", str(data_dir), *args])
    assert done.exit_code == 0, done.output
    return done.output


@pytest.fixture(scope="module")
def client(tmp_path_factory: pytest.TempPathFactory) -> Iterator[openai.OpenAI]:
    root = tmp_path_factory.mktemp("llm-registry")
    data = root / "data"
    llm = build_tiny_llama(str(root / "tiny"))
    atelier(data, "models", "add", "tiny", llm, "--kind", "llm")
    atelier(data, "models", "add", "other", build_tiny_llama(str(root / "other"), seed=1), "--kind", "llm")
    atelier(data, "models", "add", "style", build_tiny_lora(llm, str(root / "style"), seed=1), "--kind", "llm-lora")
    server = Server(str(data), env={"ATELIER_LLM": "tiny", "ATELIER_EMBEDDER": "hashing"})
    server.start()
    try:
        yield openai.OpenAI(base_url=f"{server.url}/v1", api_key="unused", max_retries=0, timeout=60)
    finally:
        server.stop()


def ask(client: openai.OpenAI, model: str) -> tuple[str, list[float]]:
    reply = client.chat.completions.create(
        model=model, messages=[{"role": "user", "content": "一只猫"}], max_tokens=8, temperature=0, logprobs=True
    )
    assert reply.model == model
    content = reply.choices[0].logprobs.content if reply.choices[0].logprobs else None
    return reply.choices[0].message.content or "", [entry.logprob for entry in content or []]


def test_models_list_shows_language_models_and_adapters_with_their_kind(client: openai.OpenAI) -> None:
    listed = {model.id: model for model in client.models.list()}
    assert list(listed) == ["tiny", "tiny@base", "tiny+knowledge", "other", "tiny:style"]  # no image models here
    kinds = {name: (model.model_extra or {}).get("kind") for name, model in listed.items()}
    assert kinds == {name: "llm" for name in listed} | {"tiny:style": "llm-lora"}
    extra = listed["tiny"].model_extra or {}
    assert extra["default"] is True and extra["context_length"] == 2048 and listed["tiny"].created > 0
    assert (listed["tiny:style"].model_extra or {})["parent"] == "tiny"


def test_an_adapter_per_request_and_another_model_on_first_use(client: openai.OpenAI) -> None:
    plain = ask(client, "tiny")
    assert ask(client, "tiny:style") != plain
    assert ask(client, "tiny") == plain  # the adapter applied to its own request only
    assert ask(client, "other") != plain
    with pytest.raises(openai.NotFoundError) as unknown:
        ask(client, "tiny:nope")
    assert unknown.value.code == "model_not_found" and "nope" in unknown.value.message
