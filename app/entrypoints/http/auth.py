"""Who is calling, enforced once for the whole application.

With API keys configured, every request needs a key unless its path is on the public list; a route
cannot be forgotten because the check runs before routing, as an ASGI middleware. Roles: a key in
``admin_keys`` is an admin. Admin-only paths (model edits change the model every key is served) answer
403 to other keys. The caller is left in the request scope for ``deps.caller``.
"""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Callable
from dataclasses import dataclass

from starlette.types import ASGIApp, Receive, Scope, Send

from app.entrypoints.http.errors import dialect_error
from app.settings import Settings

# Always public: liveness/readiness probes and the studio page's static files (the page asks for a key).
PUBLIC_PATHS = frozenset({"/healthz", "/readyz", "/", "/favicon.ico"})
PUBLIC_PREFIXES = ("/studio/",)
# Public when ``docs_public`` is on: the API description and the pages that render it.
DOCS_PATHS = frozenset({"/openapi.json", "/docs", "/redoc", "/docs/oauth2-redirect"})
DOCS_PREFIXES = ("/docs-assets/",)
# Paths only an admin key may call (the whole subtree).
ADMIN_PREFIXES = ("/v1/edits",)


@dataclass(frozen=True)
class Caller:
    """``owner`` scopes every stored resource; ``admin`` may change what all keys share."""

    owner: str
    admin: bool
    authenticated: bool


LOCAL = Caller(owner="local", admin=True, authenticated=False)


def owner_of(key: str) -> str:
    """The stored owner of a key: a digest, so the key itself is never stored."""
    return "key:" + hashlib.sha256(key.encode()).hexdigest()[:16]


def given_key(headers: dict[str, str]) -> str:
    header = headers.get("authorization", "")
    if header.lower().startswith("bearer "):
        return header[7:].strip()
    return headers.get("x-api-key", "").strip()


def identify(settings: Settings, key: str) -> Caller | None:
    """The caller a key stands for; ``LOCAL`` when the deployment has no keys; None for a wrong key."""
    if not settings.api_keys and not settings.admin_keys:
        return LOCAL
    if not key:
        return None
    encoded = key.encode()
    admin = any(hmac.compare_digest(encoded, k.encode()) for k in settings.admin_keys)
    user = any(hmac.compare_digest(encoded, k.encode()) for k in settings.api_keys)
    return Caller(owner_of(key), admin=admin, authenticated=True) if admin or user else None


def is_public(settings: Settings, path: str) -> bool:
    if path in PUBLIC_PATHS or path.startswith(PUBLIC_PREFIXES):
        return True
    return settings.docs_public and (path in DOCS_PATHS or path.startswith(DOCS_PREFIXES))


def needs_admin(path: str) -> bool:
    return any(path == prefix or path.startswith(prefix + "/") for prefix in ADMIN_PREFIXES)


class AuthMiddleware:
    """Resolves the caller of every HTTP request and refuses what it may not call."""

    def __init__(self, app: ASGIApp, settings: Callable[[], Settings]) -> None:
        self.app = app
        self.settings = settings  # read per request: the app may get its settings when it starts

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        path: str = scope["path"]
        settings = self.settings()
        headers = {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in scope["headers"]}
        caller = identify(settings, given_key(headers))
        if caller is None and not is_public(settings, path):
            message = "A valid API key is required: send 'Authorization: Bearer <key>' or 'X-API-Key: <key>'."
            response = dialect_error(path, 401, "unauthorized", message, {"WWW-Authenticate": "Bearer"})
            await response(scope, receive, send)
            return
        if caller is not None and not caller.admin and needs_admin(path):
            message = "This operation changes what every key is served and needs an admin key."
            await dialect_error(path, 403, "forbidden", message)(scope, receive, send)
            return
        scope.setdefault("state", {})["caller"] = caller or Caller("anonymous", admin=False, authenticated=False)
        await self.app(scope, receive, send)
