"""Across families, through the HTTP API: a LoRA made for another family and a refiner that cannot refine are
refused at submission (422, naming what does not fit, nothing stored); a fitting LoRA and an SDXL base with
its refiner run (native API and A1111's ``refiner_checkpoint``/``refiner_switch_at``)."""

from __future__ import annotations

import base64
import io
import json
from collections.abc import AsyncIterator, Iterator

import httpx
import pytest
from PIL import Image

from app.adapters.diffusers.tiny import build_tiny
from app.entrypoints.http.app import create_app
from app.entrypoints.library import Atelier
from tests.e2e.conftest import finished
from tests.integration.test_family_loras import save_peft_lora

pytestmark = [
    pytest.mark.anyio,
    pytest.mark.filterwarnings("ignore:Already found a `peft_config`", "ignore:Adapter .* is now deleted"),
]


@pytest.fixture(scope="module")
def atelier(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Atelier]:
    """Tiny SDXL, SDXL refiner and FLUX models, with a LoRA for SDXL (``xl-style``) and one for FLUX
    (``flux-style``)."""
    folders = tmp_path_factory.mktemp("tiny")
    instance = Atelier.open(data_dir=str(tmp_path_factory.mktemp("data")))
    for family in ("sdxl", "sdxl-refiner", "flux"):
        instance.add_model(family, build_tiny(family, str(folders / family)))
    for family, name in (("sdxl", "xl-style"), ("flux", "flux-style")):
        lora = save_peft_lora(family, str(folders / family), str(folders / name))
        instance.add_model(name, lora, kind="lora")
    yield instance
    instance.close()


@pytest.fixture
async def client(atelier: Atelier) -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=create_app(atelier)), base_url="http://a") as c:
        yield c


def png() -> str:
    buffer = io.BytesIO()
    Image.new("RGB", (64, 64), "red").save(buffer, format="PNG")
    return base64.b64encode(buffer.getvalue()).decode()


async def test_a_lora_of_another_family_is_refused_at_submission_naming_it_and_both_families(
    atelier: Atelier, client: httpx.AsyncClient
) -> None:
    before = atelier.jobs().total
    cases = [
        ({"model": "sdxl", "loras": [{"name": "flux-style"}]}, "flux-style", "FLUX.1", "Stable Diffusion XL"),
        (
            {"model": "flux", "loras": [{"name": "xl-style", "weight": 0.7}]},
            "xl-style",
            "Stable Diffusion XL",
            "FLUX.1",
        ),
        ({"model": "flux", "prompt": "a cat <lora:xl-style:0.5>"}, "xl-style", "Stable Diffusion XL", "FLUX.1"),
    ]
    for fields, lora, made_for, model_family in cases:
        reply = await client.post("/v1/jobs", json={"prompt": "a cat", **fields})
        assert reply.status_code == 422, (fields, reply.text)
        error = reply.json()["error"]
        assert (error["code"], error["field"]) == ("lora_family_mismatch", "loras"), error
        assert f"The LoRA {lora!r}" in error["message"] and f"made for {made_for} models" in error["message"], error
        assert f"a {model_family} model" in error["message"], error
    body = {"prompt": "a cat <lora:flux-style:1>", "override_settings": {"sd_model_checkpoint": "sdxl"}}
    reply = await client.post("/sdapi/v1/txt2img", json=body)
    assert reply.status_code == 422 and "made for FLUX.1 models" in reply.json()["detail"], reply.text
    assert atelier.jobs().total == before


async def test_a_lora_of_the_models_family_runs(client: httpx.AsyncClient) -> None:
    for model, lora in (("sdxl", "xl-style"), ("flux", "flux-style")):
        body = {"prompt": "a cat", "model": model, "loras": [{"name": lora, "weight": 0.8}], "seed": 1}
        reply = await client.post("/v1/jobs", json=body)
        assert reply.status_code == 202, reply.text
        job = await finished(client, reply.json()["id"])
        assert job["status"] == "succeeded", job


async def test_a_refiner_that_cannot_refine_this_request_is_refused_at_submission(
    atelier: Atelier, client: httpx.AsyncClient
) -> None:
    before = atelier.jobs().total
    cases = [
        ({"model": "sdxl", "refiner": "sdxl"}, "invalid_refiner", "a refiner must be a Stable Diffusion XL refiner"),
        ({"model": "flux", "refiner": "sdxl-refiner"}, "invalid_refiner", "'flux' is a FLUX.1 model"),
        ({"model": "sdxl", "refiner": "sdxl-refiner", "init_image": png()}, "refiner_needs_txt2img", "img2img"),
        ({"model": "sdxl", "refiner": "sdxl-refiner", "refiner_switch": 1.5}, "invalid_refiner_switch", "0.99"),
        ({"model": "sdxl-refiner"}, "unsupported_capability", "Stable Diffusion XL refiner models cannot do txt2img"),
    ]
    for fields, code, words in cases:
        reply = await client.post("/v1/jobs", json={"prompt": "a cat", **fields})
        assert reply.status_code == 422, (fields, reply.text)
        error = reply.json()["error"]
        assert error["code"] == code and words in error["message"], (fields, error)
    reply = await client.post("/v1/jobs", json={"prompt": "a cat", "model": "sdxl", "refiner": "nothing"})
    assert reply.status_code == 404, reply.text
    body = {"prompt": "cat", "override_settings": {"sd_model_checkpoint": "flux"}, "refiner_checkpoint": "sdxl-refiner"}
    reply = await client.post("/sdapi/v1/txt2img", json=body)
    assert reply.status_code == 422 and "continues a Stable Diffusion XL base model" in reply.json()["detail"]
    assert atelier.jobs().total == before


async def test_an_sdxl_model_with_its_refiner_runs_through_both_apis(client: httpx.AsyncClient) -> None:
    body = {"prompt": "a cat", "model": "sdxl", "refiner": "sdxl-refiner", "refiner_switch": 0.5, "steps": 4}
    reply = await client.post("/v1/jobs", json={**body, "seed": 2})
    assert reply.status_code == 202, reply.text
    job = await finished(client, reply.json()["id"])
    assert job["status"] == "succeeded", job
    assert (job["params"]["refiner"], job["params"]["refiner_switch"]) == ("sdxl-refiner", 0.5)
    a1111 = {
        "prompt": "a cat", "steps": 4, "width": 64, "height": 64, "seed": 2,
        "override_settings": {"sd_model_checkpoint": "sdxl"},
        "refiner_checkpoint": "sdxl-refiner.safetensors [0123456789]", "refiner_switch_at": 0.5,
    }  # fmt: skip
    reply = await client.post("/sdapi/v1/txt2img", json=a1111)
    assert reply.status_code == 200, reply.text
    info = json.loads(reply.json()["info"])
    assert info["ignored_fields"] == [] and "Refiner: sdxl-refiner, Refiner switch at: 0.5" in info["infotexts"][0]
    native = (await client.get(job["images"][0]["url"])).content
    assert Image.open(io.BytesIO(native)).size == (64, 64)
