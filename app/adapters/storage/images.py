"""Result images as PNG files named by job id, carrying their generation parameters."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

from PIL import Image
from PIL.PngImagePlugin import PngInfo

from app.domain.errors import GenerationFailed, ImageNotFound
from app.domain.jobs import ImageRef, image_id_for, job_id_of
from app.ports.generation import GeneratedImage, ImageStore


class FileImageStore(ImageStore):
    """``<root>/<job id[:2]>/<job id>-<index>.png``, written atomically, with the A1111
    ``parameters`` text chunk so other tools (and A1111's PNG-info tab) can read them."""

    def __init__(self, root: str) -> None:
        self._root = Path(root)

    def save(self, job_id: str, index: int, image: GeneratedImage, parameters: str) -> ImageRef:
        image_id = image_id_for(job_id, index)
        target = self._file(image_id)
        target.parent.mkdir(parents=True, exist_ok=True)
        if len(image.rgb) != image.width * image.height * 3:
            raise GenerationFailed(
                f"Image {index} of job {job_id} has {len(image.rgb)} bytes, not {image.width}x{image.height} RGB."
            )
        picture = Image.frombytes("RGB", (image.width, image.height), image.rgb)
        info = PngInfo()
        info.add_text("parameters", parameters)
        fd, tmp = tempfile.mkstemp(dir=target.parent, suffix=".tmp")
        try:
            with os.fdopen(fd, "wb") as handle:
                picture.save(handle, format="PNG", pnginfo=info)
            os.replace(tmp, target)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise
        return ImageRef(id=image_id, seed=image.seed, width=image.width, height=image.height, nsfw=image.nsfw)

    def path(self, image_id: str) -> str:
        target = self._file(image_id)
        if not target.is_file():
            raise ImageNotFound(f"No image {image_id}.")
        return str(target)

    def delete_job(self, job_id: str) -> None:
        folder = self._root / job_id[:2]
        job_id_of(image_id_for(job_id, 0))  # validates the id before it touches a path
        for file in folder.glob(f"{job_id}-*.png"):
            file.unlink(missing_ok=True)

    def _file(self, image_id: str) -> Path:
        job_id = job_id_of(image_id)  # raises ImageNotFound for anything but "<hex id>-<n>"
        return self._root / job_id[:2] / f"{image_id}.png"
