"""A ControlNet preprocessing preview: which map to draw and at what size, validated like a generation request."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from app.domain.generation import size_from_input, validate_size
from app.domain.specs import ControlKind, ResizeMode, parse_enum


@dataclass(frozen=True)
class ControlMapSpec:
    """The preprocessor (``canny``, ``depth``, or ``none`` for the fitted image alone), the size to fit the
    control image to and how. An open side follows the control image, as it does when a ControlNet job
    leaves it open; sizes obey the same rules as :class:`~app.domain.generation.GenerationParams`."""

    kind: ControlKind = ControlKind.CANNY
    width: int | None = None
    height: int | None = None
    resize_mode: ResizeMode = ResizeMode.STRETCH

    def __post_init__(self) -> None:
        object.__setattr__(self, "kind", parse_enum(ControlKind, self.kind, "kind"))
        validate_size(self.width, self.height)
        object.__setattr__(self, "resize_mode", parse_enum(ResizeMode, self.resize_mode, "resize_mode"))

    @classmethod
    def parse(
        cls, kind: Any = "canny", width: Any = None, height: Any = None, resize_mode: Any = "stretch"
    ) -> ControlMapSpec:
        """From plain values (``InvalidParameters`` with the offending field: ``kind``, ``width``, ...)."""
        return cls(
            kind=parse_enum(ControlKind, kind, "kind"),
            width=width,
            height=height,
            resize_mode=parse_enum(ResizeMode, resize_mode, "resize_mode"),
        )

    def size_for(self, input_width: int, input_height: int) -> tuple[int, int]:
        """The map's size for a control image of ``input_width``×``input_height``."""
        open_width, open_height = size_from_input(input_width, input_height)
        return self.width or open_width, self.height or open_height
