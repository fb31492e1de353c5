"""The API docs, /docs (Swagger UI) and /redoc (ReDoc), rendered with no network.

FastAPI's own pages load their assets from a CDN; these are the same pages pointed at the copies that
``fastapi-offline`` ships, served by this app under ``/docs-assets``. The routes are plain GET routes, so an
authentication dependency can be put in front of them like any other.

Each page carries its own Content-Security-Policy, the default one plus only what the page needs:

- Swagger UI and its OAuth2 redirect page start with an inline script that FastAPI writes; the policy
  allows exactly that script by its SHA-256 hash (computed from the served HTML, so it follows FastAPI).
- ReDoc styles itself at run time by inserting ``<style>`` elements (styled-components), and runs its search
  index in a Web Worker built from a ``blob:`` URL: ``style-src 'unsafe-inline'`` and ``worker-src blob:``
  on /redoc only. Its scripts stay ``'self'``.
"""

from __future__ import annotations

import base64
import hashlib
import re
from functools import cache
from pathlib import Path

import fastapi_offline
from fastapi import APIRouter, FastAPI, Request, Response
from fastapi.openapi.docs import get_redoc_html, get_swagger_ui_html, get_swagger_ui_oauth2_redirect_html
from fastapi.responses import HTMLResponse
from fastapi.staticfiles import StaticFiles

from app.entrypoints.http.headers import content_security_policy

ASSETS = Path(fastapi_offline.__file__).with_name("static")
ASSETS_URL = "/docs-assets"
# persistAuthorization keeps the API key entered under "Authorize" across reloads; validatorUrl None stops
# Swagger UI from loading a badge image from validator.swagger.io.
SWAGGER_PARAMETERS = {"persistAuthorization": True, "validatorUrl": None}
REDOC_CSP = content_security_policy(style_src="'unsafe-inline'", worker_src="blob:")
# ReDoc's side menu always shows the vendor's logo from their CDN; served without it, the page loads nothing
# from elsewhere (an image that fails to load is hidden by ReDoc itself).
REDOC_REMOTE_LOGO = b"https://cdn.redoc.ly/redoc/logo-mini.svg"
_INLINE_SCRIPT = re.compile(r"<script>(.*?)</script>", re.DOTALL)


def with_script_hashes(page: HTMLResponse) -> HTMLResponse:
    """Allow the page's own inline scripts, and no other, by their hashes."""
    body = bytes(page.body).decode("utf-8")
    hashes = " ".join(
        f"'sha256-{base64.b64encode(hashlib.sha256(script.encode()).digest()).decode()}'"
        for script in _INLINE_SCRIPT.findall(body)
    )
    page.headers["Content-Security-Policy"] = content_security_policy(script_src=hashes)
    return page


@cache
def _redoc_bundle() -> tuple[bytes, str]:
    bundle = (ASSETS / "redoc.standalone.js").read_bytes().replace(REDOC_REMOTE_LOGO, b"data:,")
    return bundle, f'"{hashlib.sha256(bundle).hexdigest()[:32]}"'


def install(app: FastAPI) -> None:
    """Serve the docs pages and their assets; call with ``docs_url=None, redoc_url=None`` in the app."""
    openapi_url = app.openapi_url
    if openapi_url is None:
        return
    redirect_url = app.swagger_ui_oauth2_redirect_url
    router = APIRouter(include_in_schema=False)

    def root(request: Request) -> str:
        return str(request.scope.get("root_path", "")).rstrip("/")

    @router.get("/docs", response_class=HTMLResponse)
    def swagger_ui(request: Request) -> HTMLResponse:
        assets = root(request) + ASSETS_URL
        page = get_swagger_ui_html(
            openapi_url=root(request) + openapi_url,
            title=f"{app.title} - Swagger UI",
            oauth2_redirect_url=root(request) + redirect_url if redirect_url else None,
            swagger_js_url=f"{assets}/swagger-ui-bundle.js",
            swagger_css_url=f"{assets}/swagger-ui.css",
            swagger_favicon_url=f"{assets}/favicon.png",
            swagger_ui_parameters={**(app.swagger_ui_parameters or {}), **SWAGGER_PARAMETERS},
        )
        return with_script_hashes(page)

    if redirect_url:

        @router.get(redirect_url, response_class=HTMLResponse)
        def swagger_ui_oauth2_redirect() -> HTMLResponse:
            return with_script_hashes(get_swagger_ui_oauth2_redirect_html())

    @router.get("/redoc", response_class=HTMLResponse)
    def redoc(request: Request) -> HTMLResponse:
        assets = root(request) + ASSETS_URL
        page = get_redoc_html(
            openapi_url=root(request) + openapi_url,
            title=f"{app.title} - ReDoc",
            redoc_js_url=f"{assets}/redoc.standalone.js",
            redoc_favicon_url=f"{assets}/favicon.png",
            with_google_fonts=False,
        )
        page.headers["Content-Security-Policy"] = REDOC_CSP
        return page

    @router.get(f"{ASSETS_URL}/redoc.standalone.js")
    def redoc_bundle(request: Request) -> Response:
        bundle, etag = _redoc_bundle()
        if request.headers.get("if-none-match") == etag:
            return Response(status_code=304, headers={"ETag": etag})
        return Response(bundle, media_type="text/javascript", headers={"ETag": etag})

    app.include_router(router)
    app.mount(ASSETS_URL, StaticFiles(directory=ASSETS), name="docs-assets")
