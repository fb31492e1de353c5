"""Fine-tuning as a training job, end to end on the test profile's tiny Llama: upload chat records, submit, follow
the job to its registered adapter, chat with BASE:NAME; refusals store nothing; a queued job cancels at once."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import torch

from app.domain.chat import ChatMessage, Sampling
from app.domain.errors import InvalidParameters, ModelAlreadyRegistered, UnknownModel
from app.domain.jobs import JobStatus
from app.domain.training import EventKind, FileNotFound, TrainingJob, TrainingKind, TrainingSpec
from app.entrypoints.library import Atelier
from app.lab.finetune.facts import write_facts
from app.usecases.complete_text import CompleteText


def spec(training_file: str, **changes: object) -> TrainingSpec:
    fields: dict[str, object] = {
        "kind": TrainingKind.LLM_FINETUNE,
        "base_model": "tiny-llama",
        "result_name": "facts",
        "training_file": training_file,
        "epochs": 2,
        "batch_size": 4,
        "lora_rank": 4,
        "learning_rate": 5e-3,
    }
    return TrainingSpec(**{**fields, **changes})  # type: ignore[arg-type]


@pytest.fixture(scope="module")
def facts(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("facts")
    write_facts(str(folder), count=3)
    return folder


def test_a_finetuning_job_registers_an_adapter_the_chat_api_serves(tmp_path: Path, facts: Path) -> None:
    with Atelier.open(data_dir=str(tmp_path), profile="test") as atelier:
        data = (facts / "train.jsonl").read_bytes()
        uploaded = atelier.training.upload(data, "train.jsonl")
        held = atelier.training.upload((facts / "validation.jsonl").read_bytes(), "validation.jsonl")
        assert uploaded.records == 12 and uploaded.id.startswith("file-") and uploaded.bytes == len(data)
        job = atelier.training.submit(spec(uploaded.id, validation_file=held.id))
        done = atelier.training.wait(job.id, timeout=120)
        assert done.status is JobStatus.SUCCEEDED, done.error_message
        assert done.result_model == "tiny-llama:facts" and done.step == done.total_steps == 6
        events = atelier.training.events(job.id)
        metrics = [e for e in events if e.kind is EventKind.METRICS]
        assert [e.step for e in metrics] == [1, 2, 3, 4, 5, 6] and all(e.loss and e.loss > 0 for e in metrics)
        assert [e.validation_loss is not None for e in metrics] == [False, False, True, False, False, True]
        assert events[0].message == "started" and events[-1].message == "succeeded: tiny-llama:facts"
        complete: CompleteText = atelier.container.complete_text()
        assert "tiny-llama:facts" in [m.id for m in complete.listing()]
        question = [ChatMessage("user", json.loads((facts / "held_out.jsonl").read_text().splitlines()[0])["question"])]
        greedy = Sampling(max_tokens=8, temperature=0.0, logprobs=True)
        tuned = CompleteText.collect(complete.chat("tiny-llama:facts", question, greedy))[0]
        plain = CompleteText.collect(complete.chat("tiny-llama", question, greedy))[0]
        assert tuned.logprobs != plain.logprobs


def test_refused_requests_store_nothing_and_a_queued_job_cancels_at_once(tmp_path: Path, facts: Path) -> None:
    with Atelier.open(data_dir=str(tmp_path), profile="test", start_worker=False) as atelier:
        with pytest.raises(InvalidParameters) as bad:
            atelier.training.upload(b'{"messages": [{"role": "user", "content": "hi"}]}\n{oops\n', "bad.jsonl")
        assert bad.value.code == "invalid_file" and bad.value.message.startswith("Line 1:")  # no assistant turn
        with pytest.raises(InvalidParameters, match="Line 2: not valid JSON"):
            good = b'{"messages": [{"role": "user", "content": "a"}, {"role": "assistant", "content": "b"}]}'
            atelier.training.upload(good + b"\n{oops\n", "bad.jsonl")
        uploaded = atelier.training.upload((facts / "train.jsonl").read_bytes(), "train.jsonl")
        with pytest.raises(UnknownModel):
            atelier.training.submit(spec(uploaded.id, base_model="no-such-model"))
        with pytest.raises(FileNotFound):
            atelier.training.submit(spec(uploaded.id), owner="someone-else")
        with pytest.raises(ModelAlreadyRegistered):
            atelier.training.submit(spec(uploaded.id, result_name="demo"))  # the test profile's image model
        assert atelier.training.jobs().total == 0
        job = atelier.training.submit(spec(uploaded.id))
        cancelled = atelier.training.cancel(job.id)
        assert cancelled.status is JobStatus.CANCELLED and atelier.training.job(job.id).status is JobStatus.CANCELLED


@pytest.mark.slow
def test_a_job_killed_mid_run_resumes_from_its_checkpoint_to_the_same_adapter(tmp_path: Path, facts: Path) -> None:
    """SIGKILL the CLI process that runs the job after its first checkpoint; a worker started afterwards requeues
    the job (its process is gone), resumes it from step 20 and ends with the adapter an uninterrupted run makes."""
    import sys

    from safetensors.torch import load_file

    from app.adapters.transformers.finetune import FineTuneSettings, train
    from app.adapters.transformers.tiny import build_tiny_llama
    from app.domain.training import parse_chat_records

    data_dir = tmp_path / "data"
    llm = build_tiny_llama(str(tmp_path / "tiny"))
    settings = {"llm": "tiny", "embedder": "hashing"}
    with Atelier.open(data_dir=str(data_dir), start_worker=False, **settings) as atelier:
        atelier.add_model("tiny", llm, kind="llm")
    command = [sys.executable, "-m", "app.entrypoints.cli.main", "--data-dir", str(data_dir), "llm", "finetune"]
    command += [str(facts / "train.jsonl"), "--base", "tiny", "--name", "facts", "--epochs", "16"]
    command += ["--batch-size", "2", "--lora-rank", "4", "--learning-rate", "0.005", "--quiet"]
    env = {"OMP_NUM_THREADS": "1", "ATELIER_LLM": "tiny", "ATELIER_EMBEDDER": "hashing"}
    killed = kill_after_step(command, str(data_dir), 22, env, **settings)  # past the first checkpoint (every 20)
    assert killed.status is JobStatus.RUNNING and 22 <= killed.step < 96
    with Atelier.open(data_dir=str(data_dir), **settings) as worker:  # recovers: the job's process has exited
        done = worker.training.wait(killed.id, timeout=180)
        assert done.status is JobStatus.SUCCEEDED, done.error_message
        events = worker.training.events(done.id)
        resumed = next(i for i, e in enumerate(events) if e.message == "resumed from its checkpoint")
        after = [e.step for e in events[resumed:] if e.kind is EventKind.METRICS]
        assert done.attempts == 2 and after == list(range(21, 97))  # from the checkpoint, not from the start
        trained = Path(worker.model("facts", "llm-lora").path)
    records = parse_chat_records((facts / "train.jsonl").read_bytes())
    reference = tmp_path / "reference"
    train(llm, records, str(reference), str(tmp_path / "work"), FineTuneSettings(16, 0.005, 2, 4))
    ours = load_file(str(trained / "adapter_model.safetensors"))
    theirs = load_file(str(reference / "adapter_model.safetensors"))
    assert ours.keys() == theirs.keys() and all(torch.equal(ours[k], theirs[k]) for k in ours)


def kill_after_step(command: list[str], data_dir: str, step: int, env: dict[str, str], **settings: Any) -> TrainingJob:
    """Run ``command`` (a CLI training run), SIGKILL it once its job has reached ``step``, and return the job as the
    kill left it."""
    import os
    import signal
    import subprocess
    import time

    process = subprocess.Popen(command, env={**os.environ, **env}, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        with Atelier.open(data_dir=data_dir, start_worker=False, **settings) as watcher:
            deadline = time.monotonic() + 120
            while time.monotonic() < deadline:
                jobs = watcher.training.jobs().items
                if jobs and jobs[0].step >= step:
                    break
                assert process.poll() is None, process.stderr.read() if process.stderr else ""
                time.sleep(0.02)
            process.send_signal(signal.SIGKILL)
            process.wait(10)
            return watcher.training.jobs().items[0]
    finally:
        if process.poll() is None:
            process.kill()


def test_the_command_line_makes_facts_lists_jobs_and_refuses_clearly(tmp_path: Path) -> None:
    from click.testing import CliRunner

    from app.entrypoints.cli.main import cli

    runner = CliRunner()
    data = ["--data-dir", str(tmp_path / "data")]
    facts = [str(tmp_path / "facts"), "--companies", "4", "--general", "4", "--json"]
    made = runner.invoke(cli, [*data, "llm", "make-facts", *facts])
    assert made.exit_code == 0, made.output
    assert json.loads(made.output)["train"] == 28 and (tmp_path / "facts" / "held_out.jsonl").is_file()
    listed = runner.invoke(cli, [*data, "llm", "jobs", "--json"])
    assert listed.exit_code == 0 and json.loads(listed.output) == []
    (tmp_path / "bad.jsonl").write_text('{"messages": []}\n')
    refused = runner.invoke(cli, [*data, "llm", "finetune", str(tmp_path / "bad.jsonl"), "--name", "x", "--no-wait"])
    assert refused.exit_code != 0 and refused.output.strip().splitlines() == [
        'error: Line 1: expected {"messages": [{"role": ..., "content": ...}, ...]}.'
    ]
    unknown = runner.invoke(cli, [*data, "llm", "cancel", "0" * 32])
    assert unknown.exit_code != 0 and "No training job" in unknown.output
