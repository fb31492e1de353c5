"""The one table that turns errors into HTTP responses: ``{"error": {"code", "message"}}``."""

from __future__ import annotations

import logging

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from app.domain import errors as e

log = logging.getLogger(__name__)

STATUS: list[tuple[type[e.AtelierError], int]] = [
    (e.RequestTooLarge, 413),
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


def install(app: FastAPI) -> None:
    @app.exception_handler(e.AtelierError)
    async def atelier_error(_: Request, error: e.AtelierError) -> JSONResponse:
        field = getattr(error, "field", None)
        return JSONResponse(error_body(error.code, error.message, field), status_code=status_of(error))

    @app.exception_handler(RequestValidationError)
    async def validation_error(_: Request, error: RequestValidationError) -> JSONResponse:
        problems = error.errors()
        first = problems[0] if problems else {}
        if first.get("type") == "json_invalid":
            return JSONResponse(error_body("invalid_json", "The request body is not valid JSON."), status_code=400)
        location = [str(part) for part in first.get("loc", ()) if part != "body"]
        field = ".".join(location) or None
        message = f"{field}: {first.get('msg', 'invalid value')}" if field else str(first.get("msg", "invalid request"))
        return JSONResponse(error_body("invalid_parameters", message, field), status_code=422)

    @app.exception_handler(StarletteHTTPException)
    async def http_error(_: Request, error: StarletteHTTPException) -> JSONResponse:
        code = {404: "not_found", 405: "method_not_allowed", 401: "unauthorized"}.get(error.status_code, "http_error")
        return JSONResponse(error_body(code, str(error.detail)), status_code=error.status_code)

    @app.exception_handler(Exception)
    async def unexpected(_: Request, error: Exception) -> JSONResponse:
        log.exception("unhandled error")
        return JSONResponse(
            error_body("internal_error", "Internal error; the server log has the details."), status_code=500
        )
