"""Nothing a client sends causes a server error or corrupts stored data, and no answer carries a server
path or exception text: invalid Unicode, out-of-range integers, deep nesting, oversized bodies (chunked
too, against a real server whose memory is watched), unwritable storage, an unreachable database."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from app.entrypoints.http.app import create_app
from app.entrypoints.library import Atelier
from tests.e2e.conftest import open_test_atelier
from tests.e2e.test_server_process import Server

pytestmark = pytest.mark.anyio
LISTS = ["/v1/jobs", "/v1/knowledge/queries", "/v1/prompt-sessions", "/v1/edits"]


def no_leak(text: str, *secrets: str) -> None:
    assert "Traceback" not in text and "Error:" not in text
    for secret in secrets:
        assert secret not in text


async def test_a_lone_surrogate_is_refused_everywhere_and_nothing_is_stored(
    client: httpx.AsyncClient, atelier: Atelier
) -> None:
    bad = '"\\udfff"'  # JSON's escape for a lone surrogate: json.loads accepts it, UTF-8 cannot carry it
    bodies = {
        "/v1/jobs": '{"prompt": "猫", "negative_prompt": %s}',
        "/v1/knowledge/queries": '{"question": %s}',
        "/v1/prompt-sessions": '{"prompt": %s}',
        "/v1/edits": '{"prompt": %s, "target": "x"}',
        "/sdapi/v1/txt2img": '{"prompt": %s}',
        "/v1/images/generations": '{"prompt": %s}',
        "/api/predict": '{"prompt": %s}',
    }
    for path, template in bodies.items():
        response = await client.post(path, content=template % bad, headers={"content-type": "application/json"})
        assert 400 <= response.status_code < 500 or response.status_code == 460, (path, response.status_code)
        assert "surrogate" in response.text, path
    assert atelier.jobs().total == 0
    for path in LISTS:
        assert (await client.get(path)).status_code == 200
    # a valid pair (an emoji escaped as two surrogates) is text like any other
    emoji = '{"prompt": "猫 \\ud83d\\ude00"}'
    pair = await client.post("/v1/jobs", content=emoji, headers={"content-type": "application/json"})
    assert pair.status_code == 202 and pair.json()["params"]["prompt"] == "猫 😀"


async def test_out_of_range_integers_and_deep_nesting_are_4xx(client: httpx.AsyncClient) -> None:
    for path in LISTS:
        response = await client.get(path, params={"offset": 9223372036854775808})
        assert response.status_code == 422 and response.json()["error"]["field"] == "offset", path
    huge = await client.post("/v1/jobs", json={"prompt": "猫", "seed": 2**70, "steps": 10**30})
    assert huge.status_code == 422
    deep = "[" * 100_000 + "]" * 100_000
    for path in ["/v1/jobs", "/sdapi/v1/txt2img", "/v1/images/generations", "/api/predict"]:
        response = await client.post(path, content=deep, headers={"content-type": "application/json"})
        assert response.status_code in (400, 460), (path, response.status_code)
        assert "deep" in response.text
    assert (await client.post("/v1/jobs", json=[1, 2])).status_code == 422


async def test_a_row_stored_before_text_was_checked_does_not_break_the_list(atelier: Atelier) -> None:
    """Rows written by an older version (or another tool) may hold a lone surrogate; the list still renders."""
    job = atelier.submit("猫", steps=2)
    store = atelier.container.memory_jobs()
    stored, version = store.rows[job.id]
    object.__setattr__(stored.params, "negative_prompt", "x\udfffy")  # past the checks, as an old row would be
    store.rows[job.id] = (stored, version)
    app = create_app(atelier)
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://a") as c:
        listed = await c.get("/v1/jobs")
        assert listed.status_code == 200 and listed.json()["items"][0]["params"]["negative_prompt"] == "x\ufffdy"
        assert (await c.get(f"/v1/jobs/{job.id}")).status_code == 200


async def test_method_not_allowed_names_the_allowed_ones(client: httpx.AsyncClient) -> None:
    response = await client.delete("/v1/jobs")
    assert response.status_code == 405 and set(response.headers["allow"].split(", ")) >= {"GET", "POST"}
    assert response.json()["error"]["code"] == "method_not_allowed"


async def test_unwritable_storage_is_a_507_without_a_path(tmp_path: Path) -> None:
    with open_test_atelier(tmp_path) as atelier:
        # The images folder cannot be made: a file holds its place (unwritable for root too, unlike chmod).
        Path(atelier.settings.images_dir).write_text("not a folder")
        app = create_app(atelier)
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://a") as c:
            upload = await c.post("/v1/uploads", files={"file": ("a.png", _png(), "image/png")})
            assert upload.status_code == 507 and upload.json()["error"]["code"] == "storage_unavailable"
            no_leak(upload.text, str(tmp_path))
            job = (await c.post("/v1/jobs", json={"prompt": "猫", "steps": 2})).json()
            done = atelier.wait(job["id"], timeout=30)
            assert done.error_code == "storage_unavailable"
            no_leak(done.error_message or "", str(tmp_path))
            shown = (await c.get(f"/v1/jobs/{job['id']}")).text
            no_leak(shown, str(tmp_path))


def _png() -> bytes:
    import io

    from PIL import Image

    buffer = io.BytesIO()
    Image.new("RGB", (64, 64), "red").save(buffer, format="PNG")
    return buffer.getvalue()


async def test_database_down_is_a_503_without_host_or_port(tmp_path: Path) -> None:
    url = "postgresql+psycopg://atelier@127.0.0.1:1/atelier"
    atelier = Atelier.open(data_dir=str(tmp_path), database_url=url, recover=False)
    try:
        app = create_app(atelier)
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://a") as c:
            for path in ["/v1/jobs", "/healthz", "/readyz"]:
                response = await c.get(path)
                assert response.status_code == 503, path
                no_leak(response.text, "127.0.0.1", ":1/", "psycopg", "connection")
    finally:
        atelier.close()


async def test_models_show_their_source_to_admins_only(tmp_path: Path) -> None:
    with open_test_atelier(tmp_path, api_keys=("user",), admin_keys=("root",)) as atelier:
        app = create_app(atelier)
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://a") as c:
            user = (await c.get("/v1/models", headers={"X-API-Key": "user"})).json()["data"]
            root = (await c.get("/v1/models", headers={"X-API-Key": "root"})).json()["data"]
            assert user[0]["name"] == "demo" and user[0]["source"] is None
            assert root[0]["source"] == "memory://demo"


@pytest.fixture
def small_server(tmp_path: Path) -> Iterator[Server]:
    server = Server(str(tmp_path), {"ATELIER_PROFILE": "test", "ATELIER_MAX_REQUEST_BYTES": "5000000"})
    server.start()
    yield server
    server.stop()


def rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise AssertionError("no VmRSS")


@pytest.mark.slow
@pytest.mark.parametrize(
    ("path", "content_type"),
    [("/v1/jobs", "application/json"), ("/v1/uploads", "multipart/form-data; boundary=x"), ("/api/predict", None)],
)
def test_a_chunked_100_mb_body_is_refused_without_the_server_holding_it(
    small_server: Server, path: str, content_type: str | None
) -> None:
    assert small_server.proc is not None
    before = rss_mb(small_server.proc.pid)
    sent = 0

    def body() -> Iterator[bytes]:  # no Content-Length: the body arrives chunked
        nonlocal sent
        chunk = b"[" + b"0," * 32767 + b"0"
        for _ in range(100 * 2**20 // len(chunk)):
            sent += len(chunk)
            yield chunk

    headers: dict[str, Any] = {"content-type": content_type} if content_type else {}
    try:
        response = httpx.post(small_server.url + path, content=body(), headers=headers, timeout=60)
        status = response.status_code
    except httpx.HTTPError:  # the server may close the connection while the client is still sending
        status = 413
    assert status in (413,), status
    assert rss_mb(small_server.proc.pid) - before < 10
    assert sent < 100 * 2**20  # it did not read the whole body first
    assert httpx.get(small_server.url + "/healthz", timeout=5).status_code == 200
