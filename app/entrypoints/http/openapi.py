"""The OpenAPI document as the server really answers.

FastAPI documents a 422 ``HTTPValidationError`` (``{"detail": [...]}``) on every route with parameters,
no other error and no authentication. The server answers every native error as :class:`ErrorBody`
(``{"error": {"code", "message", "field"?}}``) and needs an API key where keys are configured. So:

- each route lists the errors only it can answer with :func:`errors` (404, 409, 503, 507, ...);
- :func:`install` post-processes the generated document once: the validation error becomes
  ``ErrorBody``; the errors that come from the middleware in front of every route are added where that
  middleware answers them (401 and 429 on every route that needs a key, 403 on the admin-only paths,
  400/413 on the routes that take a body: :mod:`auth` and :mod:`guards` decide, from the same tables);
  and every operation gets its security requirement (``[]`` on the public ones), the compatible APIs' too.

The compatible APIs (``/sdapi/*``, ``/api/predict``, OpenAI's ``/v1/images/generations``, ``/v1/chat/completions``,
``/v1/completions`` and ``/v1/embeddings``) answer errors in their own
dialects (:mod:`compat_schemas`): their routes list their own errors in that shape, and the errors of the
middleware are added here in it too (the Diffusers-API answers bad input as 460, not 400).
Every 401 and 429 documents its ``WWW-Authenticate`` / ``Retry-After`` header.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from fastapi import FastAPI
from pydantic import BaseModel

from app.domain import errors as e
from app.entrypoints.http import auth, compat_schemas
from app.entrypoints.http.schemas import ErrorBody

METHODS = frozenset({"get", "put", "post", "delete", "options", "head", "patch", "trace"})
SCHEMA_PREFIX = "#/components/schemas/"
ERROR_REF = SCHEMA_PREFIX + "ErrorBody"
FASTAPI_VALIDATION = ("HTTPValidationError", "ValidationError")
SECURITY_SCHEMES: dict[str, dict[str, str]] = {
    "bearerAuth": {
        "type": "http",
        "scheme": "bearer",
        "description": "An API key of the deployment: `Authorization: Bearer <key>`.",
    },
    "apiKeyHeader": {
        "type": "apiKey",
        "in": "header",
        "name": "X-API-Key",
        "description": "The same key in the `X-API-Key` header.",
    },
}
# Either scheme is enough: the alternatives of an OpenAPI security requirement.
SECURITY: list[dict[str, list[str]]] = [{"bearerAuth": []}, {"apiKeyHeader": []}]

# status: (the code it usually carries, what it means, an example message)
STATUSES: dict[int, tuple[str, str, str]] = {
    400: (
        "invalid_json",
        "The body cannot be read: not valid JSON (`invalid_json`), nested too deep (`too_deep`) or a malformed "
        "form (`invalid_body`).",
        "The request body is not valid JSON.",
    ),
    401: (
        e.Unauthorized.code,
        "API keys are configured and the request carries no valid one "
        "(`Authorization: Bearer <key>` or `X-API-Key: <key>`).",
        "A valid API key is required: send 'Authorization: Bearer <key>' or 'X-API-Key: <key>'.",
    ),
    403: (
        e.Forbidden.code,
        "The key is valid but not an admin key: this operation changes what every key is served.",
        "This operation changes what every key is served and needs an admin key.",
    ),
    404: (e.NotFound.code, "No such resource, or not the caller's.", "Not found."),
    409: (e.Conflict.code, "The request conflicts with the current state.", e.Conflict.default_message),
    413: (
        e.RequestTooLarge.code,
        "The body, or a value in it, is larger than the server accepts.",
        "The request body has 40000000 bytes; at most 30000000 bytes are accepted.",
    ),
    422: (
        e.InvalidParameters.code,
        "A value is missing, malformed or out of range; `field` names it (`steps`, `control.scale`, `limit`).",
        "steps: Input should be a valid integer",
    ),
    429: (
        "rate_limited",
        "Too many requests with this key a minute (`rate_limited`), or too many of its jobs queued or running "
        "at once (`too_many_queued_jobs`); `Retry-After` says when to try again.",
        "More than 600 requests a minute with this key; retry in 2 s.",
    ),
    500: (
        e.GenerationFailed.code,
        "An image the request waited for could not be made: its job failed (`generation_failed` or the job's "
        "own code), was cancelled (`cancelled`) or did not finish in time (`render_timeout`).",
        e.GenerationFailed.default_message,
    ),
    503: (
        e.BackendUnavailable.code,
        "A backend cannot be reached right now: the database (`database_unavailable`), a model's files "
        "(`model_unavailable`) or the knowledge index (`index_unavailable`).",
        e.BackendUnavailable.default_message,
    ),
    507: (
        e.StorageUnavailable.code,
        "The server cannot write files right now: `storage_full` (the disk is full) or `storage_unavailable` "
        "(the folder cannot be written); nothing was stored.",
        e.StorageUnavailable.default_message,
    ),
}
HEADERS: dict[int, dict[str, Any]] = {
    401: {"WWW-Authenticate": {"description": "`Bearer`.", "schema": {"type": "string"}}},
    429: {"Retry-After": {"description": "Seconds to wait before trying again.", "schema": {"type": "integer"}}},
}


def _entry(status: int, codes: Sequence[str] = ()) -> tuple[str, dict[str, Any]]:
    """The description and the example of ``status``; ``codes``: the error codes this route answers with it."""
    code, meaning, message = STATUSES[status]
    description = meaning
    if codes:
        description = f"{meaning} Codes: {', '.join(f'`{c}`' for c in codes)}."
        code = codes[0]
    example: dict[str, Any] = {"error": {"code": code, "message": message}}
    if status == 422:
        example["error"]["field"] = "steps"
    return description, example


def errors(*statuses: int, codes: Mapping[int, Sequence[str]] | None = None) -> dict[int | str, dict[str, Any]]:
    """``responses=`` for a route: each status documented with :class:`ErrorBody`, its meaning and an example.

    ``codes``: the error codes a status carries on this route, e.g. ``{409: ["job_finished"]}``."""
    responses: dict[int | str, dict[str, Any]] = {}
    for status in statuses:
        description, example = _entry(status, (codes or {}).get(status, ()))
        response: dict[str, Any] = {
            "model": ErrorBody,
            "description": description,
            "content": {"application/json": {"example": example}},
        }
        if status in HEADERS:
            response["headers"] = HEADERS[status]
        responses[status] = response
    return responses


def _response(status: int) -> dict[str, Any]:
    """One error response as it stands in the document."""
    description, example = _entry(status)
    response: dict[str, Any] = {
        "description": description,
        "content": {"application/json": {"schema": {"$ref": ERROR_REF}, "example": example}},
    }
    if status in HEADERS:
        response["headers"] = HEADERS[status]
    return response


def _replace_refs(node: Any, old: str, new: str) -> Any:
    if isinstance(node, dict):
        return {k: new if k == "$ref" and v == old else _replace_refs(v, old, new) for k, v in node.items()}
    if isinstance(node, list):
        return [_replace_refs(v, old, new) for v in node]
    return node


def _refers_to(node: Any, ref: str) -> bool:
    if isinstance(node, dict):
        return node.get("$ref") == ref or any(_refers_to(v, ref) for v in node.values())
    if isinstance(node, list):
        return any(_refers_to(v, ref) for v in node)
    return False


def is_public(path: str) -> bool:
    """Answered without a key (the same table the authentication middleware reads)."""
    return path in auth.PUBLIC_PATHS or path.startswith(auth.PUBLIC_PREFIXES)


def is_compat(path: str) -> bool:
    return compat_schemas.dialect_of(path) is not None


def _middleware_statuses(path: str, operation: dict[str, Any]) -> list[int]:
    """What the middleware in front of the route can answer on it (see ``auth`` and ``guards``)."""
    statuses = [] if is_public(path) else [401, 429]
    if auth.needs_admin(path):
        statuses.append(403)
    body = operation.get("requestBody")
    if body:
        statuses.append(413)
        if "application/json" in body.get("content", {}):
            statuses.append(400)
    return statuses


def document(schema: dict[str, Any]) -> dict[str, Any]:
    """FastAPI's generated ``schema``, made truthful (see the module's docstring)."""
    schemas: dict[str, Any] = schema.setdefault("components", {}).setdefault("schemas", {})
    error_models: tuple[type[BaseModel], ...] = (ErrorBody, *compat_schemas.ERROR_MODELS)
    for model in error_models:
        error_schema = model.model_json_schema(ref_template=SCHEMA_PREFIX + "{model}", mode="serialization")
        for name, definition in error_schema.pop("$defs", {}).items():
            schemas.setdefault(name, definition)
        schemas.setdefault(model.__name__, error_schema)

    schema = _replace_refs(schema, SCHEMA_PREFIX + "HTTPValidationError", ERROR_REF)
    schemas = schema["components"]["schemas"]
    for name in FASTAPI_VALIDATION:
        rest = {k: v for k, v in schema.items() if k != "components"}
        others = {k: v for k, v in schemas.items() if k != name}
        if name in schemas and not _refers_to([rest, others], SCHEMA_PREFIX + name):
            del schemas[name]

    for path, item in schema.get("paths", {}).items():
        for method, operation in item.items():
            if method not in METHODS:
                continue
            operation["security"] = [] if is_public(path) else [dict(s) for s in SECURITY]
            responses: dict[str, Any] = operation.setdefault("responses", {})
            dialect = compat_schemas.dialect_of(path)
            if dialect is compat_schemas.OPENAI and "422" in responses:  # OpenAI's bad input is a 400
                del responses["422"]
                if any(p.get("in") == "query" for p in operation.get("parameters", [])):  # a text path cannot fail
                    responses.setdefault("400", dialect.response(400))
            if dialect is not None:
                for status in map(dialect.status, _middleware_statuses(path, operation)):
                    responses.setdefault(str(status), dialect.response(status))
                for key, response in responses.items():  # FastAPI drops the nulls of the routes' examples
                    if key.isdigit() and int(key) in dialect.statuses:
                        response["content"]["application/json"]["example"] = dialect.example_of(int(key))
            else:
                if responses.get("422", {}).get("description") == "Validation Error":  # FastAPI's own
                    responses["422"] = _response(422)
                for status in _middleware_statuses(path, operation):
                    responses.setdefault(str(status), _response(status))
            for status, headers in HEADERS.items():
                if str(status) in responses:
                    responses[str(status)].setdefault("headers", headers)
            operation["responses"] = dict(sorted(responses.items()))

    schema["components"].setdefault("securitySchemes", {}).update(SECURITY_SCHEMES)
    return schema


def install(app: FastAPI) -> None:
    """Serve :func:`document` of FastAPI's schema at ``app.openapi_url``, built once and cached as FastAPI does."""
    generate = app.openapi
    app.openapi_schema = None

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            generated = generate()  # FastAPI caches it in ``app.openapi_schema``: that must be the truthful one
            app.openapi_schema = None
            app.openapi_schema = document(generated)
        return app.openapi_schema

    app.openapi = openapi  # type: ignore[method-assign]
