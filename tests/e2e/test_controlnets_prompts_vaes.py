"""ControlNet beyond SD 1.x through the HTTP API: several units on SDXL (native API and A1111's ControlNet
extension), a ControlNet made for another family refused at submission; SDXL's long, weighted prompts; a VAE
per request (native API and A1111's sd_vae)."""

from __future__ import annotations

import base64
import io
import json
from collections.abc import AsyncIterator, Iterator

import httpx
import pytest
from PIL import Image

from app.adapters.diffusers.tiny import build_tiny
from app.adapters.diffusers.tiny.controlnets import build_tiny_controlnet
from app.entrypoints.http.app import create_app
from app.entrypoints.library import Atelier
from tests.e2e.conftest import finished

pytestmark = pytest.mark.anyio


@pytest.fixture(scope="module")
def atelier(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Atelier]:
    """Tiny SDXL and FLUX models; two ControlNets for SDXL (``xl-edges``, ``xl-map``) and one for FLUX."""
    folders = tmp_path_factory.mktemp("tiny")
    instance = Atelier.open(data_dir=str(tmp_path_factory.mktemp("data")))
    for family in ("sdxl", "flux"):
        instance.add_model(family, build_tiny(family, str(folders / family)))
    for family, name, seed in (("sdxl", "xl-edges", 1), ("sdxl", "xl-map", 2), ("flux", "flux-edges", 1)):
        net = build_tiny_controlnet(family, str(folders / family), str(folders / name), seed=seed)
        instance.add_model(name, net, kind="controlnet")
    for family in ("sdxl", "flux"):  # a model folder registered as a VAE: its vae/
        instance.add_model(f"{family}-vae", str(folders / family), kind="vae")
    yield instance
    instance.close()


@pytest.fixture
async def client(atelier: Atelier) -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=create_app(atelier)), base_url="http://a") as c:
        yield c


def png(colour: str = "white") -> str:
    buffer = io.BytesIO()
    image = Image.new("RGB", (64, 64), "black")
    image.paste(colour, (16, 16, 48, 48))
    image.save(buffer, format="PNG")
    return base64.b64encode(buffer.getvalue()).decode()


SMALL = {"model": "sdxl", "width": 64, "height": 64, "steps": 2, "seed": 3}


async def test_two_units_on_sdxl_run_and_are_recorded(atelier: Atelier, client: httpx.AsyncClient) -> None:
    units = [
        {"image": png(), "kind": "canny", "model": "xl-edges", "scale": 0.8},
        {"image": png("gray"), "kind": "none", "model": "xl-map", "scale": 0.5, "start": 0.2, "end": 0.9},
    ]
    reply = await client.post("/v1/jobs", json={"prompt": "a house", **SMALL, "controls": units})
    assert reply.status_code == 202, reply.text
    job = await finished(client, reply.json()["id"])
    assert job["status"] == "succeeded", job
    recorded = job["params"]["controls"]
    assert [(u["model"], u["scale"], u["start"], u["end"]) for u in recorded] == [
        ("xl-edges", 0.8, 0.0, 1.0),
        ("xl-map", 0.5, 0.2, 0.9),
    ]
    assert all(u["image"].startswith("upload-") for u in recorded)  # inline images were stored as uploads
    assert job["params"]["mode"] == "controlnet"


async def test_a_controlnet_of_another_family_or_a_bad_unit_is_refused_and_nothing_is_stored(
    atelier: Atelier, client: httpx.AsyncClient
) -> None:
    before = atelier.jobs().total
    unit = {"image": png(), "kind": "canny", "model": "flux-edges"}
    reply = await client.post("/v1/jobs", json={"prompt": "a house", **SMALL, "controls": [unit]})
    assert reply.status_code == 422
    error = reply.json()["error"]
    assert (error["code"], error["field"]) == ("controlnet_family_mismatch", "controls[0].model")
    assert (
        "'flux-edges'" in error["message"]
        and "FLUX.1" in error["message"]
        and "Stable Diffusion XL" in error["message"]
    )
    cases = [
        ({"controls": [{"image": png(), "model": "xl-edges", "start": 0.6, "end": 0.4}]}, "invalid_control_end"),
        ({"controls": [{"image": png(), "model": "xl-edges"}] * 5}, "invalid_controls"),
        ({"control": {"image": png(), "model": "xl-edges"}, "controls": [{"image": png()}]}, "invalid_controls"),
    ]
    for fields, code in cases:
        reply = await client.post("/v1/jobs", json={"prompt": "a house", **SMALL, **fields})
        assert reply.status_code == 422 and reply.json()["error"]["code"] == code, reply.text
    assert atelier.jobs().total == before


