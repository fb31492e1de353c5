"""Limits every request passes before a route sees it: the body's size and form, and a rate per key.

``BodyGuard`` counts body bytes as they arrive, so a chunked body without ``Content-Length`` is held to
the same limit as a declared one; it keeps what arrives in a spooled file (memory up to 1 MiB, then
disk), so refusing an oversized body costs no memory. A complete JSON body is decoded once here and
refused when it nests too deep or holds text that is not valid Unicode, in the shape of the API that
owns the path, before anything can be stored. ``RateLimit`` is a token bucket per key.
"""

from __future__ import annotations

import json
import math
import tempfile
import threading
import time
from collections.abc import Callable
from typing import Any

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from app.domain.errors import InvalidParameters
from app.domain.text import check_document
from app.entrypoints.http.errors import dialect_error
from app.settings import Settings

SPOOL_IN_MEMORY = 1 << 20
CHUNK = 1 << 16
FORM_TYPES = ("multipart/form-data", "application/x-www-form-urlencoded")


def _header(scope: Scope, name: bytes) -> str:
    for key, value in scope["headers"]:
        if key.lower() == name:
            return str(value.decode("latin-1"))
    return ""


def problem_in_json(body: bytes) -> InvalidParameters | None:
    """Why a JSON body must be refused here, or None (bodies that are not JSON are the route's to refuse)."""
    try:
        document = json.loads(body)
    except RecursionError:
        return InvalidParameters("The request body nests too deep.", code="too_deep")
    except ValueError:  # not JSON (or not UTF-8): the route answers in its own words
        return None
    try:
        check_document(document)
    except InvalidParameters as error:
        return error
    return None


class BodyGuard:
    def __init__(self, app: ASGIApp, settings: Callable[[], Settings]) -> None:
        self.app = app
        self.settings = settings

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["method"] in ("GET", "HEAD", "OPTIONS", "DELETE"):
            await self.app(scope, receive, send)
            return
        limit = self.settings().max_request_bytes
        path: str = scope["path"]
        declared = _header(scope, b"content-length")
        if declared.isdigit() and int(declared) > limit:
            await self._too_large(path, declared, limit, scope, receive, send)
            return
        with tempfile.SpooledTemporaryFile(max_size=SPOOL_IN_MEMORY) as spool:
            size, more = 0, True
            while more:
                message = await receive()
                if message["type"] == "http.disconnect":
                    return
                chunk = message.get("body", b"")
                size += len(chunk)
                if size > limit:
                    await self._too_large(path, None, limit, scope, receive, send)
                    return
                spool.write(chunk)
                more = message.get("more_body", False)
            spool.seek(0)
            content_type = _header(scope, b"content-type").lower()
            if size and not content_type.startswith(FORM_TYPES):
                body = spool.read()
                problem = problem_in_json(body)
                if problem is not None:
                    status = 400 if problem.code == "too_deep" else 422
                    response = dialect_error(path, status, problem.code, problem.message, field=problem.field)
                    await response(scope, receive, send)
                    return
                await self.app(scope, _replay([body], receive), send)
                return
            await self.app(scope, _replay(iter(lambda: spool.read(CHUNK), b""), receive), send)

    @staticmethod
    async def _too_large(
        path: str, declared: str | None, limit: int, scope: Scope, receive: Receive, send: Send
    ) -> None:
        size = f"has {declared} bytes" if declared else "is larger than that"
        message = f"The request body {size}; at most {limit} bytes are accepted."
        await dialect_error(path, 413, "request_too_large", message, {"Connection": "close"})(scope, receive, send)


def _replay(chunks: Any, receive: Receive) -> Receive:
    """A ``receive`` that hands the app the buffered body, then defers to the connection (disconnects)."""
    pending = list(chunks)
    done = False

    async def replay() -> Message:
        nonlocal done
        if done:
            return await receive()
        if not pending:
            done = True
            return {"type": "http.request", "body": b"", "more_body": False}
        chunk = pending.pop(0)
        done = not pending
        return {"type": "http.request", "body": chunk, "more_body": bool(pending)}

    return replay


class TokenBuckets:
    """``rate`` requests a minute per key, with bursts up to a minute's worth (thread-safe)."""

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self._clock = clock
        self._buckets: dict[str, tuple[float, float]] = {}
        self._lock = threading.Lock()

    def take(self, key: str, rate: int) -> float:
        """0 when a request may go now, else the seconds until it may."""
        now = self._clock()
        with self._lock:
            tokens, stamp = self._buckets.get(key, (float(rate), now))
            tokens = min(float(rate), tokens + (now - stamp) * rate / 60.0)
            if tokens >= 1.0:
                self._buckets[key] = (tokens - 1.0, now)
                return 0.0
            self._buckets[key] = (tokens, now)
            return (1.0 - tokens) * 60.0 / rate


class RateLimit:
    """``requests_per_minute`` per API key (only where keys are configured: without keys there are none)."""

    def __init__(self, app: ASGIApp, settings: Callable[[], Settings]) -> None:
        self.app = app
        self.settings = settings
        self.buckets = TokenBuckets()

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        caller = scope.get("state", {}).get("caller") if scope["type"] == "http" else None
        rate = self.settings().requests_per_minute
        if caller is not None and caller.authenticated and rate:
            wait = self.buckets.take(caller.owner, rate)
            if wait > 0:
                retry = max(1, math.ceil(wait))
                message = f"More than {rate} requests a minute with this key; retry in {retry} s."
                response = dialect_error(scope["path"], 429, "rate_limited", message, {"Retry-After": str(retry)})
                await response(scope, receive, send)
                return
        await self.app(scope, receive, send)
