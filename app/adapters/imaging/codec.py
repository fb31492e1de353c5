"""Pillow behind ``ImageCodec``: decoding with size limits, PNG encoding, base64 and data URLs."""

from __future__ import annotations

from app.adapters.imaging.ops import base64_bytes, decode_image, rgb_png, to_rgb
from app.ports.generation import RgbImage


class PillowImageCodec:
    def decode(self, data: bytes) -> RgbImage:
        image = to_rgb(decode_image(data))
        return RgbImage(width=image.width, height=image.height, rgb=image.tobytes())

    def encode_png(self, image: RgbImage) -> bytes:
        return rgb_png(image.width, image.height, image.rgb)

    def from_base64(self, text: str) -> bytes:
        return base64_bytes(text)
