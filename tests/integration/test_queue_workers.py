"""An API that runs no jobs (`atelier serve --no-workers`) and `atelier worker` processes that claim them from the
database's queue: on PostgreSQL two workers share the work, hold to their models and batch, and the API's progress
stream hears them. Each worker's own /metrics counts what it ran. (SQLite's side of the claim is in
test_job_queue.py.)"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from app.entrypoints.library import Atelier
from tests.conftest import register_demo
from tests.e2e.test_server_process import Server, free_port
from tests.integration.test_two_api_processes import settled

pytestmark = [pytest.mark.slow]


class WorkerProcess:
    """``atelier worker`` in a process of its own, with its metrics on a free port."""

    def __init__(self, data_dir: str, env: dict[str, str], args: tuple[str, ...] = ()) -> None:
        self.data_dir, self.env, self.args = data_dir, env, args
        self.metrics_port = free_port()
        self.log = Path(data_dir) / f"worker-{self.metrics_port}.log"
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        env = {**os.environ, "ATELIER_DATA_DIR": self.data_dir, "OMP_NUM_THREADS": "1", **self.env}
        command = [sys.executable, "-m", "app.entrypoints.cli.main", "worker", "--metrics-port", str(self.metrics_port)]
        with open(self.log, "ab") as log:
            self.proc = subprocess.Popen([*command, *self.args], env=env, stdout=log, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            try:
                if self.metrics().startswith("# HELP"):
                    return
            except httpx.HTTPError:
                time.sleep(0.2)
        raise AssertionError(f"worker did not start: {self.log.read_text()}")

    def metrics(self) -> str:
        return httpx.get(f"http://127.0.0.1:{self.metrics_port}/metrics", timeout=5).text

    def stop(self) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(30)
            except subprocess.TimeoutExpired:
                self.proc.kill()


def metric(text: str, name: str) -> float:
    """The sum of a metric's samples (every label set) in a Prometheus text."""
    return sum(float(line.rsplit(" ", 1)[1]) for line in text.splitlines() if line.startswith((name + " ", name + "{")))


@pytest.fixture(scope="module")
def cluster(
    tmp_path_factory: pytest.TempPathFactory,
    create_postgres_database: Callable[[str], str],
    demo_models: dict[str, tuple[str, str]],
) -> Iterator[tuple[Server, list[WorkerProcess], str]]:
    url = create_postgres_database("queue_workers")
    shared = str(tmp_path_factory.mktemp("queue-data"))
    with Atelier.open(database_url=url, data_dir=shared, start_worker=False) as atelier:
        register_demo(atelier, demo_models)
    env = {"ATELIER_DATABASE_URL": url, "ATELIER_WORKER_HEARTBEAT": "1", "ATELIER_QUEUE_POLL": "0.2"}
    env["ATELIER_MODEL_CACHE_BYTES"] = "1"  # one pipeline in memory at a time: a model switch is a load
    # No switch for waiting alone (the 30 s default is reached on a loaded machine): a worker changes model only
    # when its own has nothing queued, so the loads counted below do not depend on the machine's speed.
    env["ATELIER_MODEL_SWITCH_AFTER"] = "600"
    api = Server(shared, env=env, args=("--no-workers",))
    workers = [WorkerProcess(shared, env, ("--max-batch", "4")) for _ in range(2)]
    try:
        api.start()
        for worker in workers:
            worker.start()
        yield api, workers, url
    finally:
        for worker in workers:
            worker.stop()
        api.stop()


@pytest.mark.postgres
def test_workers_share_the_queue_keep_to_their_models_and_batch(
    cluster: tuple[Server, list[WorkerProcess], str],
) -> None:
    api, workers, url = cluster
    assert httpx.get(f"{api.url}/readyz", timeout=5).json()["workers"] == 0  # this process runs no job
    bodies = [
        {"prompt": f"一只猫 {i}", "steps": 4, "seed": i, "model": ("demo", "demo-tiny")[i % 2]} for i in range(16)
    ]
    ids = [httpx.post(f"{api.url}/v1/jobs", json=body, timeout=10).json()["id"] for body in bodies]
    jobs = [settled(api, job_id, ("succeeded", "failed", "cancelled"), timeout=180) for job_id in ids]
    assert [job["status"] for job in jobs] == ["succeeded"] * 16
    with Atelier.open(database_url=url, data_dir=api.data_dir, start_worker=False) as atelier:
        runs = [atelier.job(job_id) for job_id in ids]
    ran_by = {job.worker_id for job in runs}
    assert len(ran_by) == 2 and all(job.attempts == 1 for job in runs)  # both workers ran jobs, each once
    texts = [worker.metrics() for worker in workers]
    assert sum(metric(text, "atelier_job_duration_seconds_count") for text in texts) == 16
    batches = sum(metric(text, "atelier_batch_size_count") for text in texts)
    assert batches < 16  # some jobs ran together
    # One pipeline fits each worker's cache, and the jobs alternate between two models: taking them in order would
    # load a model for nearly every batch. Each worker keeps to one model instead (a switch or two at most).
    loads = sum(metric(text, "atelier_model_loads_total") for text in texts)
    assert 2 <= loads <= 4, texts


@pytest.mark.postgres
def test_the_progress_stream_of_an_api_that_runs_no_jobs_hears_the_worker(
    cluster: tuple[Server, list[WorkerProcess], str],
) -> None:
    api, _workers, _url = cluster
    reply = httpx.post(f"{api.url}/v1/jobs", json={"prompt": "一座房子", "steps": 40, "width": 128}, timeout=10)
    events: list[tuple[str, dict[str, Any]]] = []
    with httpx.stream("GET", f"{api.url}/v1/jobs/{reply.json()['id']}/events", timeout=120) as stream:
        name = ""
        for line in stream.iter_lines():
            if line.startswith("event: "):
                name = line.removeprefix("event: ")
            elif line.startswith("data: "):
                events.append((name, json.loads(line.removeprefix("data: "))))
    progress = [body["progress"] for name, body in events if name == "progress" and body["status"] == "running"]
    assert events[-1][0] == "done" and events[-1][1]["status"] == "succeeded"
    assert len(progress) >= 2 and progress == sorted(progress)  # steps as the worker in another process wrote them
