"""The FastAPI application factory (nothing is built at import time)."""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager

from fastapi import FastAPI, Request, Response
from fastapi.responses import JSONResponse

from app import __version__
from app.entrypoints.http import (
    compat_a1111,
    compat_diffusers_api,
    compat_openai,
    control_maps,
    edits,
    errors,
    jobs,
    knowledge,
    prompt_sessions,
    scenes,
    studio,
    system,
    uploads,
)
from app.entrypoints.http.errors import error_body
from app.entrypoints.library import Atelier

DESCRIPTION = """Atelier: Chinese-first image generation with a persistent job queue, and knowledge queries.
The studio page at `/` drives all of it without code.

Submit a job with `POST /v1/jobs`, follow it with `GET /v1/jobs/{id}/events`,
fetch images from `GET /v1/images/{id}`. Ask questions with `POST /v1/knowledge/queries`
(retrieval only for long-tail knowledge); edit the model's facts with `POST /v1/edits` (roll back with
`POST /v1/edits/rollback`); rewrite a prompt over several turns with `POST /v1/prompt-sessions`.
Errors are `{"error": {"code", "message"}}`."""


def create_app(atelier: Atelier | None = None, *, close_on_shutdown: bool | None = None) -> FastAPI:
    """Serve ``atelier``, or one opened from the environment when the server starts."""
    owns = atelier is None if close_on_shutdown is None else close_on_shutdown

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        if getattr(app.state, "atelier", None) is None:
            app.state.atelier = Atelier.open()
        try:
            yield
        finally:
            if owns:
                app.state.atelier.close()

    app = FastAPI(title="Atelier", version=__version__, description=DESCRIPTION, lifespan=lifespan)
    app.state.atelier = atelier
    limit = atelier.settings.max_request_bytes if atelier else None

    @app.middleware("http")
    async def body_limit(request: Request, call_next: Callable[[Request], Awaitable[Response]]) -> Response:
        max_bytes = limit or request.app.state.atelier.settings.max_request_bytes
        length = request.headers.get("content-length")
        if length and length.isdigit() and int(length) > max_bytes:
            message = f"The request body has {length} bytes; at most {max_bytes} are accepted."
            return JSONResponse(error_body("request_too_large", message), status_code=413)
        return await call_next(request)

    errors.install(app)
    app.include_router(jobs.router)
    app.include_router(uploads.router)
    app.include_router(control_maps.router)
    app.include_router(scenes.router)
    app.include_router(knowledge.router)
    app.include_router(edits.router)
    app.include_router(prompt_sessions.router)
    app.include_router(system.router)
    for compat in (compat_diffusers_api, compat_a1111, compat_openai):
        app.include_router(compat.router)
    studio.install(app)
    return app
