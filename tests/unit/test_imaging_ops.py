"""app.adapters.imaging.ops: decode limits and formats, resize modes, outpaint canvases, masks (Pillow only)."""

from __future__ import annotations

import base64
import io
import os
import struct
import time
import zlib

import cv2
import numpy as np
import pytest
from PIL import Image

from app.adapters.imaging.ops import (
    decode_base64_image,
    decode_image,
    normalize_mask,
    outpaint_canvas,
    resize_for,
    round_up_to,
)
from app.domain.errors import InvalidImage, InvalidParameters

RED, GREEN, BLUE, WHITE, BLACK = (255, 0, 0), (0, 255, 0), (0, 0, 255), (255, 255, 255), (0, 0, 0)


def encode(image: Image.Image, fmt: str = "PNG", **options: object) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format=fmt, **options)
    return buffer.getvalue()


def png_claiming(width: int, height: int) -> bytes:
    """A PNG whose IHDR claims ``width``×``height`` but whose pixel data is a few bytes."""

    def chunk(kind: bytes, body: bytes) -> bytes:
        return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))

    header = chunk(b"IHDR", struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0))
    return b"\x89PNG\r\n\x1a\n" + header + chunk(b"IDAT", zlib.compress(b"\0" * 64)) + chunk(b"IEND", b"")


def noise(width: int, height: int, seed: int = 0) -> Image.Image:
    return Image.fromarray(np.random.default_rng(seed).integers(0, 256, (height, width, 3), dtype=np.uint8))


def px(image: Image.Image, x: int, y: int) -> tuple[int, ...]:
    value = image.getpixel((x, y))
    assert isinstance(value, tuple)
    return value


def close(actual: tuple[int, ...], expected: tuple[int, ...], tolerance: int = 12) -> bool:
    return all(abs(a - e) <= tolerance for a, e in zip(actual, expected, strict=True))


# --- decoding -------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("fmt", ["PNG", "JPEG", "WEBP", "BMP", "GIF"])
def test_decodes_each_supported_format(fmt: str) -> None:
    image = decode_image(encode(Image.new("RGB", (37, 21), RED), fmt))
    assert image.size == (37, 21)
    assert image.mode in ("RGB", "RGBA")
    assert close(px(image.convert("RGB"), 18, 10), RED, 20)


def test_gif_gives_its_first_frame() -> None:
    frames = [Image.new("RGB", (8, 8), RED), Image.new("RGB", (8, 8), BLUE)]
    data = encode(frames[0], "GIF", save_all=True, append_images=frames[1:])
    assert close(px(decode_image(data).convert("RGB"), 4, 4), RED, 0)


def test_other_formats_are_refused() -> None:
    with pytest.raises(InvalidImage, match="not a supported image"):
        decode_image(encode(Image.new("RGB", (8, 8)), "TIFF"))


def test_byte_limit_is_checked_before_decoding() -> None:
    data = encode(noise(16, 16))
    assert decode_image(data, max_bytes=len(data)).size == (16, 16)
    with pytest.raises(InvalidImage, match=f"{len(data)} bytes") as caught:
        decode_image(data, max_bytes=len(data) - 1)
    assert caught.value.code == "image_too_large"


def test_pixel_limit_is_inclusive() -> None:
    data = encode(noise(64, 32))
    assert decode_image(data, max_pixels=64 * 32).size == (64, 32)
    with pytest.raises(InvalidImage, match="64×32"):
        decode_image(data, max_pixels=64 * 32 - 1)


def test_header_size_is_refused_before_the_pixels_are_decoded() -> None:
    # The data holds a few bytes of pixels: had load() run first, the error would say "truncated".
    with pytest.raises(InvalidImage, match="5000×5000 pixels") as caught:
        decode_image(png_claiming(5000, 5000))
    assert caught.value.code == "image_too_large"


def test_decompression_bomb_is_refused_without_allocating() -> None:
    limit = Image.MAX_IMAGE_PIXELS
    started = time.perf_counter()
    with pytest.raises(InvalidImage, match="pixels") as caught:
        decode_image(png_claiming(50_000, 50_000))  # 7.5 GB as RGB
    assert time.perf_counter() - started < 1.0
    assert caught.value.code == "image_too_large"
    assert limit == Image.MAX_IMAGE_PIXELS


