"""Read what a demo-world image shows and, given a caption, how well it matches (content integrity)."""

from __future__ import annotations

from app.demo_world.integrity import SceneReading, integrity
from app.demo_world.parsing import parse_caption
from app.domain.errors import InvalidParameters
from app.ports.generation import RgbImage
from app.ports.scenes import SceneReader


class ReadScene:
    def __init__(self, reader: SceneReader) -> None:
        self._reader = reader

    def __call__(self, image: RgbImage, caption: str | None = None) -> SceneReading:
        """``InvalidParameters`` (field ``caption``) when the caption names no coloured shape; the caption is
        checked before the image is read."""
        asked = None
        if caption is not None:
            try:
                asked = parse_caption(caption)
            except ValueError as e:
                raise InvalidParameters(
                    "The caption names no coloured shape (e.g. 一个红色的圆形在中间).", field="caption"
                ) from e
        seen = self._reader.read(image)
        return SceneReading(seen=seen, asked=asked, integrity=integrity(asked, seen) if asked else None)
