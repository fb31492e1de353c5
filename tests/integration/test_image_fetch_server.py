"""HttpImageFetcher against a real http.server on 127.0.0.1 (loopback only, so ``allow_private=True``),
then the library and the Diffusers-API endpoint fetching an init image by URL."""

from __future__ import annotations

import io
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import ClassVar

import pytest
from fastapi.testclient import TestClient
from PIL import Image

from app.adapters.imaging.fetch import HttpImageFetcher
from app.domain.errors import InvalidImage, InvalidParameters
from app.entrypoints.http.app import create_app
from app.entrypoints.library import Atelier


def png_bytes(size: tuple[int, int] = (64, 64)) -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", size, "red").save(buffer, format="PNG")
    return buffer.getvalue()


CAT = png_bytes()


class Handler(BaseHTTPRequestHandler):
    """Routes: /cat.png, /text, /missing, /slow, /big-length, /stream, /metadata, /hop/N (N redirects to go)."""

    hits: ClassVar[list[str]] = []

    def log_message(self, format: str, *args: object) -> None:  # keep the test output quiet
        pass

    def do_GET(self) -> None:
        self.hits.append(self.path)
        if self.path == "/cat.png":
            self._answer(200, CAT)
        elif self.path == "/text":
            self._answer(200, b"this is not an image at all")
        elif self.path == "/slow":
            time.sleep(1.0)
            self._answer(200, CAT)
        elif self.path == "/big-length":
            self.send_response(200)
            self.send_header("Content-Length", str(10**9))
            self.end_headers()  # and never a byte of body
        elif self.path == "/stream":
            self.send_response(200)
            self.end_headers()  # HTTP/1.0, no length: the body runs until the connection closes
            try:
                for _ in range(64):  # 4 MiB at most, so a broken client cannot keep the thread busy
                    self.wfile.write(b"x" * 65536)
            except OSError:
                pass  # the client hung up, as it should
        elif self.path == "/metadata":
            self._redirect("http://169.254.169.254/latest/meta-data/")
        elif self.path.startswith("/hop/"):
            left = int(self.path.removeprefix("/hop/"))
            self._redirect(f"/hop/{left - 1}" if left > 1 else "/cat.png")
        else:
            self._answer(404, b"not here")

    def _answer(self, status: int, body: bytes) -> None:
        try:
            self.send_response(status)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)
        except OSError:
            pass  # /slow: the client gave up first

    def _redirect(self, location: str) -> None:
        self.send_response(302)
        self.send_header("Location", location)
        self.send_header("Content-Length", "0")
        self.end_headers()


@pytest.fixture(scope="module")
def base() -> Iterator[str]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    server.daemon_threads, server.block_on_close = True, False
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


@pytest.fixture
def hits() -> list[str]:
    Handler.hits.clear()
    return Handler.hits


def loopback(max_bytes: int = 100_000, timeout: float = 2.0, allow_private: bool = True) -> HttpImageFetcher:
    return HttpImageFetcher(["127.0.0.1", "169.254.169.254"], max_bytes, timeout, allow_private=allow_private)


def test_success_returns_the_bytes(base: str, hits: list[str]) -> None:
    assert loopback().fetch(f"{base}/cat.png") == CAT and hits == ["/cat.png"]


def test_loopback_is_refused_before_connecting_unless_private_addresses_are_allowed(base: str, hits: list[str]) -> None:
    with pytest.raises(InvalidParameters) as caught:
        loopback(allow_private=False).fetch(f"{base}/cat.png")
    assert caught.value.code == "url_not_allowed" and "127.0.0.1" in caught.value.message
    assert hits == []


def test_disabled_and_off_list_urls_are_refused(base: str, hits: list[str]) -> None:
    with pytest.raises(InvalidParameters, match="not enabled on this deployment"):
        HttpImageFetcher([], 1000, 1.0, allow_private=True).fetch(f"{base}/cat.png")
    with pytest.raises(InvalidParameters, match="allow-list"):
        HttpImageFetcher(["localhost"], 1000, 1.0, allow_private=True).fetch(f"{base}/cat.png")
    assert hits == []


