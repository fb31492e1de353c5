"""The FastAPI application factory (nothing is built at import time)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI

from app import __version__
from app.entrypoints.http import (
    compat_a1111,
    compat_diffusers_api,
    compat_openai,
    compat_openai_text,
    compat_openai_training,
    control_maps,
    docs,
    edits,
    errors,
    headers,
    jobs,
    knowledge,
    openapi,
    prompt_sessions,
    scenes,
    studio,
    system,
    trainings,
    uploads,
)
from app.entrypoints.http.auth import AuthMiddleware
from app.entrypoints.http.guards import BodyGuard, RateLimit
from app.entrypoints.http.request_ids import RequestIds
from app.entrypoints.library import Atelier
from app.settings import Settings

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

    app = FastAPI(
        title="Atelier",
        version=__version__,
        description=DESCRIPTION,
        lifespan=lifespan,
        docs_url=None,
        redoc_url=None,
    )
    app.state.atelier = atelier

    def settings() -> Settings:
        return app.state.atelier.settings  # type: ignore[no-any-return]

    # Innermost first: the body guard, the per-key rate, then who is calling (checked before anything else).
    app.add_middleware(BodyGuard, settings=settings)
    app.add_middleware(RateLimit, settings=settings)
    app.add_middleware(AuthMiddleware, settings=settings)
    app.add_middleware(RequestIds, settings=settings)  # outermost: every answer, refusals too, carries the id
    errors.install(app)
    app.include_router(jobs.router)
    app.include_router(uploads.router)
    app.include_router(control_maps.router)
    app.include_router(scenes.router)
    app.include_router(knowledge.router)
    app.include_router(edits.router)
    app.include_router(trainings.router)
    app.include_router(prompt_sessions.router)
    app.include_router(system.router)
    for compat in (compat_diffusers_api, compat_a1111, compat_openai, compat_openai_text, compat_openai_training):
        app.include_router(compat.router)
    studio.install(app)
    docs.install(app)
    headers.install(app, atelier.settings if atelier else None)
    openapi.install(app)
    return app
