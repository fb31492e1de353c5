"""Result images as PNG files named by job id, carrying their generation parameters."""

from __future__ import annotations

import errno
import hashlib
import os
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from PIL import Image
from PIL.PngImagePlugin import PngInfo

from app.adapters.imaging.ops import decode_image
from app.domain.errors import GenerationFailed, ImageNotFound, InvalidParameters, StorageUnavailable
from app.domain.jobs import ImageRef, image_id_for, job_id_of
from app.domain.specs import validate_input_id
from app.ports.generation import GeneratedImage, ImageStore, InputImage, RgbImage


class FileImageStore(ImageStore):
    """``<root>/<job id[:2]>/<job id>-<index>.png``, written atomically, with the A1111
    ``parameters`` text chunk so other tools (and A1111's PNG-info tab) can read them.
    Uploaded inputs live in ``<root>/inputs/`` under a hash of their owner and content, with a
    ``.owner`` file naming the owner (none: ``local``, the owner of a deployment without keys)."""

    def __init__(self, root: str, max_input_bytes: int = 20_000_000, max_input_pixels: int = 4096 * 4096) -> None:
        self._root = Path(root)
        self._max_input_bytes = max_input_bytes
        self._max_input_pixels = max_input_pixels

    def save(self, job_id: str, index: int, image: GeneratedImage, parameters: str) -> ImageRef:
        image_id = image_id_for(job_id, index)
        target = self._file(image_id)
        if len(image.rgb) != image.width * image.height * 3:
            raise GenerationFailed(
                f"Image {index} of job {job_id} has {len(image.rgb)} bytes, not {image.width}x{image.height} RGB."
            )
        picture = Image.frombytes("RGB", (image.width, image.height), image.rgb)
        self._write_png(picture, target, parameters)
        return ImageRef(id=image_id, seed=image.seed, width=image.width, height=image.height, nsfw=image.nsfw)

    @staticmethod
    def _write_png(picture: Image.Image, target: Path, parameters: str | None) -> None:
        info = PngInfo()
        if parameters is not None:
            info.add_text("parameters", parameters)
        with storage_errors():
            target.parent.mkdir(parents=True, exist_ok=True)
            fd, tmp = tempfile.mkstemp(dir=target.parent, suffix=".tmp")
            try:
                with os.fdopen(fd, "wb") as handle:
                    picture.save(handle, format="PNG", pnginfo=info)
                os.replace(tmp, target)
            except BaseException:
                Path(tmp).unlink(missing_ok=True)
                raise

    def path(self, image_id: str) -> str:
        target = self._file(image_id)
        if not target.is_file():
            raise ImageNotFound(f"No image {image_id}.")
        return str(target)

    def read(self, image_id: str) -> RgbImage:
        target = Path(self.path(image_id))
        try:
            with Image.open(target) as picture:
                rgb = picture.convert("RGB")
        except FileNotFoundError as error:  # deleted since it was found
            raise ImageNotFound(f"No image {image_id}.") from error
        except OSError as error:
            raise StorageUnavailable(
                f"Image {image_id} cannot be read right now; try again later.", detail=str(error)
            ) from error
        return RgbImage(rgb.width, rgb.height, rgb.tobytes())

    def delete_job(self, job_id: str) -> None:
        folder = self._root / job_id[:2]
        job_id_of(image_id_for(job_id, 0))  # validates the id before it touches a path
        for file in folder.glob(f"{job_id}-*.png"):
            file.unlink(missing_ok=True)

    def put_input(self, data: bytes, owner: str = "local") -> InputImage:
        """Decode with the limits of :func:`decode_image`, then keep it as PNG for ``owner``."""
        salt = b"" if owner == "local" else owner.encode() + b"\0"  # local ids stay plain content hashes
        input_id = f"upload-{hashlib.sha256(salt + data).hexdigest()[:32]}"
        target = self._input_file(input_id)
        if not target.is_file():
            picture = decode_image(data, max_bytes=self._max_input_bytes, max_pixels=self._max_input_pixels)
            self._write_png(picture, target, None)
            if owner != "local":
                with storage_errors():
                    target.with_suffix(".owner").write_text(owner, encoding="utf-8")
        return self.input_image(input_id, owner)

    def input_image(self, input_id: str, owner: str | None = None) -> InputImage:
        target = self._input_file(input_id)
        if not target.is_file() or (owner is not None and self._owner(target) != owner):
            raise ImageNotFound(f"No uploaded image {input_id}.")
        with Image.open(target) as picture:
            width, height = picture.size
        return InputImage(id=input_id, width=width, height=height, path=str(target))

    @staticmethod
    def _owner(target: Path) -> str:
        marker = target.with_suffix(".owner")
        return marker.read_text(encoding="utf-8") if marker.is_file() else "local"

    def _input_file(self, input_id: str) -> Path:
        try:
            validate_input_id(input_id, "image")
        except InvalidParameters as e:
            raise ImageNotFound(f"No uploaded image {input_id!r}.") from e
        digest = input_id.removeprefix("upload-")
        return self._root / "inputs" / digest[:2] / f"{digest}.png"

    def _file(self, image_id: str) -> Path:
        job_id = job_id_of(image_id)  # raises ImageNotFound for anything but "<hex id>-<n>"
        return self._root / job_id[:2] / f"{image_id}.png"


@contextmanager
def storage_errors() -> Iterator[None]:
    """A failed write becomes ``StorageUnavailable``: a sentence for the client, the path for the log."""
    try:
        yield
    except OSError as error:
        full = error.errno in (errno.ENOSPC, errno.EDQUOT)
        reason = "the disk is full" if full else "the images folder cannot be written"
        raise StorageUnavailable(
            f"The server cannot store images right now ({reason}); try again later.",
            code="storage_full" if full else "storage_unavailable",
            detail=str(error),
        ) from error
