"""Decode untrusted images and shape them for img2img, inpainting and outpainting (Pillow + numpy only).

Resize modes follow A1111 / Diffusers-API ``resize_mode`` (0 stretch, 1 crop, 2 pad). ``pad`` scales the image
to fit inside the target and fills the bands by replicating the edge pixels, as A1111's "Resize and fill" does
(it stretches the outermost row/column over the band). A flat colour would survive a low denoising strength as
a visible bar; replicated edges give the sampler plausible colours to continue.
"""

from __future__ import annotations

import base64
import binascii
import io
import re
from typing import Literal

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from app.domain.errors import InvalidImage, InvalidParameters

# Only these decoders may run on untrusted bytes (Pillow would otherwise also try EPS, which calls Ghostscript).
FORMATS = ("PNG", "JPEG", "WEBP", "BMP", "GIF")
RESIZE_MODES = ("stretch", "crop", "pad")
_DATA_URL = re.compile(r"^data:(?P<mime>[\w.+-]+/[\w.+-]+)?(?P<params>(;[^;,]*)*?);base64,", re.IGNORECASE)


def decode_image(data: bytes, *, max_bytes: int = 20_000_000, max_pixels: int = 4096 * 4096) -> Image.Image:
    """Decode PNG/JPEG/WebP/BMP/GIF (first frame) bytes into an upright RGB, RGBA or L image.

    The byte count is checked before anything is parsed and the pixel count from the header before any pixel
    is decoded, so a decompression bomb never allocates its canvas. Pillow's global ``MAX_IMAGE_PIXELS`` is left
    as it is; its own refusal is reported the same way.
    """
    if len(data) > max_bytes:
        raise InvalidImage(f"The image is {len(data)} bytes; the limit is {max_bytes}.", code="image_too_large")
    try:
        lazy = Image.open(io.BytesIO(data), formats=FORMATS)  # reads the header only
        width, height = lazy.size
        if width * height > max_pixels:
            raise InvalidImage(
                f"The image is {width}×{height} pixels; the limit is {max_pixels} pixels.", code="image_too_large"
            )
        lazy.load()
        image = ImageOps.exif_transpose(lazy)
    except Image.DecompressionBombError as e:
        raise InvalidImage("The image has too many pixels to decode safely.", code="image_too_large") from e
    except UnidentifiedImageError as e:
        raise InvalidImage(f"The data is not a supported image ({', '.join(FORMATS)}).") from e
    except (OSError, ValueError, SyntaxError, EOFError) as e:
        raise InvalidImage("The image is truncated or corrupt.", detail=str(e)) from e
    return _plain_mode(image)


def base64_bytes(text: str, max_bytes: int = 20_000_000) -> bytes:
    """The bytes of raw base64 or a ``data:image/...;base64,`` URL (size checked before decoding)."""
    text = text.strip()
    if text[:5].lower() == "data:":
        match = _DATA_URL.match(text)
        if match is None:
            raise InvalidImage("A data URL must look like data:image/png;base64,<data>.")
        if match["mime"] and not match["mime"].lower().startswith("image/"):
            raise InvalidImage(f"The data URL holds {match['mime']}, not an image.")
        text = text[match.end() :]
    text = re.sub(r"\s+", "", text).replace("-", "+").replace("_", "/")  # also accept the URL-safe alphabet
    if len(text) * 3 // 4 > max_bytes + 2:
        raise InvalidImage(f"The image is over {max_bytes} bytes.", code="image_too_large")
    try:
        return base64.b64decode(text + "=" * (-len(text) % 4), validate=True)
    except (binascii.Error, ValueError) as e:
        raise InvalidImage("The image is not valid base64.", detail=str(e)) from e


def decode_base64_image(text: str, **limits: int) -> Image.Image:
    """Decode raw base64 or a ``data:image/...;base64,`` URL with :func:`decode_image` (same ``limits``)."""
    return decode_image(base64_bytes(text, limits.get("max_bytes", 20_000_000)), **limits)


def rgb_png(width: int, height: int, rgb: bytes) -> bytes:
    """Raw 8-bit RGB pixels encoded as a PNG."""
    buffer = io.BytesIO()
    Image.frombytes("RGB", (width, height), rgb).save(buffer, format="PNG")
    return buffer.getvalue()


def has_alpha(image: Image.Image) -> bool:
    """Whether ``image`` carries transparency (an alpha band or a transparent palette entry)."""
    return image.mode in ("RGBA", "LA", "PA") or (image.mode == "P" and "transparency" in image.info)


def to_rgb(image: Image.Image) -> Image.Image:
    """RGB; transparent pixels are composited over white rather than showing their hidden colour."""
    if has_alpha(image):
        rgba = image.convert("RGBA")
        return Image.alpha_composite(Image.new("RGBA", rgba.size, "white"), rgba).convert("RGB")
    return image.convert("RGB")


