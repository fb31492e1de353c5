"""The API docs render with no network, every response carries the security headers, and CORS is off
unless origins are configured. The browser tests drive Debian's Chromium (as ``test_studio.py`` does) against
a real ``atelier serve`` and fail on any Content-Security-Policy violation or request to another host."""

from __future__ import annotations

import base64
import hashlib
import io
import os
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import httpx
import pytest
from PIL import Image

from app.entrypoints.http.app import create_app
from app.entrypoints.http.headers import CSP, content_security_policy
from tests.e2e.conftest import open_test_atelier
from tests.e2e.test_server_process import Server

pytestmark = pytest.mark.anyio

CHROMIUM = os.environ.get("ATELIER_TEST_CHROMIUM", "/usr/bin/chromium")
ARGS = ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run", "--disable-background-networking"]
ORIGIN = "https://studio.example"
KEY = "docs-test-key"
SECURITY_HEADERS = {
    "x-content-type-options": "nosniff",
    "referrer-policy": "no-referrer",
    "x-frame-options": "DENY",
    "cross-origin-opener-policy": "same-origin",
}


def policy(response: httpx.Response) -> dict[str, str]:
    directives = (d.strip().split(" ", 1) for d in response.headers["content-security-policy"].split(";"))
    return {name: sources for name, sources in directives}


def sha256(script: str) -> str:
    return f"'sha256-{base64.b64encode(hashlib.sha256(script.encode()).digest()).decode()}'"


@pytest.mark.parametrize("path", ["/", "/docs", "/redoc", "/v1/models", "/studio/studio.js", "/no-such-page"])
async def test_every_response_carries_the_security_headers(client: httpx.AsyncClient, path: str) -> None:
    response = await client.get(path)
    assert response.status_code == (404 if path == "/no-such-page" else 200)
    for name, value in SECURITY_HEADERS.items():
        assert response.headers[name] == value, name
    directives = policy(response)
    assert directives["frame-ancestors"] == "'none'" and directives["object-src"] == "'none'"
    if path not in ("/docs", "/redoc"):
        assert directives == CSP


async def test_only_the_docs_pages_relax_the_policy_and_only_as_far_as_they_need(client: httpx.AsyncClient) -> None:
    for path in ("/docs", "/docs/oauth2-redirect"):
        page = await client.get(path)
        scripts = re.findall(r"<script>(.*?)</script>", page.text, re.DOTALL)
        assert scripts, path
        expected = content_security_policy(script_src=" ".join(sha256(script) for script in scripts))
        assert page.headers["content-security-policy"] == expected, path
    redoc = policy(await client.get("/redoc"))
    assert redoc == {**CSP, "style-src": "'self' 'unsafe-inline'", "worker-src": "blob:"}


async def test_docs_pages_reference_only_their_own_assets(client: httpx.AsyncClient) -> None:
    expected = {
        "/docs": {
            "/docs-assets/swagger-ui-bundle.js": "text/javascript",
            "/docs-assets/swagger-ui.css": "text/css",
            "/docs-assets/favicon.png": "image/png",
        },
        "/redoc": {"/docs-assets/redoc.standalone.js": "text/javascript", "/docs-assets/favicon.png": "image/png"},
    }
    for path, assets in expected.items():
        page = await client.get(path)
        assert page.status_code == 200 and page.headers["content-type"].startswith("text/html")
        assert not re.search(r"https?://|//[a-z]", page.text), path
        assert set(re.findall(r'(?:src|href)="([^"]+)"', page.text)) == set(assets), path
        for url, content_type in assets.items():
            asset = await client.get(url)
            assert asset.status_code == 200 and asset.headers["content-type"].startswith(content_type), url
            assert len(asset.content) > 1000, url
    swagger = (await client.get("/docs")).text
    assert '"persistAuthorization": true' in swagger and '"validatorUrl": null' in swagger
    assert "'/openapi.json'" in swagger and "'/docs/oauth2-redirect'" in swagger


async def test_the_redoc_bundle_is_served_without_its_cdn_logo_and_revalidates(client: httpx.AsyncClient) -> None:
    bundle = await client.get("/docs-assets/redoc.standalone.js")
    assert b"cdn.redoc.ly" not in bundle.content and len(bundle.content) > 500_000
    again = await client.get("/docs-assets/redoc.standalone.js", headers={"If-None-Match": bundle.headers["etag"]})
    assert again.status_code == 304 and not again.content


async def test_docs_are_get_routes_outside_the_schema(client: httpx.AsyncClient) -> None:
    paths = (await client.get("/openapi.json")).json()["paths"]
    assert not [p for p in paths if p.startswith(("/docs", "/redoc"))]
    assert (await client.post("/docs")).status_code == 405


