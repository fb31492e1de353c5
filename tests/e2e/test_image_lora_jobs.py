"""Image LoRA training as a job, end to end on the tiny random demo pipeline: upload a zip of captioned images over
HTTP, train, watch loss and sample images, use the LoRA at once in a prompt tag; refusals store nothing; the CLI
trains from a folder; a job whose process is killed resumes from its checkpoint to the very LoRA of an
uninterrupted run; a full disk fails the job and keeps the last good checkpoint."""

from __future__ import annotations

import errno
import io
import json
import time
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pytest
import torch
from fastapi.testclient import TestClient
from PIL import Image
from safetensors.torch import load_file

from app.domain.image_dataset import pack_image_archive
from app.domain.jobs import JobStatus
from app.domain.training import EventKind, TrainingKind, TrainingSpec
from app.entrypoints.http.app import create_app
from app.entrypoints.library import Atelier
from app.lab.demo_world import concepts
from tests.conftest import register_demo
from tests.e2e.test_training_jobs import kill_after_step


def scenes_zip(count: int = 6, captions: bool = True) -> bytes:
    files = concepts.scene_files(concepts.training_scenes(count, 0), 0)
    return pack_image_archive({k: v for k, v in files.items() if captions or k.endswith(".png")})


def _upload(client: httpx.Client, data: bytes, purpose: str = "image-lora") -> httpx.Response:
    return client.post("/v1/files", files={"file": ("scenes.zip", data)}, data={"purpose": purpose})


def _until_done(client: httpx.Client, training_id: str, timeout: float = 180) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    while True:
        body: dict[str, Any] = client.get(f"/v1/trainings/{training_id}").json()
        if body["status"] in ("succeeded", "failed", "cancelled") or time.monotonic() > deadline:
            return body
        time.sleep(0.2)


@pytest.fixture
def served(tmp_path: Path, demo_models: dict[str, tuple[str, str]]) -> Any:
    with Atelier.open(data_dir=str(tmp_path)) as atelier:
        register_demo(atelier, demo_models)
        yield atelier, TestClient(create_app(atelier), base_url="http://atelier")


def test_a_lora_trained_over_http_is_usable_at_once_in_a_prompt(served: Any) -> None:
    atelier, client = served
    uploaded = _upload(client, scenes_zip())
    assert uploaded.status_code == 200, uploaded.text
    assert uploaded.json()["purpose"] == "image-lora"
    body = {
        "base_model": "demo-tiny",
        "name": "pinky",
        "training_file": uploaded.json()["id"],
        "epochs": 2,
        "batch_size": 2,
        "lora_rank": 4,
        "learning_rate": 1e-3,
        "trigger_word": "pnk",
        "sample_prompts": ["pnk, 一个粉色的圆形"],
        "sample_steps": 2,
        "checkpoint_every": 3,
    }
    created = client.post("/v1/trainings", json=body)
    assert created.status_code == 201, created.text
    assert created.json()["status"] in ("queued", "running") and created.json()["options"]["trigger_word"] == "pnk"
    done = _until_done(client, created.json()["id"])
    assert done["status"] == "succeeded", done["error"]
    assert done["result_model"] == "pinky" and done["step"] == done["total_steps"] == 6 and done["progress"] == 1.0
    events = client.get(f"/v1/trainings/{done['id']}/events").json()
    assert [e["step"] for e in events if e["kind"] == "metrics"] == [1, 2, 3, 4, 5, 6]
    samples = [e for e in events if e["kind"] == "sample"]
    assert [e["step"] for e in samples] == [3, 6] and all(len(e["images"]) == 1 for e in samples)
    png = client.get(f"/v1/trainings/{done['id']}/samples/{samples[-1]['images'][0]}")
    assert png.status_code == 200 and png.headers["content-type"] == "image/png"
    assert Image.open(io.BytesIO(png.content)).size == (64, 64)
    assert client.get(f"/v1/trainings/{done['id']}/samples/..%2Fcheckpoint.pt").status_code == 404
    later = client.get(f"/v1/trainings/{done['id']}/events", params={"after": events[-2]["seq"]}).json()
    assert [e["seq"] for e in later] == [events[-1]["seq"]]
    assert client.get("/v1/trainings").json()["total"] == 1

    listed = client.get("/v1/models").json()["data"]
    assert any(m["name"] == "pinky" and m["kind"] == "lora" for m in listed)

    def image(prompt: str) -> np.ndarray:
        job = client.post("/v1/jobs", json={"prompt": prompt, "model": "demo-tiny", "steps": 2, "seed": 7})
        assert job.status_code == 202, job.text
        result = atelier.wait(job.json()["id"], timeout=120)
        assert result.status is JobStatus.SUCCEEDED, result.error_message
        url = client.get(f"/v1/jobs/{job.json()['id']}").json()["images"][0]["url"]
        got = client.get(url)
        return np.asarray(Image.open(io.BytesIO(got.content)).convert("RGB"))

    with_lora = image("pnk, 一个粉色的圆形 <lora:pinky:0.8>")
    assert not np.array_equal(with_lora, image("pnk, 一个粉色的圆形"))


