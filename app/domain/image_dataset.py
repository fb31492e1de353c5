"""Captioned images to train an image LoRA on, as uploaded: a zip archive of images with their captions.

Captions come from a sidecar text file beside each image (``cat.png`` and ``cat.txt``, kohya's convention) or from
a JSON Lines file in the archive (``metadata.jsonl``, Hugging Face's imagefolder convention: one
``{"file_name": ..., "text": ...}`` per line; ``caption`` or ``prompt`` may stand for ``text``). The JSONL caption wins
where both exist. Images are PNG, JPEG, WebP or BMP; whether each one decodes is checked by the trainer.

A trigger word, when given, starts every caption that lacks it, and is the whole caption of an image without one;
without a trigger word every image needs a caption.
"""

from __future__ import annotations

import io
import json
import posixpath
import zipfile
from dataclasses import dataclass

from app.domain.errors import InvalidParameters

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".webp", ".bmp")
CAPTION_SUFFIXES = (".txt", ".caption")
MAX_IMAGES = 10_000
MAX_CAPTION = 1000  # characters
_TEXT_KEYS = ("text", "caption", "prompt")


@dataclass(frozen=True)
class CaptionedImage:
    name: str  # its path inside the archive
    data: bytes
    caption: str | None  # None: no caption was given


def _refuse(message: str, field: str, code: str = "invalid_file") -> InvalidParameters:
    return InvalidParameters(message, code=code, field=field)


def _skipped(name: str) -> bool:
    parts = name.split("/")
    return name.endswith("/") or parts[0] == "__MACOSX" or any(p.startswith(".") for p in parts)


def parse_image_archive(data: bytes, field: str = "file") -> list[CaptionedImage]:
    """The images of a zip archive with their captions, sorted by name. Raises ``InvalidParameters`` for what is not
    a zip, holds no image, or has a JSONL line that is not a caption record (naming the file and line)."""
    try:
        archive = zipfile.ZipFile(io.BytesIO(data))
        names = [info.filename for info in archive.infolist() if not _skipped(info.filename)]
    except (zipfile.BadZipFile, OSError, ValueError) as e:
        raise _refuse("The file is not a zip archive of images and captions.", field) from e
    images = sorted(n for n in names if n.lower().endswith(IMAGE_SUFFIXES))
    if not images:
        raise _refuse(f"The archive holds no image ({', '.join(IMAGE_SUFFIXES)}).", field)
    if len(images) > MAX_IMAGES:
        raise _refuse(f"The archive holds more than {MAX_IMAGES} images.", field)
    try:
        captions = _sidecars(archive, names)
        for jsonl in sorted(n for n in names if n.lower().endswith(".jsonl")):
            captions.update(_jsonl_captions(archive.read(jsonl), jsonl, set(images), field))
        return [CaptionedImage(name, archive.read(name), captions.get(name)) for name in images]
    except (zipfile.BadZipFile, OSError, ValueError, RuntimeError) as e:  # a corrupt member, an encrypted one
        if isinstance(e, InvalidParameters):
            raise
        raise _refuse("A file in the archive cannot be read.", field) from e


def _sidecars(archive: zipfile.ZipFile, names: list[str]) -> dict[str, str]:
    stems = {posixpath.splitext(n)[0]: n for n in names if n.lower().endswith(IMAGE_SUFFIXES)}
    captions: dict[str, str] = {}
    for name in names:
        stem, suffix = posixpath.splitext(name)
        if suffix.lower() in CAPTION_SUFFIXES and stem in stems:
            text = archive.read(name).decode("utf-8", errors="replace").strip()
            if text:
                captions[stems[stem]] = text[:MAX_CAPTION]
    return captions


def _jsonl_captions(data: bytes, source: str, images: set[str], field: str) -> dict[str, str]:
    folder = posixpath.dirname(source)
    captions: dict[str, str] = {}
    for number, line in enumerate(data.decode("utf-8", errors="replace").splitlines(), start=1):
        if not line.strip():
            continue
        where = f"{source}, line {number}"
        try:
            record = json.loads(line)
        except ValueError:
            raise _refuse(f"{where}: not valid JSON.", field) from None
        text = next((record.get(k) for k in _TEXT_KEYS if isinstance(record, dict) and k in record), None)
        name = record.get("file_name") if isinstance(record, dict) else None
        if not isinstance(name, str) or not isinstance(text, str):
            raise _refuse(f'{where}: expected {{"file_name": ..., "text": ...}}.', field)
        path = posixpath.normpath(posixpath.join(folder, name))
        if path not in images:
            raise _refuse(f"{where}: no image {name!r} in the archive.", field)
        if text.strip():
            captions[path] = text.strip()[:MAX_CAPTION]
    return captions


def training_captions(images: list[CaptionedImage], trigger_word: str | None, field: str) -> list[str]:
    """Each image's caption for training: the trigger word first where it is missing, and alone for an image with
    no caption. Without a trigger word, an image with no caption is refused (``missing_captions``)."""
    trigger = (trigger_word or "").strip()
    missing = [image.name for image in images if not image.caption]
    if missing and not trigger:
        raise _refuse(
            f"{len(missing)} of {len(images)} images have no caption (the first: {missing[0]}). Add a .txt file "
            "beside each image or a metadata.jsonl, or give a trigger word to caption them with.",
            field,
            code="missing_captions",
        )
    out = []
    for image in images:
        caption = image.caption or ""
        if trigger and trigger not in caption:
            caption = f"{trigger}, {caption}" if caption else trigger
        out.append(caption)
    return out


def pack_image_archive(files: dict[str, bytes]) -> bytes:
    """A zip archive (stored, not compressed: images are compressed already) of ``files`` by archive path."""
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", compression=zipfile.ZIP_STORED) as archive:
        for name in sorted(files):
            archive.writestr(name, files[name])
    return buffer.getvalue()