async def test_cors_is_off_by_default(client: httpx.AsyncClient) -> None:
    response = await client.get("/v1/models", headers={"Origin": ORIGIN})
    assert response.status_code == 200 and "access-control-allow-origin" not in response.headers
    preflight = await client.options("/v1/jobs", headers={"Origin": ORIGIN, "Access-Control-Request-Method": "POST"})
    assert "access-control-allow-origin" not in preflight.headers


async def test_cors_allows_exactly_the_configured_origins(tmp_path: Path) -> None:
    atelier = open_test_atelier(tmp_path, cors_origins=(ORIGIN,))
    try:
        transport = httpx.ASGITransport(app=create_app(atelier))
        async with httpx.AsyncClient(transport=transport, base_url="http://atelier") as client:
            allowed = await client.get("/v1/models", headers={"Origin": ORIGIN})
            assert allowed.headers["access-control-allow-origin"] == ORIGIN
            assert "access-control-allow-credentials" not in allowed.headers
            other = await client.get("/v1/models", headers={"Origin": "https://elsewhere.example"})
            assert other.status_code == 200 and "access-control-allow-origin" not in other.headers
            preflight = await client.options(
                "/v1/jobs",
                headers={
                    "Origin": ORIGIN,
                    "Access-Control-Request-Method": "DELETE",
                    "Access-Control-Request-Headers": "authorization, content-type, x-api-key",
                },
            )
            assert preflight.status_code == 200 and preflight.headers["access-control-allow-origin"] == ORIGIN
            methods = {m.strip() for m in preflight.headers["access-control-allow-methods"].split(",")}
            assert methods == {"GET", "POST", "DELETE", "OPTIONS"}
            assert preflight.headers["x-frame-options"] == "DENY"
            refused = await client.options(
                "/v1/jobs", headers={"Origin": ORIGIN, "Access-Control-Request-Method": "PUT"}
            )
            assert refused.status_code == 400
    finally:
        atelier.close()


async def test_a_refused_request_still_carries_the_headers_a_browser_needs(tmp_path: Path) -> None:
    atelier = open_test_atelier(tmp_path, cors_origins=(ORIGIN,), api_keys=(KEY,))
    try:
        transport = httpx.ASGITransport(app=create_app(atelier))
        async with httpx.AsyncClient(transport=transport, base_url="http://atelier") as client:
            refused = await client.get("/v1/models", headers={"Origin": ORIGIN})
            assert refused.status_code == 401 and refused.headers["access-control-allow-origin"] == ORIGIN
            assert policy(refused) == CSP and refused.headers["x-content-type-options"] == "nosniff"
            preflight = await client.options(
                "/v1/models", headers={"Origin": ORIGIN, "Access-Control-Request-Method": "GET"}
            )
            assert preflight.status_code == 200  # a preflight carries no key and needs none
    finally:
        atelier.close()


