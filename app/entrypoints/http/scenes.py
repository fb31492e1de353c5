"""The demo world's checker over HTTP: what an image shows, and how well it matches a caption."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends
from pydantic import BaseModel, ConfigDict, Field

from app.entrypoints.http import deps
from app.entrypoints.http.openapi import errors
from app.entrypoints.http.schemas_scenes import SceneReadingOut
from app.entrypoints.library import Atelier

router = APIRouter(tags=["demo world"])
AtelierDep = Annotated[Atelier, Depends(deps.atelier)]
OwnerDep = Annotated[str, Depends(deps.owner)]


class SceneReadIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    image: str = Field(
        description="A result image id (`<job id>-<n>`), an upload id, the image as base64 / a data URL, "
        "or an http(s) URL where the deployment allows fetching."
    )
    caption: str | None = Field(None, description="Score the image against this caption (content integrity).")


@router.post(
    "/v1/scenes/read",
    response_model=SceneReadingOut,
    summary="Read the shapes a demo-world image shows",
    responses=errors(404, 503, codes={404: ["image_not_found"]}),
)
def read_scene(body: SceneReadIn, atelier: AtelierDep, owner: OwnerDep) -> SceneReadingOut:
    """The objects the OpenCV checker sees (shape, colour, position, size, styles) and the background;
    with `caption`, the content-integrity score (`score` in [0, 1], `exact`) and the seen object
    paired with each object the caption asks for."""
    data = atelier.container.resolve_images().encoded(body.image, owner)  # never a path on this machine
    return SceneReadingOut.of(atelier.read_scene(data, body.caption, owner))
