"""Models and health."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends

from app.domain.models import ModelKind
from app.entrypoints.http import deps
from app.entrypoints.http.schemas import Health, ModelOut
from app.entrypoints.library import Atelier

router = APIRouter()
AtelierDep = Annotated[Atelier, Depends(deps.atelier)]


@router.get("/v1/models", response_model=list[ModelOut], tags=["models"], summary="Registered models")
def models(
    atelier: AtelierDep, _owner: Annotated[str, Depends(deps.owner)], kind: ModelKind | None = None
) -> list[ModelOut]:
    """Base models, LoRAs and ControlNets; `kind` filters."""
    return [ModelOut.of(m) for m in atelier.models(kind)]


@router.get("/healthz", response_model=Health, tags=["system"], summary="Liveness and database reachability")
def healthz(atelier: AtelierDep) -> Health:
    """503 with `database_unavailable` when the database cannot be reached."""
    return Health(**atelier.health())