def test_refused_trainings_store_nothing(served: Any) -> None:
    _, client = served
    empty = _upload(client, pack_image_archive({"notes.txt": b"no pictures"}))
    assert empty.status_code == 400 and empty.json()["error"]["code"] == "invalid_file"
    uncaptioned = _upload(client, scenes_zip(captions=False)).json()["id"]
    chats = client.post(
        "/v1/files",
        files={
            "file": (
                "t.jsonl",
                b'{"messages": [{"role": "user", "content": "a"}, {"role": "assistant", "content": "b"}]}',
            )
        },
        data={"purpose": "fine-tune"},
    ).json()["id"]
    base = {"base_model": "demo-tiny", "name": "x", "training_file": uncaptioned}
    cases = [
        (base, 422, "missing_captions"),
        ({**base, "training_file": chats}, 422, "invalid_parameters"),
        ({**base, "base_model": "no-such-model", "trigger_word": "t"}, 404, "unknown_model"),
        ({**base, "name": "demo-tiny", "trigger_word": "t"}, 409, "model_exists"),
        ({**base, "trigger_word": "t", "crop": "zoom"}, 422, "invalid_parameters"),
        ({**base, "trigger_word": "t", "training_file": "file-" + "0" * 32}, 404, "file_not_found"),
    ]
    for body, status, code in cases:
        reply = client.post("/v1/trainings", json=body)
        assert (reply.status_code, reply.json()["error"]["code"]) == (status, code), (body, reply.text)
    assert client.get("/v1/trainings").json()["total"] == 0
    assert client.get("/v1/trainings/" + "0" * 32).status_code == 404


def test_a_family_without_lora_training_is_refused(tmp_path: Path) -> None:
    from app.adapters.memory.generation import InMemoryModelCatalog
    from app.composition.training import base_models
    from app.domain.errors import InvalidParameters
    from app.domain.families import Family
    from app.domain.models import ModelInfo
    from app.settings import Settings

    catalog = InMemoryModelCatalog(
        [
            ModelInfo(name="hunyuan", path="/m/hy", source="/m/hy", family=Family.HUNYUANDIT),
            ModelInfo(name="sd", path="/m/sd", source="/m/sd"),
        ]
    )
    folder = base_models(Settings(data_dir=str(tmp_path)), catalog)
    assert folder(TrainingKind.IMAGE_LORA, "sd") == "/m/sd"
    with pytest.raises(InvalidParameters) as refused:
        folder(TrainingKind.IMAGE_LORA, "hunyuan")
    assert refused.value.code == "unsupported_training" and "Stable Diffusion 1.x/2.x" in refused.value.message


def test_the_command_line_trains_from_a_folder_and_refuses_an_empty_one(
    tmp_path: Path, demo_models: dict[str, tuple[str, str]]
) -> None:
    from click.testing import CliRunner

    from app.entrypoints.cli.main import cli

    with Atelier.open(data_dir=str(tmp_path / "data"), start_worker=False) as atelier:
        register_demo(atelier, demo_models)
    runner = CliRunner()
    data = ["--data-dir", str(tmp_path / "data")]
    made = runner.invoke(cli, [*data, "lora", "make-scenes", str(tmp_path / "pink"), "--count", "4", "--json"])
    assert made.exit_code == 0, made.output
    assert json.loads(made.output)["images"] == 4 and len(list((tmp_path / "pink").glob("*.txt"))) == 4
    options = [
        "--base",
        "demo-tiny",
        "--name",
        "pink",
        "--epochs",
        "1",
        "--batch-size",
        "2",
        "--lora-rank",
        "2",
        "--json",
    ]
    trained = runner.invoke(cli, [*data, "lora", "train", str(tmp_path / "pink"), *options])
    assert trained.exit_code == 0, trained.output
    job = json.loads(trained.output)
    assert job["status"] == "succeeded" and job["result_model"] == "pink" and job["step"] == 2
    with Atelier.open(data_dir=str(tmp_path / "data"), start_worker=False) as atelier:
        folder = Path(atelier.model("pink", "lora").path)
    assert (folder / "pytorch_lora_weights.safetensors").is_file() and (folder / "pink.safetensors").is_file()
    (tmp_path / "empty").mkdir()
    refused = runner.invoke(
        cli, [*data, "lora", "train", str(tmp_path / "empty"), "--base", "demo-tiny", "--name", "e"]
    )
    assert refused.exit_code != 0 and refused.output.strip().splitlines() == [
        f"error: {tmp_path / 'empty'} holds no image (.png, .jpg, .jpeg, .webp, .bmp)."
    ]