def test_truncated_and_random_bytes_are_invalid() -> None:
    data = encode(noise(64, 64))
    with pytest.raises(InvalidImage, match="truncated"):
        decode_image(data[: len(data) // 2])
    with pytest.raises(InvalidImage, match="not a supported image"):
        decode_image(os.urandom(2048))
    with pytest.raises(InvalidImage):
        decode_image(b"")


def test_exif_orientation_is_applied() -> None:
    source = Image.new("RGB", (40, 20), BLUE)
    source.paste(RED, (0, 0, 20, 20))  # left half red
    exif = Image.Exif()
    exif[0x0112] = 6  # display rotated 90° clockwise: the left edge becomes the top
    image = decode_image(encode(source, "PNG", exif=exif))
    assert image.size == (20, 40)
    assert close(px(image, 10, 5), RED, 0)
    assert close(px(image, 10, 35), BLUE, 0)


def test_base64_and_data_urls() -> None:
    data = encode(noise(12, 10))
    raw = base64.b64encode(data).decode()
    assert decode_base64_image(raw).size == (12, 10)
    assert decode_base64_image(f"data:image/png;base64,{raw}").size == (12, 10)
    wrapped = "\n".join(raw[i : i + 60] for i in range(0, len(raw), 60))
    assert decode_base64_image(f"  DATA:image/png;base64,{wrapped}\n").size == (12, 10)
    assert decode_base64_image(base64.urlsafe_b64encode(data).decode().rstrip("=")).size == (12, 10)


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("not base64 at all!", "not valid base64"),
        ("data:text/plain;base64,aGVsbG8=", "not an image"),
        ("data:image/png,rawdata", "data URL"),
        (base64.b64encode(b"hello world").decode(), "not a supported image"),
    ],
)
def test_bad_base64_is_invalid_image(text: str, message: str) -> None:
    with pytest.raises(InvalidImage, match=message):
        decode_base64_image(text)


def test_base64_limits_are_passed_on() -> None:
    raw = base64.b64encode(encode(noise(32, 32))).decode()
    with pytest.raises(InvalidImage) as caught:
        decode_base64_image(raw, max_bytes=100)
    assert caught.value.code == "image_too_large"
    with pytest.raises(InvalidImage, match="32×32"):
        decode_base64_image(raw, max_pixels=100)


# --- resizing -------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("mode", ["stretch", "crop", "pad"])
@pytest.mark.parametrize("size", [(64, 64), (48, 80), (81, 33)])
def test_every_mode_gives_exactly_the_size(mode: str, size: tuple[int, int]) -> None:
    result = resize_for(Image.new("RGBA", (100, 50), (*RED, 255)), *size, mode)
    assert (result.size, result.mode) == (size, "RGB")


def bands() -> Image.Image:
    """200×100: red left 40 columns, blue right 40, green middle with a white top 20 rows and black bottom 20."""
    image = Image.new("RGB", (200, 100), GREEN)
    image.paste(WHITE, (40, 0, 160, 20))
    image.paste(BLACK, (40, 80, 160, 100))
    image.paste(RED, (0, 0, 40, 100))
    image.paste(BLUE, (160, 0, 200, 100))
    return image


def test_stretch_keeps_everything_in_place() -> None:
    result = resize_for(bands(), 64, 64, "stretch")
    assert close(px(result, 3, 32), RED) and close(px(result, 60, 32), BLUE)
    assert close(px(result, 32, 2), WHITE) and close(px(result, 32, 61), BLACK)


def test_crop_keeps_the_centre() -> None:
    result = np.asarray(resize_for(bands(), 64, 64, "crop"))  # scaled to 128×64, columns 32..96 kept
    assert close(tuple(result[32, 2]), GREEN) and close(tuple(result[32, 61]), GREEN)
    assert close(tuple(result[1, 32]), WHITE) and close(tuple(result[62, 32]), BLACK)
    middle = result[24:40].astype(int)  # the rows between the white top and black bottom: green edge to edge
    assert (middle[..., 1] > 240).all() and (middle[..., [0, 2]] < 15).all()


def test_pad_keeps_the_whole_image_centred_and_replicates_its_edges() -> None:
    result = resize_for(bands(), 64, 64, "pad")  # scaled to 64×32 in rows 16..47
    assert close(px(result, 2, 32), RED) and close(px(result, 61, 32), BLUE)
    assert close(px(result, 32, 28), GREEN) and close(px(result, 32, 35), GREEN)
    array = np.asarray(result)
    assert (array[:16] == array[16]).all() and (array[48:] == array[47]).all()  # bands copy the edge rows
    assert close(tuple(array[0, 32]), WHITE) and close(tuple(array[63, 32]), BLACK)
    white_rows = int((array[:, 32].min(axis=1) > 200).sum())
    black_rows = int((array[:, 32].max(axis=1) < 50).sum())
    assert 16 + 5 <= white_rows <= 16 + 8 and abs(white_rows - black_rows) <= 1  # centred vertically


def test_unknown_mode_and_bad_sizes_are_refused() -> None:
    with pytest.raises(InvalidParameters, match="resize mode"):
        resize_for(bands(), 8, 8, "fill")
    with pytest.raises(InvalidParameters):
        resize_for(bands(), 0, 8, "stretch")


# --- outpainting ----------------------------------------------------------------------------------------------


