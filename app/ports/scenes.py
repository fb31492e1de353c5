"""Ports of the demo world."""

from __future__ import annotations

from typing import Protocol

from app.demo_world.scenes import Scene
from app.ports.generation import RgbImage


class SceneReader(Protocol):
    """Reads back what a demo-world image shows: its shapes (shape, colour, position, size) and background.

    The content-integrity reward of prompt sessions and the tests that assert what an image shows
    are built on it (``app.demo_world.integrity.integrity`` compares what was seen with what was asked)."""

    def read(self, image: RgbImage) -> Scene:
        """The objects seen, largest first; ``background`` is None when it is none of the known ones."""
