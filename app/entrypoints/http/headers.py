"""Security headers on every response, and CORS when the settings name browser origins.

The Content-Security-Policy allows only this server: no CDN, no inline script, no framing. A route whose
page truly needs more (the API docs) sends its own ``Content-Security-Policy``, built with
:func:`content_security_policy`; the middleware keeps it and fills in everything else.
"""

from __future__ import annotations

from fastapi import FastAPI
from starlette.middleware.cors import CORSMiddleware
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from app.settings import Settings, load_settings

CSP = {
    "default-src": "'self'",
    "img-src": "'self' data: blob:",  # the studio shows images as blob: URLs; CSS icons are data: URLs
    "style-src": "'self'",
    "script-src": "'self'",
    "connect-src": "'self'",
    "frame-ancestors": "'none'",
    "base-uri": "'self'",
    "form-action": "'self'",
    "object-src": "'none'",
}
HEADERS = {
    "x-content-type-options": "nosniff",
    # No Referer at all: nothing here needs one, and page URLs carry job and image ids.
    "referrer-policy": "no-referrer",
    "x-frame-options": "DENY",
    "cross-origin-opener-policy": "same-origin",
}
CORS_METHODS = ["GET", "POST", "DELETE", "OPTIONS"]
CORS_HEADERS = ["Authorization", "Content-Type", "X-API-Key"]


def content_security_policy(**extra: str) -> str:
    """The default policy with ``extra`` sources appended (``script_src="'sha256-…'"`` → ``script-src``)."""
    directives = dict(CSP)
    for name, sources in extra.items():
        key = name.replace("_", "-")
        directives[key] = f"{directives[key]} {sources}" if key in directives else sources
    return "; ".join(f"{key} {value}" for key, value in directives.items())


class SecurityHeaders:
    """Pure ASGI (no buffering), so streamed responses such as job events pass through untouched."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app
        defaults = {**HEADERS, "content-security-policy": content_security_policy()}
        self.defaults = [(name.encode(), value.encode()) for name, value in defaults.items()]

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return

        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = list(message.get("headers", []))
                present = {name.lower() for name, _ in headers}
                headers += [(name, value) for name, value in self.defaults if name not in present]
                message = {**message, "headers": headers}
            await send(message)

        await self.app(scope, receive, send_with_headers)


def install(app: FastAPI, settings: Settings | None) -> None:
    """``settings`` None (the atelier opens later, in the lifespan): read them from the environment now."""
    origins = (settings or load_settings()).cors_origins
    if origins:
        app.add_middleware(
            CORSMiddleware,
            allow_origins=list(origins),
            allow_methods=CORS_METHODS,
            allow_headers=CORS_HEADERS,
            allow_credentials=False,
        )
    # Added last, so outermost: CORS preflight answers get the headers too.
    app.add_middleware(SecurityHeaders)
