"""`POST /v1/control-maps` through httpx.ASGITransport on the test profile: the control map as a PNG."""

from __future__ import annotations

import base64
import io
from typing import Any

import httpx
import numpy as np
import pytest
from PIL import Image, ImageDraw

pytestmark = pytest.mark.anyio


def rectangle_png() -> bytes:
    picture = Image.new("RGB", (100, 70), "black")
    ImageDraw.Draw(picture).rectangle((20, 15, 60, 50), fill="white")
    buffer = io.BytesIO()
    picture.save(buffer, format="PNG")
    return buffer.getvalue()


async def upload(client: httpx.AsyncClient) -> str:
    reply = await client.post("/v1/uploads", files={"file": ("a.png", rectangle_png(), "image/png")})
    assert reply.status_code == 201
    upload_id: str = reply.json()["id"]
    return upload_id


@pytest.mark.parametrize(
    ("body", "size"),
    [
        ({"kind": "canny", "width": 128, "height": 64}, (128, 64)),
        ({"kind": "depth", "width": 64, "height": 96, "resize_mode": "crop"}, (64, 96)),
        ({}, (96, 64)),  # canny at the upload's size, rounded down to a multiple of 8
    ],
)
async def test_an_uploaded_image_gives_a_png_control_map(
    client: httpx.AsyncClient, body: dict[str, Any], size: tuple[int, int]
) -> None:
    reply = await client.post("/v1/control-maps", json={"image": await upload(client), **body})
    assert reply.status_code == 200 and reply.headers["content-type"] == "image/png"
    picture = Image.open(io.BytesIO(reply.content))
    assert picture.format == "PNG" and picture.size == size
    if body.get("kind", "canny") == "canny":
        assert set(np.unique(np.asarray(picture.convert("L")))) == {0, 255}


async def test_inline_base64_gives_the_same_map_as_the_upload(client: httpx.AsyncClient) -> None:
    by_id = await client.post("/v1/control-maps", json={"image": await upload(client), "kind": "depth"})
    inline = "data:image/png;base64," + base64.b64encode(rectangle_png()).decode()
    by_value = await client.post("/v1/control-maps", json={"image": inline, "kind": "depth"})
    assert by_value.status_code == 200 and by_value.content == by_id.content


@pytest.mark.parametrize(
    ("body", "status", "code", "field"),
    [
        ({"kind": "hed"}, 422, "invalid_kind", "kind"),
        ({"width": 100}, 422, "invalid_width", "width"),
        ({"resize_mode": "squash"}, 422, "invalid_resize_mode", "resize_mode"),
        ({"strength": 0.5}, 422, "invalid_parameters", "strength"),
        ({"image": "upload-" + "0" * 32}, 404, "image_not_found", None),
        ({"image": "0" * 32 + "-0"}, 404, "job_not_found", None),
        ({"image": base64.b64encode(b"not an image").decode()}, 422, "invalid_image", None),
    ],
)
async def test_bad_requests_get_the_error_table(
    client: httpx.AsyncClient, body: dict[str, Any], status: int, code: str, field: str | None
) -> None:
    reply = await client.post("/v1/control-maps", json={"image": await upload(client), **body})
    assert reply.status_code == status
    error = reply.json()["error"]
    assert error["code"] == code and error["message"] and error.get("field") == field
    assert "Traceback" not in reply.text


async def test_the_route_is_documented_as_returning_a_png(client: httpx.AsyncClient) -> None:
    operation = (await client.get("/openapi.json")).json()["paths"]["/v1/control-maps"]["post"]
    assert "control map" in operation["summary"].lower()
    assert "image/png" in operation["responses"]["200"]["content"]
    schema = operation["requestBody"]["content"]["application/json"]["schema"]
    assert schema["$ref"].endswith("/ControlMapIn")