def resize_for(image: Image.Image, width: int, height: int, mode: str) -> Image.Image:
    """An RGB image of exactly ``width``×``height``: ``stretch`` ignores the aspect ratio; ``crop`` scales to
    cover and keeps the centre; ``pad`` scales to fit, centres, and replicates the edge pixels into the bands."""
    if width < 1 or height < 1:
        raise InvalidParameters(f"Cannot resize to {width}×{height}.", field="width")
    rgb = to_rgb(image)
    if mode == "stretch":
        return rgb.resize((width, height), Image.Resampling.LANCZOS)
    if mode == "crop":
        return ImageOps.fit(rgb, (width, height), Image.Resampling.LANCZOS, centering=(0.5, 0.5))
    if mode == "pad":
        scale = min(width / rgb.width, height / rgb.height)
        fit_w, fit_h = min(width, max(1, round(rgb.width * scale))), min(height, max(1, round(rgb.height * scale)))
        inner = np.asarray(rgb.resize((fit_w, fit_h), Image.Resampling.LANCZOS))
        left, top = (width - fit_w) // 2, (height - fit_h) // 2
        pads = ((top, height - fit_h - top), (left, width - fit_w - left), (0, 0))
        return Image.fromarray(np.pad(inner, pads, mode="edge"))
    raise InvalidParameters(f"Unknown resize mode {mode!r}; use one of {', '.join(RESIZE_MODES)}.", field="resize_mode")


def round_up_to(n: int, multiple: int = 8) -> int:
    """The smallest multiple of ``multiple`` that is >= ``n``."""
    if multiple < 1:
        raise ValueError("multiple must be positive")
    return -(-n // multiple) * multiple


def outpaint_canvas(
    image: Image.Image, left: int, right: int, up: int, down: int, fill: str
) -> tuple[Image.Image, Image.Image]:
    """Grow ``image`` by the given pixels per side; return (RGB canvas, L mask: 255 = paint, 0 = original).

    ``fill="copy"`` replicates the edge pixels (cv2 ``BORDER_REPLICATE``); ``reflect`` mirrors them including the
    edge pixel (``BORDER_REFLECT``: ``cba|abc``). The right and bottom borders grow further so that both canvas
    sides are multiples of 8; that extra strip is masked for painting too.
    """
    if min(left, right, up, down) < 0:
        raise InvalidParameters("Outpaint borders cannot be negative.", field="expand")
    pad_mode: Literal["edge", "symmetric"]
    if fill == "copy":
        pad_mode = "edge"
    elif fill == "reflect":
        pad_mode = "symmetric"
    else:
        raise InvalidParameters(f"Unknown outpaint fill {fill!r}; use copy or reflect.", field="expand_type")
    rgb = np.asarray(to_rgb(image))
    height, width = rgb.shape[:2]
    right += round_up_to(left + width + right) - (left + width + right)
    down += round_up_to(up + height + down) - (up + height + down)
    canvas = np.pad(rgb, ((up, down), (left, right), (0, 0)), mode=pad_mode)
    mask = np.full(canvas.shape[:2], 255, dtype=np.uint8)
    mask[up : up + height, left : left + width] = 0
    return Image.fromarray(canvas), Image.fromarray(mask)


def normalize_mask(image: Image.Image, width: int, height: int) -> Image.Image:
    """A ``width``×``height`` L mask of 0/255 (255 = repaint): stretched bilinearly, then 255 where >= 128.

    An image with an alpha channel whose colour is uniform (a brush stroke on a transparent layer) is read by
    its alpha; any other image by its luminance.
    """
    if has_alpha(image):
        rgba = np.asarray(image.convert("RGBA"))
        rgb = rgba[..., :3].reshape(-1, 3)
        grey = Image.fromarray(rgba[..., 3]) if (rgb == rgb[0]).all() else image.convert("RGB").convert("L")
    else:
        grey = image.convert("L")
    grey = grey.resize((width, height), Image.Resampling.BILINEAR)
    return Image.fromarray(np.where(np.asarray(grey) >= 128, 255, 0).astype(np.uint8))


def _plain_mode(image: Image.Image) -> Image.Image:
    """RGB, RGBA or L: palettes, CMYK, 16-bit and the like converted once, here."""
    if image.mode in ("RGB", "RGBA", "L"):
        return image
    if image.mode in ("I;16", "I;16B", "I;16L", "I"):
        wide = np.asarray(image, dtype=np.int64)
        return Image.fromarray((np.clip(wide, 0, 65535) >> 8).astype(np.uint8))
    if has_alpha(image):
        return image.convert("RGBA")
    return image.convert("RGB")
