"""Show the control map a ControlNet job would condition on (canny edges, a depth map), before generating."""

from __future__ import annotations

from app.domain.control_maps import ControlMapSpec
from app.ports.generation import ControlPreprocessor, RgbImage


class PreviewControlMap:
    def __init__(self, preprocessor: ControlPreprocessor) -> None:
        self._preprocessor = preprocessor

    def __call__(self, image: RgbImage, spec: ControlMapSpec) -> RgbImage:
        """The map of ``image`` at the size a ControlNet job with ``spec``'s size and resize mode would use
        (an open side follows the image, rounded down to a multiple of 8), from the same preprocessors."""
        width, height = spec.size_for(image.width, image.height)
        return self._preprocessor.preprocess(image, spec.kind, width, height, spec.resize_mode)
