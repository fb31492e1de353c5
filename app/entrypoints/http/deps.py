"""Request-scoped dependencies: the Atelier instance and the caller's identity."""

from __future__ import annotations

import hashlib
import hmac

from fastapi import Request

from app.domain.errors import Unauthorized
from app.entrypoints.library import Atelier


def atelier(request: Request) -> Atelier:
    instance: Atelier = request.app.state.atelier
    return instance


def owner(request: Request) -> str:
    """``local`` when the deployment has no API keys; otherwise a key is required and the
    owner is a digest of it (the key itself is never stored)."""
    keys: tuple[str, ...] = request.app.state.atelier.settings.api_keys
    if not keys:
        return "local"
    header = request.headers.get("authorization", "")
    given = header[7:].strip() if header.lower().startswith("bearer ") else request.headers.get("x-api-key", "")
    if not any(hmac.compare_digest(given.encode(), key.encode()) for key in keys):
        raise Unauthorized("A valid API key is required: send 'Authorization: Bearer <key>'.")
    return "key:" + hashlib.sha256(given.encode()).hexdigest()[:16]
