"""Input images for image-to-image, inpainting, outpainting and ControlNet."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, File, UploadFile
from fastapi.concurrency import run_in_threadpool

from app.entrypoints.http import deps
from app.entrypoints.http.openapi import errors
from app.entrypoints.http.schemas import UploadIn, UploadOut
from app.entrypoints.library import Atelier

router = APIRouter(tags=["uploads"])
AtelierDep = Annotated[Atelier, Depends(deps.atelier)]
OwnerDep = Annotated[str, Depends(deps.owner)]


@router.post(
    "/v1/uploads",
    status_code=201,
    response_model=UploadOut,
    summary="Upload an image (multipart)",
    responses=errors(400, 507, codes={400: ["invalid_body"]}),
)
async def upload_file(atelier: AtelierDep, owner: OwnerDep, file: Annotated[UploadFile, File()]) -> UploadOut:
    """PNG, JPEG, WebP, BMP or GIF; returns the id to put in `init_image`, `mask_image` or `control.image`."""
    data = await file.read()
    stored = await run_in_threadpool(atelier.upload, data, owner)
    return UploadOut(id=stored.id, width=stored.width, height=stored.height)


@router.post(
    "/v1/uploads/base64",
    status_code=201,
    response_model=UploadOut,
    summary="Upload an image (base64)",
    responses=errors(507),
)
def upload_base64(body: UploadIn, atelier: AtelierDep, owner: OwnerDep) -> UploadOut:
    stored = atelier.upload(body.image_base64, owner)
    return UploadOut(id=stored.id, width=stored.width, height=stored.height)