@pytest.mark.slow
def test_a_killed_training_resumes_from_its_checkpoint_to_the_same_lora(
    tmp_path: Path, demo_models: dict[str, tuple[str, str]]
) -> None:
    """SIGKILL the CLI process running the job after a checkpoint; a worker started afterwards requeues the job and
    resumes it, ending with the LoRA an uninterrupted run makes, bit for bit."""
    import sys

    from app.adapters.diffusers.lora_training import ImageLoraSettings, train_image_lora
    from app.domain.image_dataset import parse_image_archive

    data_dir = tmp_path / "data"
    with Atelier.open(data_dir=str(data_dir), start_worker=False) as atelier:
        register_demo(atelier, demo_models)
    folder = tmp_path / "pink"
    folder.mkdir()
    for name, blob in concepts.scene_files(concepts.training_scenes(8, 0), 0).items():
        (folder / name).write_bytes(blob)
    command = [sys.executable, "-m", "app.entrypoints.cli.main", "--data-dir", str(data_dir), "lora", "train"]
    command += [str(folder), "--base", "demo-tiny", "--name", "pink", "--epochs", "12", "--batch-size", "2"]
    command += ["--lora-rank", "4", "--learning-rate", "0.001", "--checkpoint-every", "4", "--quiet"]
    killed = kill_after_step(command, str(data_dir), 6, {"OMP_NUM_THREADS": "1"})  # past the first checkpoint
    assert killed.status is JobStatus.RUNNING and 6 <= killed.step < 48
    with Atelier.open(data_dir=str(data_dir)) as worker:  # recovers: the job's process has exited
        done = worker.training.wait(killed.id, timeout=180)
        assert done.status is JobStatus.SUCCEEDED, done.error_message
        events = worker.training.events(done.id)
        resumed = next(i for i, e in enumerate(events) if e.message == "resumed from its checkpoint")
        after = [e.step for e in events[resumed:] if e.kind is EventKind.METRICS]
        assert done.attempts == 2 and after[0] % 4 == 1 and after[0] > 1 and after[-1] == 48
        trained = Path(worker.model("pink", "lora").path)
    images = parse_image_archive(pack_image_archive(concepts.scene_files(concepts.training_scenes(8, 0), 0)))
    reference = tmp_path / "reference"
    settings = ImageLoraSettings(epochs=12, learning_rate=1e-3, batch_size=2, rank=4, checkpoint_every=4)
    train_image_lora(demo_models["demo-tiny"][0], images, str(reference), str(tmp_path / "work"), settings)
    ours = load_file(str(trained / "pytorch_lora_weights.safetensors"))
    theirs = load_file(str(reference / "pytorch_lora_weights.safetensors"))
    assert ours.keys() == theirs.keys() and all(torch.equal(ours[k], theirs[k]) for k in ours)


def test_a_full_disk_fails_the_job_and_keeps_the_last_good_checkpoint(
    tmp_path: Path, demo_models: dict[str, tuple[str, str]], monkeypatch: pytest.MonkeyPatch
) -> None:
    from app.adapters import training_state

    real_save = torch.save
    saves = {"n": 0}

    def filling(obj: Any, path: Any, *args: Any, **kwargs: Any) -> None:
        saves["n"] += 1
        if saves["n"] == 2:  # the second checkpoint: a few bytes land, then the disk is full
            Path(path).write_bytes(b"partial")
            raise OSError(errno.ENOSPC, "No space left on device")
        real_save(obj, path, *args, **kwargs)

    monkeypatch.setattr(training_state.torch, "save", filling)
    with Atelier.open(data_dir=str(tmp_path), start_worker=False) as atelier:
        register_demo(atelier, demo_models)
        uploaded = atelier.training.upload(scenes_zip(4), "scenes.zip", purpose="image-lora")
        spec = TrainingSpec(
            kind=TrainingKind.IMAGE_LORA,
            base_model="demo-tiny",
            result_name="full",
            training_file=uploaded.id,
            epochs=4,
            batch_size=2,
            lora_rank=2,
            extra={"checkpoint_every": 2},
        )
        job = atelier.training.submit(spec)
        ended = atelier.container.run_training().claim_and_run("worker-1")
        assert ended is not None and ended.id == job.id
        assert ended.status is JobStatus.FAILED and ended.error_code == "disk_full"
        assert "last checkpoint is kept" in (ended.error_message or "")
        work = Path(atelier.settings.data_dir) / "training" / "jobs" / job.id
        kept = torch.load(work / "checkpoint.pt", weights_only=False)
        assert kept["step"] == 2 and not list(work.glob("*.tmp"))
        with pytest.raises(Exception):  # noqa: B017 - nothing registered under the failed job's name
            atelier.model("full", "lora")
