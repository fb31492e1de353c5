"""Request-scoped dependencies: the Atelier instance and the caller (resolved once per request by
``auth.AuthMiddleware``; these only read it)."""

from __future__ import annotations

from fastapi import Request

from app.composition import Container
from app.domain.errors import Unauthorized
from app.entrypoints.http.auth import Caller
from app.entrypoints.library import Atelier


def atelier(request: Request) -> Atelier:
    instance: Atelier = request.app.state.atelier
    return instance


def container(request: Request) -> Container:
    """The composition root of the instance: routes resolve their use cases and ports from it."""
    composed: Container = request.app.state.atelier.container
    return composed


def caller(request: Request) -> Caller:
    found = request.scope.get("state", {}).get("caller")
    if not isinstance(found, Caller) or found.owner == "anonymous":
        raise Unauthorized("A valid API key is required: send 'Authorization: Bearer <key>'.")
    return found


def owner(request: Request) -> str:
    """``local`` when the deployment has no API keys; otherwise a digest of the caller's key."""
    return caller(request).owner


def is_admin(request: Request) -> bool:
    """True without keys (the one local user) or for a key in ``admin_keys``."""
    return caller(request).admin


MAX_OFFSET = 1_000_000_000  # list offsets past this are refused (422), not passed to the database to overflow