async def test_a1111_controlnet_units_all_reach_the_job(atelier: Atelier, client: httpx.AsyncClient) -> None:
    units = [
        {"image": png(), "module": "canny", "model": "xl-edges [0123abcd]", "weight": 0.7},
        {"enabled": False, "image": png(), "module": "canny", "model": "xl-map"},
        {"image": png(), "module": "none", "model": "xl-map", "weight": 0.4, "guidance_start": 0.1},
    ]
    body = {"prompt": "a house", "width": 64, "height": 64, "steps": 2, "seed": 4}
    body |= {"override_settings": {"sd_model_checkpoint": "sdxl"}, "alwayson_scripts": {"controlnet": {"args": units}}}
    reply = await client.post("/sdapi/v1/txt2img", json=body)
    assert reply.status_code == 200, reply.text
    info = json.loads(reply.json()["info"])
    assert info["ignored_fields"] == []
    job = atelier.jobs(limit=1).items[0]
    assert [(u.model, u.scale, u.start) for u in job.params.controls] == [("xl-edges", 0.7, 0.0), ("xl-map", 0.4, 0.1)]
    assert 'ControlNet 1: "Module: none, Model: xl-map, Weight: 0.4, Guidance Start: 0.1' in info["infotexts"][0]


async def test_sdxl_reads_long_and_weighted_prompts_and_flux_still_refuses_weights(client: httpx.AsyncClient) -> None:
    long_prompt = "(a red house:1.3) by a lake, " + "tall trees and mountains in the morning light, " * 20
    reply = await client.post("/v1/jobs", json={"prompt": long_prompt + "BREAK [blurry]", **SMALL})
    assert reply.status_code == 202, reply.text
    assert (await finished(client, reply.json()["id"]))["status"] == "succeeded"
    reply = await client.post("/v1/jobs", json={"prompt": "(a red house:1.3)", **SMALL, "model": "flux"})
    assert reply.status_code == 422 and reply.json()["error"]["code"] == "unsupported_capability"


async def test_a_vae_per_request_in_the_native_api_and_a1111s(atelier: Atelier, client: httpx.AsyncClient) -> None:
    listed = (await client.get("/v1/models", params={"kind": "vae"})).json()["data"]
    latent = {m["name"]: m["latent"] for m in listed}
    sdxl = next(m for m in (await client.get("/v1/models")).json()["data"] if m["name"] == "sdxl")
    assert latent["sdxl-vae"] == sdxl["latent"] and latent["flux-vae"] != sdxl["latent"]
    reply = await client.post("/v1/jobs", json={"prompt": "a house", **SMALL, "vae": "sdxl-vae"})
    assert reply.status_code == 202, reply.text
    job = await finished(client, reply.json()["id"])
    assert job["status"] == "succeeded" and job["params"]["vae"] == "sdxl-vae"
    before = atelier.jobs().total
    reply = await client.post("/v1/jobs", json={"prompt": "a house", **SMALL, "vae": "flux-vae"})
    assert reply.status_code == 422 and reply.json()["error"]["code"] == "vae_mismatch"
    assert atelier.jobs().total == before
    assert [v["model_name"] for v in (await client.get("/sdapi/v1/sd-vae")).json()] == ["flux-vae", "sdxl-vae"]
    body = {"prompt": "a house", "width": 64, "height": 64, "steps": 2}
    body["override_settings"] = {"sd_model_checkpoint": "sdxl", "sd_vae": "sdxl-vae.safetensors"}
    reply = await client.post("/sdapi/v1/txt2img", json=body)
    assert reply.status_code == 200, reply.text
    info = json.loads(reply.json()["info"])
    assert info["ignored_fields"] == [] and "VAE: sdxl-vae" in info["infotexts"][0]
    assert atelier.jobs(limit=1).items[0].params.vae == "sdxl-vae"
