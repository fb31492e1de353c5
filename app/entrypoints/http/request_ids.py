"""A request id for every HTTP request: the client's ``X-Request-ID`` when it is a sane token, else a new one.

It is answered in ``X-Request-ID``, carried by every log line the request causes (the jobs it submits too), and,
with JSON logs, each request ends with one ``request`` line: method, path, status and seconds."""

from __future__ import annotations

import logging
import re
import time
import uuid
from collections.abc import Callable

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from app.ports import log_context
from app.settings import Settings

HEADER = "x-request-id"
_TOKEN = re.compile(r"[A-Za-z0-9._:-]{1,64}")
log = logging.getLogger("atelier.http")


class RequestIds:
    def __init__(self, app: ASGIApp, settings: Callable[[], Settings]) -> None:
        self.app = app
        self.settings = settings

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        given = next((v.decode("latin-1") for k, v in scope["headers"] if k.decode("latin-1").lower() == HEADER), "")
        request_id = given if _TOKEN.fullmatch(given) else uuid.uuid4().hex
        token = log_context.request_id.set(request_id)
        started, status = time.perf_counter(), 500

        async def send_with_id(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
                message["headers"] = [*message.get("headers", []), (HEADER.encode(), request_id.encode())]
            await send(message)

        try:
            await self.app(scope, receive, send_with_id)
        finally:
            if self.settings().log_format == "json":
                seconds = round(time.perf_counter() - started, 4)
                extra = {"event": "request", "method": scope["method"], "path": scope["path"], "status": status}
                log.info("%s %s %s", scope["method"], scope["path"], status, extra={**extra, "seconds": seconds})
            log_context.request_id.reset(token)
