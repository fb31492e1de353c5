"""Job callbacks against a real HTTP server on 127.0.0.1: called once when the job ends, signed, retried after
a 5xx; refused at submission when off or for a host off the allow-list."""

from __future__ import annotations

import hashlib
import hmac
import http.server
import json
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from app.entrypoints.http.app import create_app
from app.entrypoints.library import Atelier
from tests.e2e.conftest import open_test_atelier

pytestmark = pytest.mark.anyio
SECRET = "callback-secret"
SMALL = {"prompt": "猫", "width": 64, "height": 64, "steps": 2}


class Receiver(http.server.ThreadingHTTPServer):
    """Records every POST; answers 500 to the first ``failures`` of them."""

    def __init__(self, failures: int = 0) -> None:
        super().__init__(("127.0.0.1", 0), _Handler)
        self.calls: list[tuple[dict[str, str], bytes]] = []
        self.failures = failures

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}/hook"

    def wait_for(self, count: int, timeout: float = 15.0) -> list[tuple[dict[str, str], bytes]]:
        deadline = time.monotonic() + timeout
        while len(self.calls) < count and time.monotonic() < deadline:
            time.sleep(0.05)
        return self.calls


class _Handler(http.server.BaseHTTPRequestHandler):
    server: Receiver

    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers["Content-Length"]))
        self.server.calls.append(({k.lower(): v for k, v in self.headers.items()}, body))
        failing = len(self.server.calls) <= self.server.failures
        self.send_response(500 if failing else 204)
        self.end_headers()

    def log_message(self, *args: Any) -> None:
        pass


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    server = Receiver(failures=1)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield server
    server.shutdown()
    server.server_close()


def open_with_callbacks(tmp_path: Path, **settings: Any) -> Atelier:
    return open_test_atelier(
        tmp_path, webhook_allowed_hosts=("127.0.0.1",), webhook_secret=SECRET, webhook_allow_private=True, **settings
    )


def verified(headers: dict[str, str], body: bytes) -> bool:
    stamp, sent = (part.split("=", 1)[1] for part in headers["x-atelier-signature"].split(","))
    expected = hmac.new(SECRET.encode(), f"{stamp}.".encode() + body, hashlib.sha256).hexdigest()
    return hmac.compare_digest(expected, sent) and abs(time.time() - int(stamp)) < 60


async def test_the_callback_is_signed_retried_after_a_5xx_and_carries_the_ended_job(
    tmp_path: Path, receiver: Receiver
) -> None:
    atelier = open_with_callbacks(tmp_path)
    try:
        transport = httpx.ASGITransport(app=create_app(atelier))
        async with httpx.AsyncClient(transport=transport, base_url="http://a") as client:
            reply = await client.post("/v1/jobs", json={**SMALL, "callback_url": receiver.url})
            assert reply.status_code == 202, reply.text
            job_id = reply.json()["id"]
            assert reply.json()["params"]["callback_url"] == receiver.url
        calls = receiver.wait_for(2)
    finally:
        atelier.close()
    assert len(calls) == 2  # a 500, then the retry that succeeded: nothing more
    (first, body), (second, again) = calls
    assert body == again and first["x-atelier-delivery"] == second["x-atelier-delivery"]
    assert first["x-atelier-event"] == "job.ended" and verified(second, again)
    assert not verified({**second, "x-atelier-signature": second["x-atelier-signature"][:-1] + "0"}, again + b" ")
    payload = json.loads(again)
    assert payload["event"] == "job.ended" and payload["job"]["id"] == job_id
    assert payload["job"]["status"] == "succeeded" and payload["job"]["images"][0]["url"].startswith("/v1/images/")


def test_a_queued_job_cancelled_calls_back_once(tmp_path: Path, receiver: Receiver) -> None:
    receiver.failures = 0
    atelier = open_with_callbacks(tmp_path, start_worker=False)
    try:
        job = atelier.submit(**SMALL, callback_url=receiver.url)
        atelier.cancel(job.id)
        [(headers, body)] = receiver.wait_for(1)
    finally:
        atelier.close()
    assert verified(headers, body) and json.loads(body)["job"]["status"] == "cancelled"


async def test_a_callback_off_the_allow_list_or_with_callbacks_off_is_refused_and_nothing_stored(
    tmp_path: Path,
) -> None:
    for atelier, url, code in (
        (open_with_callbacks(tmp_path / "on"), "http://example.com/hook", "url_not_allowed"),
        (open_with_callbacks(tmp_path / "creds"), "http://user:pw@127.0.0.1/hook", "url_not_allowed"),
        (open_test_atelier(tmp_path / "off"), "http://127.0.0.1/hook", "webhooks_disabled"),
    ):
        try:
            transport = httpx.ASGITransport(app=create_app(atelier))
            async with httpx.AsyncClient(transport=transport, base_url="http://a") as client:
                reply = await client.post("/v1/jobs", json={**SMALL, "callback_url": url})
                assert reply.status_code == 422, reply.text
                assert (reply.json()["error"]["code"], reply.json()["error"]["field"]) == (code, "callback_url")
            assert atelier.jobs().total == 0
        finally:
            atelier.close()


def test_a_secret_is_required_with_allowed_hosts(tmp_path: Path) -> None:
    with pytest.raises(Exception, match="webhook_secret is required"):
        open_test_atelier(tmp_path, webhook_allowed_hosts=("hooks.example.com",))
