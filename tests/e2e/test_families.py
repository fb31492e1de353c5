"""Every served family end to end on its tiny random-init pipeline: registered from its folder (family and
defaults detected), listed by GET /v1/models, run through the native API and the OpenAI images API, and
refused clearly where it lacks a capability."""

from __future__ import annotations

import base64
import io
import json
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import httpx
import pytest
from PIL import Image

from app.adapters.diffusers.tiny import BUILDERS, build_tiny
from app.domain.families import profile
from app.domain.specs import Mode
from app.entrypoints.http.app import create_app
from app.entrypoints.library import Atelier
from tests.e2e.conftest import finished

FAMILIES = sorted(BUILDERS)
TXT2IMG = [f for f in FAMILIES if Mode.TXT2IMG in profile(f).modes()]
INSTRUCT = [f for f in FAMILIES if Mode.INSTRUCT in profile(f).modes()]
pytestmark = pytest.mark.anyio


@pytest.fixture(scope="module")
def tiny_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("tiny")


def tiny(tiny_dir: Path, family: str) -> str:
    """The family's tiny model, built once per module."""
    folder = tiny_dir / family
    if not (folder / "model_index.json").is_file():
        build_tiny(family, str(folder))
    return str(folder)


@pytest.fixture(scope="module")
def atelier(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Atelier]:
    instance = Atelier.open(data_dir=str(tmp_path_factory.mktemp("data")))
    yield instance
    instance.close()


@pytest.fixture
async def client(atelier: Atelier) -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=create_app(atelier)), base_url="http://a") as c:
        yield c


def registered(atelier: Atelier, tiny_dir: Path, family: str) -> str:
    atelier.add_model(family, tiny(tiny_dir, family), replace=True)
    return family


def png(size: tuple[int, int] = (64, 64)) -> str:
    buffer = io.BytesIO()
    Image.new("RGB", size, "red").save(buffer, format="PNG")
    return base64.b64encode(buffer.getvalue()).decode()


@pytest.mark.parametrize("family", FAMILIES)
async def test_the_family_is_detected_and_listed_with_its_capabilities(
    family: str, atelier: Atelier, client: httpx.AsyncClient, tiny_dir: Path
) -> None:
    registered(atelier, tiny_dir, family)
    listed = {m["name"]: m for m in (await client.get("/v1/models")).json()["data"]}
    model = listed[family]
    assert model["family"] == family and model["family_label"]
    assert model["default_size"] >= 64 and model["default_steps"] == 2
    assert set(model["modes"]) <= set(model["capabilities"])
    expected = {"txt2img"} if family in TXT2IMG else set()
    assert expected <= set(model["modes"])


@pytest.mark.parametrize("family", TXT2IMG)
async def test_native_and_openai_apis_generate_with_the_family(
    family: str, atelier: Atelier, client: httpx.AsyncClient, tiny_dir: Path
) -> None:
    registered(atelier, tiny_dir, family)
    size = atelier.model(family).default_size
    reply = await client.post("/v1/jobs", json={"prompt": "一只猫在草地上, a cat", "model": family, "seed": 7})
    assert reply.status_code == 202, reply.text
    job = await finished(client, reply.json()["id"])
    assert job["status"] == "succeeded", job
    assert (job["params"]["width"], job["params"]["steps"]) == (size, 2)
    picture = (await client.get(job["images"][0]["url"])).content
    assert Image.open(io.BytesIO(picture)).size == (size, size)

    body = {"prompt": "a red house", "model": family, "size": f"{size}x{size}", "response_format": "b64_json"}
    reply = await client.post("/v1/images/generations", json=body)
    assert reply.status_code == 200, reply.text
    image = Image.open(io.BytesIO(base64.b64decode(reply.json()["data"][0]["b64_json"])))
    assert image.size == (size, size)


@pytest.mark.parametrize("family", INSTRUCT)
async def test_instruction_editing_through_the_native_api(
    family: str, atelier: Atelier, client: httpx.AsyncClient, tiny_dir: Path
) -> None:
    registered(atelier, tiny_dir, family)
    size = atelier.model(family).default_size
    body = {"prompt": "把房子变成红色", "model": family, "mode": "instruct", "init_image": png((size, size)), "seed": 3}
    reply = await client.post("/v1/jobs", json=body)
    assert reply.status_code == 202, reply.text
    job = await finished(client, reply.json()["id"])
    assert job["status"] == "succeeded" and job["params"]["mode"] == "instruct", job
    picture = Image.open(io.BytesIO((await client.get(job["images"][0]["url"])).content))
    assert picture.size == (size, size)
    reply = await client.post("/v1/jobs", json={"prompt": "a cat", "model": family})  # no image to edit
    assert reply.status_code == 422 and reply.json()["error"]["code"] == "unsupported_capability"