async def test_cors_from_the_environment_when_the_atelier_opens_later(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("ATELIER_DATA_DIR", str(tmp_path))
    monkeypatch.setenv("ATELIER_CORS_ORIGINS", f"{ORIGIN}, https://second.example")
    app = create_app()  # no atelier yet: a preflight is answered before anything needs one
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://atelier") as client:
        for origin, allowed in ((ORIGIN, True), ("https://second.example", True), ("https://x.example", False)):
            preflight = await client.options(
                "/v1/jobs", headers={"Origin": origin, "Access-Control-Request-Method": "POST"}
            )
            assert (preflight.headers.get("access-control-allow-origin") == origin) is allowed, origin
            assert preflight.headers["x-content-type-options"] == "nosniff"


# ---------- in a real browser ----------


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    playwright_api = pytest.importorskip(
        "playwright.sync_api", reason="playwright is not installed (it comes with the dev extra: make setup)"
    )
    if not Path(CHROMIUM).is_file():
        pytest.skip(
            f"no Chromium at {CHROMIUM}: `make test` installs Debian's chromium package only when run as root with "
            "apt-get; install it (or set ATELIER_TEST_CHROMIUM) to run the browser tests"
        )
    with playwright_api.sync_playwright() as p:
        instance = p.chromium.launch(executable_path=CHROMIUM, headless=True, args=ARGS)
        yield instance
        instance.close()


def serve(root: Path, **env: str) -> Iterator[str]:
    srv = Server(str(root), env={"ATELIER_EMBEDDER": "hashing", **env})
    srv.start()
    yield srv.url
    srv.stop()


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    yield from serve(tmp_path_factory.mktemp("docs"))


@pytest.fixture(scope="module")
def keyed_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    yield from serve(tmp_path_factory.mktemp("docs-keyed"), ATELIER_API_KEYS=KEY)


class Watched:
    """A browser context whose pages report CSP violations, script errors and requests to other hosts."""

    def __init__(self, browser: Any, server: str) -> None:
        self.context = browser.new_context(viewport={"width": 1280, "height": 900}, locale="en-US")
        self.context.set_default_timeout(60_000)
        self.host = urlsplit(server).netloc
        self.problems: list[str] = []
        self.context.on("page", self.watch)

    def watch(self, page: Any) -> None:
        def console(message: Any) -> None:
            if "Content Security Policy" in message.text:
                self.problems.append(message.text)

        def request(request: Any) -> None:
            url = urlsplit(request.url)
            if url.scheme in ("http", "https") and url.netloc != self.host:
                self.problems.append(f"request to another host: {request.url}")

        page.on("console", console)
        page.on("pageerror", lambda error: self.problems.append(f"script error: {error}"))
        page.on("request", request)

    def page(self) -> Any:
        return self.context.new_page()


@pytest.fixture
def watched(browser: Any, server: str) -> Iterator[Watched]:
    context = Watched(browser, server)
    yield context
    context.context.close()


def distinct_colours(png: bytes) -> int:
    return len(Image.open(io.BytesIO(png)).convert("RGB").getcolors(maxcolors=1 << 24) or [])


def try_it_out(page: Any, path: str) -> Any:
    """Swagger UI's GET operation on ``path``, expanded and editable; returns its block."""
    page.locator(".opblock").nth(10).wait_for()  # more than 10 operations rendered
    block = page.locator(".opblock", has=page.locator(f'.opblock-summary-path[data-path="{path}"]'))
    block.locator(".opblock-summary").click()
    block.get_by_role("button", name="Try it out").click()
    return block


def execute(block: Any, status: str) -> None:
    block.get_by_role("button", name="Execute").click()
    block.locator(".live-responses-table .response-col_status").get_by_text(status).wait_for()


@pytest.mark.slow
def test_swagger_ui_renders_and_calls_the_api_under_the_policy(watched: Watched, server: str, tmp_path: Path) -> None:
    page = watched.page()
    page.goto(server + "/docs")
    execute(try_it_out(page, "/healthz"), "200")
    shot = tmp_path / "docs.png"
    page.screenshot(path=str(shot), full_page=False)
    assert distinct_colours(shot.read_bytes()) > 1
    page.wait_for_timeout(300)  # a violation reported late still lands in the list
    assert not watched.problems


@pytest.mark.slow
def test_swagger_ui_sends_the_api_key_and_keeps_it_for_the_next_visit(browser: Any, keyed_server: str) -> None:
    watched = Watched(browser, keyed_server)
    try:
        page = watched.page()
        page.goto(keyed_server + "/docs")
        models = try_it_out(page, "/v1/models")
        execute(models, "401")
        page.locator("button.authorize").first.click()
        form = page.locator(".auth-container form", has=page.locator("#api_key_value"))
        form.locator("#api_key_value").fill(KEY)
        form.get_by_role("button", name="Apply credentials").click()
        page.locator(".modal-ux .close-modal").click()
        execute(models, "200")
        assert f"X-API-Key: {KEY}" in models.locator(".curl-command").inner_text()
        again = watched.page()  # persistAuthorization: the key is still there in a freshly loaded page
        again.goto(keyed_server + "/docs")
        execute(try_it_out(again, "/v1/models"), "200")
        page.wait_for_timeout(300)
        assert not watched.problems
    finally:
        watched.context.close()


@pytest.mark.slow
def test_redoc_renders_under_the_policy(watched: Watched, server: str, tmp_path: Path) -> None:
    page = watched.page()
    page.goto(server + "/redoc")
    page.locator("[data-section-id]").nth(10).wait_for()
    page.locator(".api-content").wait_for()
    page.get_by_placeholder("Search...").fill("jobs")
    page.locator('[data-role="search:results"] li').first.wait_for()
    shot = tmp_path / "redoc.png"
    page.screenshot(path=str(shot))
    assert distinct_colours(shot.read_bytes()) > 1
    page.wait_for_timeout(300)
    assert not watched.problems


@pytest.mark.slow
def test_the_studio_renders_under_the_policy_and_links_to_the_docs(watched: Watched, server: str) -> None:
    page = watched.page()
    page.goto(server + "/")
    page.wait_for_selector("body[data-ready=true]")
    with watched.context.expect_page() as opened:
        page.locator('a[href="/docs"]').click()
    docs = opened.value
    docs.locator(".opblock").nth(10).wait_for()
    assert docs.url == server + "/docs"
    page.wait_for_timeout(300)
    assert not watched.problems
