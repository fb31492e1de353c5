"""The one table that turns errors into HTTP responses: ``{"error": {"code", "message", "field"}}`` on
the native API, each compatible API's own shape on its paths (``dialect_error``)."""

from __future__ import annotations

import logging
from collections.abc import Iterable, Iterator
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from app.domain import errors as e
from app.entrypoints.http.compat_schemas import OPENAI

log = logging.getLogger(__name__)
MESSAGES = {
    404: "No such path. The API is described at /docs.",
    405: "This path does not take that method; the Allow header lists those it takes.",
    400: "The request body cannot be read (a malformed form or multipart body).",
}

STATUS: list[tuple[type[e.AtelierError], int]] = [
    (e.RequestTooLarge, 413),
    (e.Forbidden, 403),
    (e.LimitExceeded, 429),
    (e.StorageUnavailable, 507),
    (e.InvalidParameters, 422),
    (e.NotFound, 404),
    (e.Conflict, 409),
    (e.Unauthorized, 401),
    (e.BackendUnavailable, 503),
    (e.GenerationFailed, 500),
    (e.AtelierError, 400),
]


def status_of(error: e.AtelierError) -> int:
    return next(status for cls, status in STATUS if isinstance(error, cls))


def error_body(code: str, message: str, field: str | None = None) -> dict[str, dict[str, str]]:
    body = {"code": code, "message": message}
    if field:
        body["field"] = field
    return {"error": body}


def dialect_error(
    path: str,
    status: int,
    code: str,
    message: str,
    headers: dict[str, str] | None = None,
    field: str | None = None,
) -> JSONResponse:
    """An error in the shape the API that owns ``path`` uses (for answers made before a route runs:
    authentication, body and rate limits)."""
    if path.startswith("/sdapi/"):
        body: dict[str, Any] = {"detail": message, "error": {"code": code, "message": message}}
    elif path.startswith(OPENAI.prefixes):
        status = 400 if status == 422 else status  # OpenAI answers every bad input with 400
        kind = "invalid_request_error" if status < 500 else "server_error"
        code = "invalid_api_key" if status == 401 else code
        body = {"error": {"message": message, "type": kind, "param": field, "code": code}}
    elif path.startswith("/api/predict"):
        status = 460 if status in (400, 422) else status  # Diffusers-API: 460 is its "bad input"
        body = {"success": 0, "task_id": None, "error_code": status, "error_msg": message}
    else:
        body = error_body(code, message, field)
    return JSONResponse(body, status_code=status, headers=headers)


def headers_of(error: e.AtelierError) -> dict[str, str] | None:
    retry = getattr(error, "retry_after", None)
    return {"Retry-After": str(retry)} if retry is not None else None


def install(app: FastAPI) -> None:
    @app.exception_handler(e.AtelierError)
    async def atelier_error(request: Request, error: e.AtelierError) -> JSONResponse:
        field = getattr(error, "field", None)
        status, headers = status_of(error), headers_of(error)
        return dialect_error(request.url.path, status, error.code, error.message, headers, field)

    @app.exception_handler(RequestValidationError)
    async def validation_error(request: Request, error: RequestValidationError) -> JSONResponse:
        problems = error.errors()
        first = problems[0] if problems else {}
        if first.get("type") == "json_invalid":
            return JSONResponse(error_body("invalid_json", "The request body is not valid JSON."), status_code=400)
        location = [str(part) for part in first.get("loc", ()) if part not in ("body", "query", "path", "header")]
        field = ".".join(location) or None
        message = f"{field}: {first.get('msg', 'invalid value')}" if field else str(first.get("msg", "invalid request"))
        if request.url.path.startswith(OPENAI.prefixes):  # a query parameter of OpenAI's API: its 400
            return dialect_error(request.url.path, 422, "invalid_parameters", message, None, field)
        return JSONResponse(error_body("invalid_parameters", message, field), status_code=422)

    @app.exception_handler(StarletteHTTPException)
    async def http_error(request: Request, error: StarletteHTTPException) -> JSONResponse:
        codes = {400: "invalid_body", 404: "not_found", 405: "method_not_allowed", 401: "unauthorized"}
        code = codes.get(error.status_code, "http_error")
        message = MESSAGES.get(error.status_code, "The request cannot be served.")
        headers = dict(error.headers or {})
        if error.status_code == 405:
            headers["Allow"] = ", ".join(allowed_methods(request))
        return dialect_error(request.url.path, error.status_code, code, message, headers)

    @app.exception_handler(Exception)
    async def unexpected(request: Request, error: Exception) -> JSONResponse:
        log.exception("unhandled error")
        message = "Internal error; the server log has the details."
        return dialect_error(request.url.path, 500, "internal_error", message)


def all_routes(routes: Iterable[Any]) -> Iterator[Any]:
    """Every route of an app, through the routers it includes (they carry no prefix here)."""
    for route in routes:
        included = getattr(route, "original_router", None)
        if included is not None:
            yield from all_routes(included.routes)
        else:
            yield route


def allowed_methods(request: Request) -> list[str]:
    """The methods of the routes whose path matches the request's (for 405's ``Allow`` header)."""
    methods: set[str] = set()
    for route in all_routes(request.app.router.routes):
        regex = getattr(route, "path_regex", None)
        if regex is not None and regex.match(request.url.path):
            methods |= set(getattr(route, "methods", None) or ())
    return sorted(methods)