async def test_a_capability_the_family_lacks_is_refused_naming_both(
    atelier: Atelier, client: httpx.AsyncClient, tiny_dir: Path
) -> None:
    for family in ("flux", "hunyuandit", "sdxl-refiner", "qwen-image-edit"):
        registered(atelier, tiny_dir, family)
    upload = png()
    before = atelier.jobs().total
    cases = [
        ({"model": "flux", "negative_prompt": "blurry"}, "negative_prompt", "FLUX.1"),
        ({"model": "flux", "prompt": "(a cat:1.3) on grass"}, "prompt", "FLUX.1"),
        ({"model": "hunyuandit", "init_image": upload}, "mode", "HunyuanDiT"),
        ({"model": "sdxl-refiner"}, "mode", "Stable Diffusion XL refiner"),
        ({"model": "qwen-image-edit"}, "mode", "Qwen-Image-Edit"),
        ({"model": "hunyuandit", "mode": "instruct", "init_image": upload}, "mode", "HunyuanDiT"),
    ]
    for fields, field, label in cases:
        reply = await client.post("/v1/jobs", json={"prompt": "a cat", **fields})
        assert reply.status_code == 422, (fields, reply.text)
        error = reply.json()["error"]
        assert (error["code"], error["field"]) == ("unsupported_capability", field), error
        assert label in error["message"], error
    body = {"prompt": "cat", "negative_prompt": "dog", "override_settings": {"sd_model_checkpoint": "flux"}}
    reply = await client.post("/sdapi/v1/txt2img", json=body)
    assert reply.status_code == 422 and "FLUX.1 models cannot do negative prompt" in reply.json()["detail"], reply.text
    assert atelier.jobs().total == before


async def test_an_unknown_pipeline_class_is_refused_naming_the_families(atelier: Atelier, tmp_path: Path) -> None:
    (tmp_path / "model_index.json").write_text('{"_class_name": "WuerstchenPipeline"}', encoding="utf-8")
    with pytest.raises(Exception, match=r"Supported families: Stable Diffusion 1\.x/2\.x.*FLUX\.1") as caught:
        atelier.add_model("odd", str(tmp_path))
    assert "WuerstchenPipeline" in str(caught.value)


async def test_a1111_hires_fix_and_clip_skip_on_sdxl(
    atelier: Atelier, client: httpx.AsyncClient, tiny_dir: Path
) -> None:
    registered(atelier, tiny_dir, "sdxl")
    body = {
        "prompt": "a red house",
        "steps": 2,
        "width": 64,
        "height": 64,
        "seed": 3,
        "enable_hr": True,
        "hr_scale": 1.5,
        "hr_upscaler": "Latent",
        "hr_second_pass_steps": 2,
        "denoising_strength": 0.5,
        "override_settings": {"sd_model_checkpoint": "sdxl", "CLIP_stop_at_last_layers": 2},
    }
    reply = await client.post("/sdapi/v1/txt2img", json=body)
    assert reply.status_code == 200, reply.text
    info = json.loads(reply.json()["info"])
    assert info["ignored_fields"] == []
    assert "Hires upscale: 1.5, Hires steps: 2, Hires upscaler: Latent" in info["infotexts"][0]
    assert "Clip skip: 2" in info["infotexts"][0]
    image = Image.open(io.BytesIO(base64.b64decode(reply.json()["images"][0])))
    assert image.size == (96, 96)
    upscalers = (await client.get("/sdapi/v1/upscalers")).json()
    assert [u["name"] for u in upscalers] == ["Lanczos", "Nearest"]
    modes = (await client.get("/sdapi/v1/latent-upscale-modes")).json()
    assert [m["name"] for m in modes] == ["Latent", "Latent (nearest)"]
    registered(atelier, tiny_dir, "hunyuandit")
    body["override_settings"] = {"sd_model_checkpoint": "hunyuandit"}
    reply = await client.post("/sdapi/v1/txt2img", json=body)
    assert reply.status_code == 422, json.loads(reply.json()["info"])
    assert "HunyuanDiT models cannot do hires" in reply.json()["detail"]
