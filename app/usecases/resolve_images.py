"""Images given to Atelier in any form a client sends them: encoded bytes, an upload id, a result
image id, base64 or a data URL, or an http(s) URL fetched where the deployment allows it.

Uploads belong to their owner; inline images in a job's parameters are stored as the owner's uploads
first, so a job refers only to stored images and runs the same after a restart.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from app.domain.errors import ImageNotFound, JobNotFound
from app.domain.jobs import job_id_of
from app.ports.generation import ImageCodec, ImageFetcher, ImageStore, InputImage
from app.ports.persistence import JobReader


def _is_url(text: str) -> bool:
    return text[:8].lower().startswith(("http://", "https://"))


class ResolveImages:
    def __init__(self, images: ImageStore, fetcher: ImageFetcher, codec: ImageCodec, reader: JobReader) -> None:
        self._images, self._fetcher, self._codec, self._reader = images, fetcher, codec, reader

    def result_path(self, image_id: str, owner: str | None = None) -> str:
        """Local path of a result image; ``ImageNotFound``/``JobNotFound`` for another owner's image."""
        job = self._reader.get(job_id_of(image_id), owner)
        if image_id not in {ref.id for ref in job.images}:
            raise JobNotFound(f"Job {job.id} has no image {image_id}.")
        return self._images.path(image_id)

    def upload(self, data: bytes | str, owner: str = "local") -> InputImage:
        """Keep an input image given as bytes, or as base64 / a data URL / an http(s) URL."""
        if isinstance(data, str):
            data = self._fetcher.fetch(data) if _is_url(data) else self._codec.from_base64(data)
        return self._images.put_input(data, owner)

    def encoded(self, image: str | bytes, owner: str | None = None) -> bytes:
        """The encoded bytes of ``image`` (bytes, an upload id, a result image id, base64 or a URL)."""
        if isinstance(image, bytes):
            return image
        if image.startswith("upload-"):
            path = self._images.input_image(image, owner).path
        elif _is_url(image):
            return self._fetcher.fetch(image)
        else:
            try:
                job_id_of(image)
            except ImageNotFound:
                return self._codec.from_base64(image)
            path = self.result_path(image, owner)
        try:
            return Path(path).read_bytes()
        except OSError as e:
            raise ImageNotFound(f"Cannot read the image {image}.", detail=str(e)) from e

    def store_inline(self, values: dict[str, Any], owner: str) -> dict[str, Any]:
        """A job's parameter values with inline images (base64, URLs) replaced by ids of ``owner``'s uploads."""

        def ref(value: Any) -> Any:
            inline = isinstance(value, str) and not value.startswith("upload-")
            return self.upload(value, owner).id if inline else value

        values = {**values, **{k: ref(values[k]) for k in ("init_image", "mask_image") if k in values}}
        units = values.get("controls")
        if isinstance(units, (list, tuple)):
            values["controls"] = [
                {**unit, "image": ref(unit["image"])} if isinstance(unit, dict) and "image" in unit else unit
                for unit in units
            ]
        return values
