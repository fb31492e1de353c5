"""The control-map preview through the library facade, on the test profile (OpenCV and Pillow only)."""

from __future__ import annotations

import base64
import io
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
from PIL import Image, ImageDraw

from app.domain.errors import ImageNotFound, InvalidImage, InvalidParameters, JobNotFound
from app.domain.jobs import JobStatus
from app.entrypoints.library import Atelier


def rectangle_png(size: tuple[int, int] = (100, 70)) -> bytes:
    picture = Image.new("RGB", size, "black")
    ImageDraw.Draw(picture).rectangle((20, 15, 60, 50), fill="white")
    buffer = io.BytesIO()
    picture.save(buffer, format="PNG")
    return buffer.getvalue()


def decoded(png: bytes) -> Image.Image:
    picture = Image.open(io.BytesIO(png))
    assert picture.format == "PNG"
    return picture.convert("RGB")


@pytest.fixture
def atelier(tmp_path: Path) -> Iterator[Atelier]:
    with Atelier.open(data_dir=str(tmp_path), profile="test") as instance:
        yield instance


def test_an_upload_id_gives_a_png_control_map_of_the_resolved_size(atelier: Atelier) -> None:
    upload = atelier.upload(rectangle_png())
    edges = decoded(atelier.control_map(upload.id))
    assert edges.size == (96, 64)  # an open size follows the image, rounded down to a multiple of 8
    array = np.asarray(edges)[..., 0]
    assert set(np.unique(array)) == {0, 255} and not array[20:40, 25:50].any()  # edges, none inside
    assert decoded(atelier.control_map(upload.id, "depth", width=128, height=64, resize_mode="pad")).size == (128, 64)
    fitted = decoded(atelier.control_map(upload.id, "none", width=96, height=64))
    assert (
        fitted.tobytes() == Image.open(io.BytesIO(rectangle_png())).resize((96, 64), Image.Resampling.LANCZOS).tobytes()
    )


def test_bytes_base64_and_data_urls_give_the_same_map_as_the_upload(atelier: Atelier) -> None:
    data = rectangle_png()
    expected = atelier.control_map(atelier.upload(data).id, "depth")
    text = base64.b64encode(data).decode()
    assert atelier.control_map(data, "depth") == expected
    assert atelier.control_map(text, "depth") == expected
    assert atelier.control_map("data:image/png;base64," + text, "depth") == expected


def test_a_result_image_id_is_read_for_its_owner_only(atelier: Atelier) -> None:
    job = atelier.generate("一只猫", owner="alice", steps=1, seed=3)
    assert job.status is JobStatus.SUCCEEDED
    image_id = job.images[0].id
    assert decoded(atelier.control_map(image_id, "canny", owner="alice")).size == (64, 64)
    with pytest.raises(JobNotFound):
        atelier.control_map(image_id, owner="bob")


def test_bad_values_and_unknown_or_broken_images(atelier: Atelier) -> None:
    upload = atelier.upload(rectangle_png())
    with pytest.raises(InvalidParameters) as caught:
        atelier.control_map(upload.id, "hed")
    assert (caught.value.field, caught.value.code) == ("kind", "invalid_kind")
    with pytest.raises(InvalidParameters) as caught:
        atelier.control_map(upload.id, width=100)
    assert caught.value.field == "width"
    with pytest.raises(InvalidParameters) as caught:  # parameters are checked before the image is looked up
        atelier.control_map("upload-" + "0" * 32, resize_mode="squash")
    assert caught.value.field == "resize_mode"
    with pytest.raises(ImageNotFound):
        atelier.control_map("upload-" + "0" * 32)
    with pytest.raises(ImageNotFound):
        atelier.control_map("upload-../../etc/passwd")
    with pytest.raises(InvalidImage):
        atelier.control_map(b"definitely not a picture")
    with pytest.raises(InvalidImage):
        atelier.control_map("@@@ not base64")


def test_the_preview_loads_no_model_library(tmp_path: Path) -> None:
    """Canny and the default depth estimator are OpenCV and Pillow only: torch and diffusers stay unloaded."""
    probe = (
        "import sys\n"
        "from app.entrypoints.library import Atelier\n"
        f"with Atelier.open(data_dir={str(tmp_path)!r}, profile='test') as atelier:\n"
        f"    atelier.control_map({rectangle_png()!r}, 'depth')\n"
        f"    atelier.control_map({rectangle_png()!r}, 'canny')\n"
        "print(','.join(sorted(m for m in ('torch', 'diffusers', 'transformers') if m in sys.modules)))\n"
    )
    result = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True)
    assert result.stdout.strip() == ""
