"""ControlNet preprocessing preview: the control map a ControlNet job would see, as a PNG."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Response
from pydantic import BaseModel, ConfigDict, Field

from app.entrypoints.http import deps
from app.entrypoints.http.openapi import errors
from app.entrypoints.library import Atelier

router = APIRouter(tags=["control maps"])
AtelierDep = Annotated[Atelier, Depends(deps.atelier)]
OwnerDep = Annotated[str, Depends(deps.owner)]


class ControlMapIn(BaseModel):
    model_config = ConfigDict(
        extra="forbid", json_schema_extra={"example": {"image": "upload-…", "kind": "canny", "width": 512}}
    )

    image: str = Field(
        description="An upload id (`POST /v1/uploads`), a result image id (`<job id>-<n>`), or the image as "
        "base64 / data URL."
    )
    kind: str = Field("canny", description="Preprocessor: canny, depth, or none (the fitted image as it is).")
    width: int | None = Field(None, description="Multiple of 8 (64-2048); the image's, rounded down, when omitted.")
    height: int | None = Field(None, description="Multiple of 8 (64-2048); the image's, rounded down, when omitted.")
    resize_mode: str = Field("stretch", description="How the image is fitted to the size: stretch, crop or pad.")


@router.post(
    "/v1/control-maps",
    summary="Preview a ControlNet control map (canny edges or depth map) as PNG",
    response_class=Response,
    responses={
        200: {
            "content": {"image/png": {"schema": {"type": "string", "format": "binary"}}},
            "description": "The control map, as the ControlNet would see it.",
        },
        **errors(404, 503, codes={404: ["image_not_found"]}),
    },
)
def control_map(body: ControlMapIn, atelier: AtelierDep, owner: OwnerDep) -> Response:
    """The image fitted to the size and preprocessed exactly as a ControlNet job with the same `control.image`,
    `control.kind`, `width`, `height` and `resize_mode` would condition on it; nothing is stored.
    422 (`field`: `kind`, `width`, ...) for a bad value, 404 for an unknown upload or image id."""
    png = atelier.control_map(body.image, body.kind, body.width, body.height, body.resize_mode, owner)
    return Response(content=png, media_type="image/png")
