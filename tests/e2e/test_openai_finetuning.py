"""OpenAI's fine-tuning API with the real ``openai`` client against a real server (test profile, tiny Llama): a
file upload, a job followed to its fine-tuned model, its events, the model answering chat requests, cancel, and
errors in OpenAI's shape."""

from __future__ import annotations

import io
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import openai
import pytest

from app.lab.finetune.facts import write_facts
from tests.e2e.test_server_process import Server


@pytest.fixture(scope="module")
def client(tmp_path_factory: pytest.TempPathFactory) -> Iterator[openai.OpenAI]:
    server = Server(str(tmp_path_factory.mktemp("finetuning")), env={"ATELIER_PROFILE": "test"})
    server.start()
    try:
        yield openai.OpenAI(base_url=f"{server.url}/v1", api_key="unused", max_retries=0, timeout=60)
    finally:
        server.stop()


@pytest.fixture(scope="module")
def records(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("facts")
    write_facts(str(folder), count=3)
    return folder / "train.jsonl"


def test_a_job_from_upload_to_a_model_that_answers(client: openai.OpenAI, records: Path) -> None:
    uploaded = client.files.create(file=records.open("rb"), purpose="fine-tune")
    assert uploaded.id.startswith("file-") and uploaded.filename == "train.jsonl" and uploaded.bytes > 0
    job = client.fine_tuning.jobs.create(
        model="tiny-llama",
        training_file=uploaded.id,
        suffix="facts",
        hyperparameters={"n_epochs": 2, "batch_size": 4, "learning_rate_multiplier": 5},
        extra_body={"hyperparameters": {"n_epochs": 2, "batch_size": 4, "learning_rate_multiplier": 5, "lora_rank": 4}},
    )
    assert job.id.startswith("ftjob-") and job.status in ("queued", "running")
    deadline = time.monotonic() + 120
    while job.status not in ("succeeded", "failed", "cancelled") and time.monotonic() < deadline:
        time.sleep(0.5)
        job = client.fine_tuning.jobs.retrieve(job.id)
    assert job.status == "succeeded" and job.fine_tuned_model == "tiny-llama:facts", job.error
    assert job.hyperparameters.n_epochs == 2 and job.hyperparameters.batch_size == 4
    events = list(client.fine_tuning.jobs.list_events(job.id, limit=100))
    assert events[0].message == "succeeded: tiny-llama:facts"  # newest first
    steps = [e.data["step"] for e in events if e.type == "metrics"]
    assert steps == list(range(6, 0, -1)) and all(e.data["train_loss"] > 0 for e in events if e.type == "metrics")
    assert [j.id for j in client.fine_tuning.jobs.list()] == [job.id]
    assert "tiny-llama:facts" in [m.id for m in client.models.list()]
    reply = client.chat.completions.create(
        model=job.fine_tuned_model, messages=[{"role": "user", "content": "Who founded it?"}], max_tokens=4
    )
    assert reply.model == "tiny-llama:facts" and reply.choices[0].message.content is not None


def test_errors_have_openais_shape_and_a_queued_job_cancels(client: openai.OpenAI, records: Path) -> None:
    with pytest.raises(openai.BadRequestError) as bad:
        client.files.create(file=("bad.jsonl", io.BytesIO(b'{"messages": "hi"}\n')), purpose="fine-tune")
    assert bad.value.code == "invalid_file" and "Line 1" in bad.value.message
    with pytest.raises(openai.BadRequestError) as purpose:
        client.files.create(file=records.open("rb"), purpose="assistants")
    assert purpose.value.param == "purpose"
    uploaded = client.files.create(file=records.open("rb"), purpose="fine-tune")
    with pytest.raises(openai.NotFoundError):
        client.fine_tuning.jobs.create(model="gpt-4o-mini", training_file=uploaded.id)
    with pytest.raises(openai.NotFoundError) as missing:
        client.fine_tuning.jobs.create(model="tiny-llama", training_file="file-" + "0" * 32)
    assert missing.value.code == "file_not_found"
    with pytest.raises(openai.NotFoundError):
        client.fine_tuning.jobs.retrieve("ftjob-nothing")
    bad_limit = httpx.get(f"{client.base_url}fine_tuning/jobs", params={"limit": "many"}, timeout=30)
    assert bad_limit.status_code == 400 and bad_limit.json()["error"]["param"] == "limit"
    first = client.fine_tuning.jobs.create(
        model="tiny-llama", training_file=uploaded.id, suffix="long", hyperparameters={"n_epochs": 50}
    )
    queued = client.fine_tuning.jobs.create(model="tiny-llama", training_file=uploaded.id, suffix="later")
    cancelled = client.fine_tuning.jobs.cancel(queued.id)
    assert cancelled.status == "cancelled"  # it waited behind the first: cancelled at once
    running = client.fine_tuning.jobs.cancel(first.id)
    deadline = time.monotonic() + 60
    while running.status != "cancelled" and time.monotonic() < deadline:
        time.sleep(0.3)
        running = client.fine_tuning.jobs.retrieve(first.id)
    assert running.status == "cancelled" and running.fine_tuned_model is None
    with pytest.raises(openai.ConflictError):
        client.fine_tuning.jobs.cancel(first.id)  # already ended
