"""Models and health."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends
from fastapi.responses import JSONResponse, Response

from app.domain.errors import Forbidden
from app.domain.models import ModelKind
from app.entrypoints.http import deps
from app.entrypoints.http.openapi import errors
from app.entrypoints.http.schemas import Health, LanguageModelOut, ModelList, ModelOut, Readiness
from app.entrypoints.library import Atelier
from app.usecases.complete_text import CompleteText

router = APIRouter()
AtelierDep = Annotated[Atelier, Depends(deps.atelier)]


@router.get("/v1/models", response_model=ModelList, tags=["models"], summary="Registered models", responses=errors(503))
def models(
    atelier: AtelierDep, admin: Annotated[bool, Depends(deps.is_admin)], kind: ModelKind | None = None
) -> ModelList:
    """Image models (base models, LoRAs, ControlNets, VAEs) and language models, in OpenAI's list shape (its
    clients' `models.list()` reads it), each entry with its `kind`; `kind` filters. Language models are listed by
    the names a chat request gives: the default model (`default`: the one knowledge queries use and edits change),
    `NAME@base` (it without the edits), other registered language models, and `NAME:ADAPTER` for each LLM adapter.
    `source` (where a model was registered from: a server path or a hub id) is shown to admin keys only."""
    data: list[ModelOut | LanguageModelOut] = []
    if kind is None or not kind.is_text:
        data += [ModelOut.of(m, show_source=admin) for m in atelier.models(kind) if not m.kind.is_text]
    if kind is None or kind.is_text:
        complete: CompleteText = atelier.container.complete_text()
        listed = complete.listing()
        data += [LanguageModelOut.of(m, show_source=admin) for m in listed if kind is None or m.kind is kind]
    return ModelList(data=data)


@router.delete(
    "/v1/models/{name}",
    status_code=204,
    response_class=Response,
    tags=["models"],
    summary="Unregister a model (admin)",
    responses={
        204: {"description": "Unregistered; a folder converted for it is deleted, the server's own files stay."},
        **errors(403, 404, 503, codes={403: ["forbidden"], 404: ["unknown_model"]}),
    },
)
def remove_model(name: str, atelier: AtelierDep, admin: Annotated[bool, Depends(deps.is_admin)]) -> Response:
    """Base models, LoRAs, ControlNets and VAEs alike. Queued jobs that name it fail with `unknown_model` when
    they run. With API keys on it needs an admin key: models are shared by every key."""
    if not admin:
        raise Forbidden("Models are shared by every key; unregistering one needs an admin key.")
    atelier.remove_model(name)
    return Response(status_code=204)


@router.get(
    "/healthz",
    response_model=Health,
    tags=["system"],
    summary="Liveness and database reachability",
    responses=errors(503, codes={503: ["database_unavailable"]}),
)
def healthz(atelier: AtelierDep) -> Health:
    """503 with `database_unavailable` when the database cannot be reached."""
    return Health(**atelier.health())


@router.get(
    "/readyz",
    response_model=Readiness,
    tags=["system"],
    summary="Readiness: the database takes writes and a worker is alive",
    responses={503: {"model": Readiness, "description": "Not ready; the body says which check failed."}},
)
def readyz(atelier: AtelierDep) -> JSONResponse:
    """200 when this instance can take jobs: the database answers and is writable, and (in a process that
    runs jobs) a worker thread is alive; otherwise 503 with the same body. Public, for load balancers."""
    state = Readiness(**atelier.readiness())
    return JSONResponse(state.model_dump(), status_code=200 if state.ready else 503)


@router.get(
    "/metrics",
    tags=["system"],
    summary="Metrics in Prometheus' text format",
    response_class=Response,
    responses={
        200: {"description": "The Prometheus text exposition format.", "content": {"text/plain": {}}},
        **errors(403, codes={403: ["forbidden"]}),
    },
)
def metrics(atelier: AtelierDep, admin: Annotated[bool, Depends(deps.is_admin)]) -> Response:
    """Queue depth and the oldest job's wait per model, jobs by status (every process reports the shared
    database's), and this process's own: job durations by mode, family and final status, batch sizes, live
    workers, the pipelines in memory and their bytes, CUDA memory. `atelier_database_up` is 0 when the database
    did not answer. With API keys on it needs an admin key: it shows every key's queue."""
    if not admin:
        raise Forbidden("The metrics show every key's queue; they need an admin key.")
    body, content_type = atelier.metrics()
    return Response(body, media_type=content_type)