def test_a_redirect_to_cloud_metadata_is_refused(base: str, hits: list[str]) -> None:
    with pytest.raises(InvalidParameters) as caught:
        loopback().fetch(f"{base}/metadata")
    assert caught.value.code == "url_not_allowed" and hits == ["/metadata"]


def test_three_redirects_are_followed_and_a_fourth_is_refused(base: str, hits: list[str]) -> None:
    assert loopback().fetch(f"{base}/hop/3") == CAT
    assert hits == ["/hop/3", "/hop/2", "/hop/1", "/cat.png"]
    with pytest.raises(InvalidImage, match="more than 3"):
        loopback().fetch(f"{base}/hop/4")
    assert hits[4:] == ["/hop/4", "/hop/3", "/hop/2", "/hop/1"]


def test_size_limits(base: str, hits: list[str]) -> None:
    with pytest.raises(InvalidImage, match="1000000000 bytes"):
        loopback().fetch(f"{base}/big-length")
    with pytest.raises(InvalidImage) as caught:
        loopback(max_bytes=100_000).fetch(f"{base}/stream")
    assert caught.value.code == "image_too_large" and hits == ["/big-length", "/stream"]


def test_a_slow_server_hits_the_timeout(base: str, hits: list[str]) -> None:
    started = time.monotonic()
    with pytest.raises(InvalidImage) as caught:
        loopback(timeout=0.3).fetch(f"{base}/slow")
    assert caught.value.code == "image_fetch_timeout" and 0.3 <= time.monotonic() - started < 0.9


def test_http_errors_are_invalid_images(base: str, hits: list[str]) -> None:
    with pytest.raises(InvalidImage, match="HTTP 404"):
        loopback().fetch(f"{base}/missing")


@pytest.fixture
def atelier(tmp_path: Path) -> Iterator[Atelier]:
    instance = Atelier.open(
        data_dir=str(tmp_path), profile="test", fetch_allowed_hosts="127.0.0.1", fetch_allow_private=True
    )
    yield instance
    instance.close()


def test_the_library_stores_a_fetched_init_image(base: str, hits: list[str], atelier: Atelier) -> None:
    job = atelier.submit("猫", init_image=f"{base}/cat.png")
    assert job.params.init_image is not None and job.params.init_image.startswith("upload-")
    stored = atelier.container.images().input_image(job.params.init_image)
    assert (stored.width, stored.height) == (64, 64) and hits == ["/cat.png"]
    with pytest.raises(InvalidImage):
        atelier.submit("猫", init_image=f"{base}/text")  # fetched, then refused by the decoder
    assert atelier.jobs().total == 1


def predict(atelier: Atelier, **body: object) -> tuple[int, dict[str, object]]:
    reply = TestClient(create_app(atelier)).post("/api/predict", json={"task_id": "t", "prompt": "猫", **body})
    return reply.status_code, reply.json()


def test_diffusers_api_image_link(base: str, hits: list[str], atelier: Atelier, tmp_path: Path) -> None:
    status, answer = predict(atelier, func_name="i2i", image_link=f"{base}/cat.png", steps=1)
    assert status == 200 and answer["success"] == 1, answer
    assert atelier.jobs(limit=1).items[0].params.init_image.startswith("upload-") and hits == ["/cat.png"]
    status, answer = predict(atelier, image_link=f"{base}/text", steps=1)  # the link alone implies i2i
    assert (status, answer["error_code"]) == (462, 462) and "not a supported image" in str(answer["error_msg"])
    status, answer = predict(atelier, func_name="i2i", image_link=f"{base}/missing", steps=1)
    assert status == 462 and "HTTP 404" in str(answer["error_msg"])
    status, answer = predict(atelier, func_name="i2i", image_link="http://example.org/cat.png", steps=1)
    assert status == 460 and "allow-list" in str(answer["error_msg"])
    with Atelier.open(data_dir=str(tmp_path / "off"), profile="test") as disabled:
        status, answer = predict(disabled, func_name="i2i", image_link=f"{base}/cat.png", steps=1)
        assert (status, answer["error_code"]) == (460, 460) and "not enabled" in str(answer["error_msg"])
    assert hits == ["/cat.png", "/text", "/missing"] and atelier.jobs().total == 1
