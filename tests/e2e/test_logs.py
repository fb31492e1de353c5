"""Request ids and JSON logs: the id a client sends (or a new one) is answered and carried by the log lines of
the request and of the job it submitted, in the worker thread too."""

from __future__ import annotations

import json
import logging
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from app.adapters.logs import JsonFormatter, configure_logging
from app.entrypoints.http.app import create_app
from app.entrypoints.library import Atelier
from tests.e2e.conftest import open_test_atelier

pytestmark = pytest.mark.anyio


class Lines(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.INFO)
        self.setFormatter(JsonFormatter())
        self.lines: list[dict[str, Any]] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.lines.append(json.loads(self.format(record)))


@pytest.fixture
def lines() -> Iterator[Lines]:
    handler, root = Lines(), logging.getLogger()
    level = root.level
    root.addHandler(handler)
    root.setLevel(logging.INFO)
    yield handler
    root.removeHandler(handler)
    root.setLevel(level)


async def test_a_request_id_reaches_the_jobs_log_lines_in_the_worker(tmp_path: Path, lines: Lines) -> None:
    atelier: Atelier = open_test_atelier(tmp_path, log_format="json")
    try:
        transport = httpx.ASGITransport(app=create_app(atelier))
        async with httpx.AsyncClient(transport=transport, base_url="http://a") as client:
            body = {"prompt": "猫", "width": 64, "height": 64, "steps": 2}
            reply = await client.post("/v1/jobs", json=body, headers={"X-Request-ID": "req-42"})
            assert reply.status_code == 202 and reply.headers["x-request-id"] == "req-42"
            job_id = reply.json()["id"]
            atelier.wait(job_id, timeout=10)
            odd = await client.get("/healthz", headers={"X-Request-ID": "bad id\\n"})
            assert len(odd.headers["x-request-id"]) == 32 and odd.headers["x-request-id"] != "bad id\\n"
    finally:
        atelier.close()
    events = {line.get("event"): line for line in lines.lines if line.get("job_id") == job_id}
    assert {"job_submitted", "job_started", "job_finished"} <= set(events)
    for event in ("job_submitted", "job_started", "job_finished"):
        assert events[event]["request_id"] == "req-42", events[event]
    assert events["job_finished"]["status"] == "succeeded" and events["job_finished"]["seconds"] >= 0
    request = next(line for line in lines.lines if line.get("event") == "request" and line["path"] == "/v1/jobs")
    assert (request["method"], request["status"], request["request_id"]) == ("POST", 202, "req-42")


def test_plain_and_json_output(capsys: pytest.CaptureFixture[str]) -> None:
    root = logging.getLogger()
    saved = (root.handlers[:], root.level)
    try:
        configure_logging("json", "info")
        logging.getLogger("atelier.test").info("hello %s", "world", extra={"event": "greeting"})
        line = json.loads(capsys.readouterr().err.strip().splitlines()[-1])
        assert (line["message"], line["level"], line["event"], line["logger"]) == (
            "hello world",
            "info",
            "greeting",
            "atelier.test",
        )
        configure_logging("plain", "info")
        logging.getLogger("atelier.test").info("plain")
        assert capsys.readouterr().err.strip().endswith("atelier.test: plain")
        assert sum(h.get_name() == "atelier" for h in root.handlers) == 1  # configured twice, one handler
        with pytest.raises(ValueError, match="plain, json"):
            configure_logging("xml")
    finally:
        root.handlers[:] = saved[0]
        root.setLevel(saved[1])
