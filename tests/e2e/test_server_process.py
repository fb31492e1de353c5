"""A real ``atelier serve`` under uvicorn on 127.0.0.1, killed mid-generation and restarted."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

pytestmark = pytest.mark.slow


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class Server:
    def __init__(self, data_dir: str, env: dict[str, str] | None = None, args: tuple[str, ...] = ()) -> None:
        self.data_dir = data_dir
        self.env = env or {}
        self.args = args
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.proc: subprocess.Popen[bytes] | None = None
        self.log = Path(data_dir) / "server.log"

    def start(self) -> None:
        env = {**os.environ, "ATELIER_DATA_DIR": self.data_dir, "OMP_NUM_THREADS": "1", **self.env}
        with open(self.log, "ab") as log:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "app.entrypoints.cli.main", "serve", "--port", str(self.port), *self.args],
                env=env,
                stdout=log,
                stderr=subprocess.STDOUT,
            )
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            try:
                if httpx.get(f"{self.url}/healthz", timeout=1).status_code == 200:
                    return
            except httpx.HTTPError:
                time.sleep(0.2)
        raise AssertionError(f"server did not start: {self.log.read_text()}")

    def kill(self) -> None:
        assert self.proc is not None
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait(10)

    def stop(self) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(15)
            except subprocess.TimeoutExpired:
                self.proc.kill()


@pytest.fixture
def server(data_dir: str) -> Iterator[Server]:
    srv = Server(data_dir)
    srv.start()
    yield srv
    srv.stop()


def poll(url: str, until: Any, timeout: float = 120) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        body: dict[str, Any] = httpx.get(url, timeout=5).json()
        if until(body):
            return body
        time.sleep(0.1)
    raise AssertionError(f"timed out; last: {body}")


def test_real_server_generates_and_streams_events(server: Server) -> None:
    reply = httpx.post(f"{server.url}/v1/jobs", json={"prompt": "一只猫在草地上", "steps": 3, "seed": 5}, timeout=10)
    assert reply.status_code == 202
    job_id = reply.json()["id"]
    with httpx.stream("GET", f"{server.url}/v1/jobs/{job_id}/events", timeout=60) as stream:
        text = "".join(stream.iter_text())
    assert "event: done" in text and '"status":"succeeded"' in text
    job = httpx.get(f"{server.url}/v1/jobs/{job_id}").json()
    png = httpx.get(f"{server.url}{job['images'][0]['url']}")
    assert png.status_code == 200 and png.content[:8] == b"\x89PNG\r\n\x1a\n"


def test_a_job_survives_a_killed_server(server: Server) -> None:
    """The job got a 202, the process died mid-generation; after a restart it completes."""
    body = {"prompt": "一只红色的大圆在左边，蓝色背景", "width": 128, "height": 128, "steps": 50, "seed": 3}
    job_id = httpx.post(f"{server.url}/v1/jobs", json=body, timeout=10).json()["id"]
    running = poll(f"{server.url}/v1/jobs/{job_id}", lambda j: j["status"] == "running" and j["progress"] > 0)
    assert running["progress"] < 1.0
    server.kill()
    server.start()
    done = poll(f"{server.url}/v1/jobs/{job_id}", lambda j: j["status"] in ("succeeded", "failed", "cancelled"))
    assert done["status"] == "succeeded" and done["seed"] == 3 and len(done["images"]) == 1
    assert httpx.get(f"{server.url}{done['images'][0]['url']}").status_code == 200


def test_cancel_from_another_process_stops_the_server_job(server: Server) -> None:
    body = {"prompt": "猫", "width": 128, "height": 128, "steps": 150}
    job_id = httpx.post(f"{server.url}/v1/jobs", json=body, timeout=10).json()["id"]
    poll(f"{server.url}/v1/jobs/{job_id}", lambda j: j["status"] == "running" and j["progress"] > 0)
    cancel = subprocess.run(
        [sys.executable, "-m", "app.entrypoints.cli.main", "--data-dir", server.data_dir, "jobs", "cancel", job_id],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert cancel.returncode == 0 and "cancel requested" in cancel.stdout
    done = poll(f"{server.url}/v1/jobs/{job_id}", lambda j: j["status"] != "running", timeout=30)
    assert done["status"] == "cancelled" and done["progress"] < 1.0