@pytest.mark.parametrize(("n", "multiple", "expected"), [(0, 8, 0), (1, 8, 8), (8, 8, 8), (9, 8, 16), (10, 64, 64)])
def test_round_up_to(n: int, multiple: int, expected: int) -> None:
    assert round_up_to(n, multiple) == expected


def test_outpaint_sizes_and_mask() -> None:
    source = noise(30, 20)
    canvas, mask = outpaint_canvas(source, 8, 8, 4, 4, "copy")  # 46×28 grows to 48×32 on the right and bottom
    assert (canvas.size, canvas.mode, mask.size, mask.mode) == ((48, 32), "RGB", (48, 32), "L")
    m = np.asarray(mask)
    assert set(np.unique(m)) == {0, 255}
    assert (m[4:24, 8:38] == 0).all() and int((m == 0).sum()) == 30 * 20
    assert (np.asarray(canvas)[4:24, 8:38] == np.asarray(source)).all()


@pytest.mark.parametrize("sides", [(0, 0, 0, 0), (1, 2, 3, 4), (128, 128, 128, 128), (5, 0, 0, 7)])
def test_outpaint_canvas_is_a_multiple_of_8(sides: tuple[int, int, int, int]) -> None:
    canvas, mask = outpaint_canvas(noise(37, 19), *sides, "reflect")
    assert canvas.width % 8 == 0 and canvas.height % 8 == 0 and mask.size == canvas.size
    assert canvas.width - (37 + sides[0] + sides[1]) < 8 and canvas.height - (19 + sides[2] + sides[3]) < 8


def row_image() -> Image.Image:
    """4×2, red channel 10, 20, 30, 40 from left to right; the second row adds 100."""
    red = np.array([[10, 20, 30, 40], [110, 120, 130, 140]], dtype=np.uint8)
    return Image.fromarray(np.stack([red, np.zeros_like(red), np.zeros_like(red)], axis=-1))


def test_copy_replicates_and_reflect_mirrors_the_edge() -> None:
    copy = np.asarray(outpaint_canvas(row_image(), 3, 1, 3, 3, "copy")[0])[..., 0]  # 8×8: no rounding
    reflect = np.asarray(outpaint_canvas(row_image(), 3, 1, 3, 3, "reflect")[0])[..., 0]
    assert copy[3, :3].tolist() == [10, 10, 10] and copy[3, 7] == 40
    assert reflect[3, :3].tolist() == [30, 20, 10] and reflect[3, 7] == 40
    assert copy[:3, 3].tolist() == [10, 10, 10] and copy[5:, 3].tolist() == [110, 110, 110]
    assert reflect[:3, 3].tolist() == [110, 110, 10] and reflect[5:, 3].tolist() == [110, 10, 10]


@pytest.mark.parametrize(("fill", "border"), [("copy", cv2.BORDER_REPLICATE), ("reflect", cv2.BORDER_REFLECT)])
def test_fills_match_opencv_borders_even_when_wider_than_the_image(fill: str, border: int) -> None:
    source = noise(5, 3, seed=1)
    canvas, _ = outpaint_canvas(source, 11, 16, 2, 11, fill)  # 32×16: no rounding
    expected = cv2.copyMakeBorder(np.asarray(source), 2, 11, 11, 16, border)
    assert canvas.size == (32, 16) and (np.asarray(canvas) == expected).all()


def test_outpaint_refuses_bad_arguments() -> None:
    with pytest.raises(InvalidParameters):
        outpaint_canvas(row_image(), -1, 0, 0, 0, "copy")
    with pytest.raises(InvalidParameters, match="fill"):
        outpaint_canvas(row_image(), 8, 8, 8, 8, "zeros")


# --- masks ----------------------------------------------------------------------------------------------------


def test_mask_thresholds_luminance_at_128() -> None:
    grey = np.full((10, 20), 127, dtype=np.uint8)
    grey[:, 10:] = 128
    mask = normalize_mask(Image.fromarray(grey), 40, 20)
    values = np.asarray(mask)
    assert (mask.mode, mask.size) == ("L", (40, 20))
    assert (values[:, :18] == 0).all() and (values[:, 22:] == 255).all()
    assert set(np.unique(values)) == {0, 255}


def test_uniform_colour_with_alpha_uses_the_alpha() -> None:
    rgba = np.zeros((10, 20, 4), dtype=np.uint8)  # black everywhere; opaque on the left
    rgba[:, :10, 3] = 255
    values = np.asarray(normalize_mask(Image.fromarray(rgba), 20, 10))
    assert (values[:, :10] == 255).all() and (values[:, 10:] == 0).all()


def test_varied_colour_with_alpha_uses_the_luminance() -> None:
    rgba = np.zeros((10, 20, 4), dtype=np.uint8)  # fully transparent; white on the left
    rgba[:, :10, :3] = 255
    values = np.asarray(normalize_mask(Image.fromarray(rgba), 20, 10))
    assert (values[:, :10] == 255).all() and (values[:, 10:] == 0).all()
