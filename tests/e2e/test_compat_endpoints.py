"""The client-compatible endpoints (Diffusers-API, AUTOMATIC1111, OpenAI images) through
httpx.ASGITransport: the test profile for the field mappings and error shapes, the real tiny
demo models for a ControlNet call and an img2img call."""

from __future__ import annotations

import asyncio
import base64
import io
import json
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest
from PIL import Image

from app.entrypoints.http.app import create_app
from app.entrypoints.library import Atelier
from tests.e2e.conftest import open_test_atelier

pytestmark = pytest.mark.anyio


def png(size: tuple[int, int] = (96, 72), colour: str = "red") -> str:
    buffer = io.BytesIO()
    Image.new("RGB", size, colour).save(buffer, format="PNG")
    return base64.b64encode(buffer.getvalue()).decode()


def decoded(text: str) -> Image.Image:
    picture = Image.open(io.BytesIO(base64.b64decode(text)))
    assert picture.format == "PNG"
    return picture


@pytest.fixture
async def compat(atelier: Atelier) -> AsyncIterator[httpx.AsyncClient]:
    """The test profile with a LoRA and two ControlNets registered (the in-memory catalog takes any source)."""
    atelier.add_model("poem", "poem", kind="lora")
    atelier.add_model("ink", "ink", kind="lora")
    for name in ("canny", "depth"):
        atelier.add_model(name, name, kind="controlnet")
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=create_app(atelier)), base_url="http://h") as c:
        yield c


def newest(atelier: Atelier) -> Any:
    return atelier.jobs(limit=1).items[0]


# -- Diffusers-API ---------------------------------------------------------------------------


async def test_diffusers_api_maps_fields_and_answers_like_the_original(
    compat: httpx.AsyncClient, atelier: Atelier
) -> None:
    body = {
        "task_id": "t-1",
        "prompt": "一只猫",
        "seed": 42,
        "image_num": 2,
        "cfg_scale": 3,
        "width": 100,
        "steps": 3,
        "lora_path": ["poem", "ink"],
        "lora_attn": [0.5, 0.25],
        "use_base64": True,
        "save_dir": "/oss/out",
        "unknown_field": 1,
    }
    reply = await compat.post("/api/predict/my-service", json=body)
    assert reply.status_code == 200, reply.text
    answer = reply.json()
    assert (answer["success"], answer["task_id"], answer["seed"], answer["prompt"]) == (1, "t-1", "42", "一只猫")
    assert answer["is_nsfw"] == [False, False]
    urls = answer["image_url"].split(",")
    assert len(urls) == 2 and all(u.startswith("/v1/images/") for u in urls)  # relative: never from Host
    fetched = await compat.get(urls[1])
    assert fetched.status_code == 200 and base64.b64encode(fetched.content).decode() == answer["images_base64"][1]
    assert decoded(answer["images_base64"][0]).size == (104, 64)  # width rounded up to ×8; height: native size
    params = newest(atelier).params
    assert (params.guidance_scale, params.num_images, params.steps, params.mode.value) == (3.0, 2, 3, "txt2img")
    assert [(lora.name, lora.weight) for lora in params.loras] == [("poem", 0.5), ("ink", 0.25)]
    plain = (await compat.post("/api/predict", json={"task_id": 7, "prompt": "猫", "lora_path": "poem"})).json()
    assert "images_base64" not in plain and plain["task_id"] == 7 and int(plain["seed"]) >= 0
    params = newest(atelier).params
    assert [(lora.name, lora.weight) for lora in params.loras] == [("poem", 0.75)]


async def test_an_omitted_field_never_inherits_the_previous_value(compat: httpx.AsyncClient, atelier: Atelier) -> None:
    first = await compat.post("/api/predict", json={"task_id": "a", "prompt": "猫", "cfg_scale": 3, "steps": 4})
    assert first.status_code == 200 and newest(atelier).params.guidance_scale == 3.0
    second = await compat.post("/api/predict", json={"task_id": "b", "prompt": "猫"})
    assert second.status_code == 200
    params = newest(atelier).params
    assert (params.guidance_scale, params.steps) == (7.0, 50)


async def test_diffusers_api_image_modes(compat: httpx.AsyncClient, atelier: Atelier) -> None:
    image, mask = png(), png(colour="white")
    cases: dict[str, dict[str, Any]] = {
        "img2img": {"func_name": "i2i", "image_base64": image, "denoising_strength": 0.01, "resize_mode": 1},
        "inpaint": {"func_name": "inpaint", "image_base64": image, "mask_base64": mask},
        "outpaint": {"func_name": "outpaint", "image_base64": image, "expand_type": "reflect"},
        "controlnet": {
            "controlnet_path": "depth",
            "process_func": "depth",
            "image_base64": image,
            "control_scale": 0.5,
        },
    }
    for mode, extra in cases.items():
        reply = await compat.post("/api/predict", json={"task_id": mode, "prompt": "猫", "steps": 1, **extra})
        assert reply.status_code == 200, reply.text
        params = newest(atelier).params
        assert params.mode.value == mode
        if mode == "img2img":
            assert (params.strength, params.resize_mode.value, params.width) == (0.1, "crop", 64)
        if mode == "outpaint":
            assert (params.outpaint.left, params.outpaint.down, params.outpaint.fill.value) == (128, 128, "reflect")
            assert (params.width, params.height) == (96 + 256, 72 + 256)
    [control] = params.controls
    assert (control.kind.value, control.model, control.scale) == ("depth", "depth", 0.5)


@pytest.mark.parametrize(
    ("body", "code", "message"),
    [
        ({"prompt": "猫", "func_name": "magic"}, 460, "func_name must be one of"),
        ({"prompt": "猫", "process_func": "hed", "image_base64": png()}, 460, "supported: canny, depth"),
        ({"prompt": "猫", "use_translate": True}, 460, "translation is not available"),
        ({"prompt": "猫", "func_name": "i2i", "image_link": "http://x/a.png"}, 460, "fetching links is not enabled"),
        ({"prompt": "猫", "lora_path": "missing"}, 460, "missing"),
        ({"prompt": "猫", "lora_path": ["poem", "ink"], "lora_attn": [0.5]}, 460, "lora_attn"),
        ({"prompt": "猫", "controlnet_path": "missing", "image_base64": png()}, 460, "missing"),
        ({"prompt": "猫", "steps": 1000}, 460, "steps"),
        ({"prompt": "猫", "seed": "lucky"}, 460, "seed"),
        ({"seed": 1}, 460, "prompt"),
        ({"prompt": "猫", "func_name": "i2i"}, 460, "needs image_base64"),
        ({"prompt": "猫", "func_name": "i2i", "image_base64": "%%%not-an-image"}, 462, ""),
        ({"prompt": "猫", "func_name": "inpaint", "image_base64": png(), "mask_base64": "AAAA"}, 462, ""),
    ],
)
async def test_diffusers_api_errors(
    compat: httpx.AsyncClient, atelier: Atelier, body: dict[str, Any], code: int, message: str
) -> None:
    reply = await compat.post("/api/predict", json={"task_id": "e", **body})
    assert reply.status_code == code
    answer = reply.json()
    assert set(answer) == {"success", "task_id", "error_code", "error_msg"}
    assert (answer["success"], answer["task_id"], answer["error_code"]) == (0, "e", code)
    assert message in answer["error_msg"] and answer["error_msg"]
    assert atelier.jobs().total == 0


async def test_diffusers_api_bad_json_and_failed_jobs(
    compat: httpx.AsyncClient, atelier: Atelier, monkeypatch: pytest.MonkeyPatch
) -> None:
    reply = await compat.post("/api/predict", content=b"{not json", headers={"content-type": "application/json"})
    assert reply.status_code == 460 and reply.json()["error_code"] == 460 and "error" not in reply.json()

    def explode(*_: Any, **__: Any) -> Any:
        raise RuntimeError("boom " * 100)

    generator = atelier.container.generator()
    monkeypatch.setattr(generator, "generate", explode)
    monkeypatch.setattr(generator, "generate_batch", explode, raising=False)
    reply = await compat.post("/api/predict", json={"task_id": "f", "prompt": "猫", "steps": 1})
    answer = reply.json()
    assert reply.status_code == 469 and (answer["success"], answer["task_id"], answer["error_code"]) == (0, "f", 469)
    job = newest(atelier)  # the worker's exception text stays in the server log, never in the answer
    assert "boom" not in answer["error_msg"] and "RuntimeError" not in answer["error_msg"]
    assert answer["error_msg"] == f"Job {job.id} failed (generation_failed); the server log has the details."


# -- AUTOMATIC1111 ---------------------------------------------------------------------------


async def test_a1111_txt2img_images_parameters_info(compat: httpx.AsyncClient, atelier: Atelier) -> None:
    body = {
        "prompt": "猫 <lora:poem:0.5>",
        "negative_prompt": "狗",
        "seed": 7,
        "sampler_name": "DPM++ 2M",
        "scheduler": "Karras",
        "batch_size": 2,
        "n_iter": 2,
        "steps": 3,
        "cfg_scale": 5,
        "width": 64,
        "height": 72,
        "restore_faces": False,
        "override_settings": {"sd_model_checkpoint": "demo.safetensors [6ce0161689]"},
        "save_images": True,
    }
    reply = await compat.post("/sdapi/v1/txt2img", json=body)
    assert reply.status_code == 200, reply.text
    answer = reply.json()
    assert set(answer) == {"images", "parameters", "info"} and answer["parameters"] == body
    assert isinstance(answer["info"], str)
    info = json.loads(answer["info"])
    assert (info["seed"], info["subseed"], info["all_seeds"]) == (7, 7, [7, 8, 9, 10])
    assert (info["width"], info["height"], info["steps"], info["cfg_scale"]) == (64, 72, 3, 5.0)
    assert (info["sampler_name"], info["batch_size"], info["n_iter"]) == ("DPM++ 2M Karras", 2, 2)
    assert (info["prompt"], info["negative_prompt"], info["sd_model_name"]) == ("猫 <lora:poem:0.5>", "狗", "demo")
    assert len(info["job_timestamp"]) == 14 and info["job_timestamp"].isdigit()
    assert len(answer["images"]) == 4 and decoded(answer["images"][3]).size == (64, 72)
    assert decoded(answer["images"][2]).info["parameters"] == info["infotexts"][2]
    assert "Seed: 9" in info["infotexts"][2]
    assert [(lora.name, lora.weight) for lora in newest(atelier).params.loras] == [("poem", 0.5)]
    quiet = await compat.post("/sdapi/v1/txt2img", json={"prompt": "猫", "steps": 1, "send_images": False})
    assert quiet.status_code == 200 and quiet.json()["images"] == []
    info = json.loads(quiet.json()["info"])
    assert (info["width"], info["height"], info["steps"]) == (512, 512, 1)  # A1111's defaults, not the model's


@pytest.mark.parametrize(
    ("body", "status", "code"),
    [
        ({"prompt": "猫", "sampler_name": "warp"}, 422, "unknown_scheduler"),
        ({"prompt": "猫", "batch_size": 3, "n_iter": 3}, 422, "invalid_parameters"),
        ({"prompt": "猫", "steps": "many"}, 422, "invalid_parameters"),
        ({"prompt": "猫", "width": 100}, 422, "invalid_width"),
        ({"prompt": "猫", "override_settings": {"sd_model_checkpoint": "missing [abc123]"}}, 404, "unknown_model"),
    ],
)
async def test_a1111_errors(
    compat: httpx.AsyncClient, atelier: Atelier, body: dict[str, Any], status: int, code: str
) -> None:
    reply = await compat.post("/sdapi/v1/txt2img", json={"steps": 1, "width": 64, "height": 64, **body})
    assert reply.status_code == status
    answer = reply.json()
    assert answer["error"]["code"] == code and answer["detail"] == answer["error"]["message"] and answer["detail"]
    assert atelier.jobs().total == 0


async def test_a1111_img2img_and_controlnet_fields(compat: httpx.AsyncClient, atelier: Atelier) -> None:
    small = {"prompt": "猫", "steps": 1, "width": 64, "height": 64}
    reply = await compat.post(
        "/sdapi/v1/img2img", json={**small, "init_images": [png()], "mask": png(), "resize_mode": 2}
    )
    params = newest(atelier).params
    assert reply.status_code == 200 and (params.mode.value, params.strength, params.resize_mode.value) == (
        "inpaint",
        0.75,
        "pad",
    )
    unit = {"input_image": png(), "module": "depth_midas", "model": "depth [a1b2c3d4]", "weight": 0.6}
    reply = await compat.post("/sdapi/v1/txt2img", json={**small, "alwayson_scripts": {"controlnet": {"args": [unit]}}})
    assert reply.status_code == 200, reply.text
    [control] = newest(atelier).params.controls
    assert (control.kind.value, control.model, control.scale) == ("depth", "depth", 0.6)
    unit = {"image": png(), "module": "openpose"}
    reply = await compat.post("/sdapi/v1/txt2img", json={**small, "alwayson_scripts": {"controlnet": {"args": [unit]}}})
    assert reply.status_code == 422 and "openpose" in reply.json()["detail"]
    reply = await compat.post("/sdapi/v1/img2img", json=small)
    assert reply.status_code == 422 and reply.json()["error"]["code"] == "invalid_parameters"
    assert "init_images" in reply.json()["detail"]


async def test_a1111_progress_and_interrupt(tmp_path: Any) -> None:
    atelier = open_test_atelier(tmp_path, progress_interval=0.0)
    atelier.container.generator().step_seconds = 0.05
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=create_app(atelier)), base_url="http://a") as c:
        idle = (await c.get("/sdapi/v1/progress")).json()
        assert idle["progress"] == 0 and idle["state"]["job"] == "" and idle["state"]["job_count"] == 0
        body = {"prompt": "猫", "steps": 100, "width": 64, "height": 64}
        pending = asyncio.create_task(c.post("/sdapi/v1/txt2img", json=body))
        for _ in range(200):
            state = (await c.get("/sdapi/v1/progress")).json()
            if state["progress"] > 0.05:
                break
            await asyncio.sleep(0.02)
        job = newest(atelier)
        assert state["state"]["job"] == job.id and state["state"]["job_count"] == 1
        assert state["state"]["sampling_steps"] == 100 and 0 < state["state"]["sampling_step"] < 100
        assert state["eta_relative"] > 0 and state["state"]["interrupted"] is False
        assert (await c.post("/sdapi/v1/interrupt")).json() == {}
        reply = await pending
        assert reply.status_code == 200 and reply.json()["images"] == []
        assert atelier.job(job.id).status.value == "cancelled" and atelier.job(job.id).progress < 0.9
        assert (await c.get("/sdapi/v1/progress")).json()["state"]["job"] == ""
    atelier.close()


async def test_a1111_model_sampler_and_lora_lists(compat: httpx.AsyncClient) -> None:
    models = (await compat.get("/sdapi/v1/sd-models")).json()
    assert [(m["title"], m["model_name"], m["filename"], m["hash"]) for m in models] == [
        ("demo", "demo", "memory://demo", None)
    ]
    samplers = (await compat.get("/sdapi/v1/samplers")).json()
    names = [s["name"] for s in samplers]
    assert "Euler a" in names and "DPM++ 2M Karras" in names and samplers[0]["aliases"] == []
    loras = (await compat.get("/sdapi/v1/loras")).json()
    assert [(lora["name"], lora["alias"], lora["path"]) for lora in loras] == [
        ("ink", "ink", "ink"),
        ("poem", "poem", "poem"),
    ]
    spec = (await compat.get("/openapi.json")).json()
    assert spec["paths"]["/sdapi/v1/txt2img"]["post"]["tags"] == ["a1111"]
    assert spec["paths"]["/api/predict"]["post"]["tags"] == ["diffusers-api"]
    assert spec["paths"]["/v1/images/generations"]["post"]["tags"] == ["openai"]


# -- OpenAI images ---------------------------------------------------------------------------


async def test_openai_b64_json_and_url(compat: httpx.AsyncClient, atelier: Atelier) -> None:
    body = {"prompt": "猫", "n": 2, "size": "64x72", "response_format": "b64_json", "quality": "hd", "user": "u"}
    reply = await compat.post("/v1/images/generations", json=body)
    assert reply.status_code == 200, reply.text
    answer = reply.json()
    assert isinstance(answer["created"], int) and len(answer["data"]) == 2
    assert decoded(answer["data"][0]["b64_json"]).size == (64, 72)
    reply = await compat.post("/v1/images/generations", json={"prompt": "猫", "model": "dall-e-3", "size": "auto"})
    (item,) = reply.json()["data"]
    assert set(item) == {"url"} and item["url"].startswith("/v1/images/")
    fetched = await compat.get(item["url"])
    assert fetched.status_code == 200 and Image.open(io.BytesIO(fetched.content)).size == (64, 64)


@pytest.mark.parametrize(
    ("body", "status", "param"),
    [
        ({"prompt": "猫", "n": 9}, 400, "n"),
        ({"prompt": "猫", "size": "huge"}, 400, "size"),
        ({"prompt": "猫", "size": "100x100"}, 400, "size"),
        ({"prompt": "猫", "response_format": "gif"}, 400, "response_format"),
        ({"n": 1}, 400, "prompt"),
        ({"prompt": "猫", "model": "missing"}, 404, None),
    ],
)
async def test_openai_errors(
    compat: httpx.AsyncClient, atelier: Atelier, body: dict[str, Any], status: int, param: str | None
) -> None:
    reply = await compat.post("/v1/images/generations", json=body)
    assert reply.status_code == status
    error = reply.json()["error"]
    assert error["type"] == "invalid_request_error" and error["param"] == param and error["message"] and error["code"]
    assert atelier.jobs().total == 0


# -- the real tiny demo models ---------------------------------------------------------------


async def test_real_models_controlnet_and_img2img(data_dir: str) -> None:
    atelier = Atelier.open(data_dir=data_dir)
    native = atelier.model("demo").default_size
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=create_app(atelier)), base_url="http://r") as c:
        body = {"task_id": "cn", "prompt": "一只猫", "controlnet_path": "canny", "process_func": "canny"}
        reply = await c.post("/api/predict", json={**body, "image_base64": png((64, 64)), "steps": 2, "seed": 5})
        assert reply.status_code == 200, reply.text
        answer = reply.json()
        assert (answer["success"], answer["seed"]) == (1, "5")
        job = newest(atelier)
        assert (job.params.mode.value, job.params.controls[0].model, job.params.width) == (
            "controlnet",
            "canny",
            native,
        )
        assert answer["is_nsfw"] == [bool(job.images[0].nsfw)]
        body = {"prompt": "一只猫", "init_images": [png((64, 64))], "denoising_strength": 0.5, "steps": 2}
        reply = await c.post("/sdapi/v1/img2img", json={**body, "width": 64, "height": 64, "seed": 3})
        assert reply.status_code == 200, reply.text
        info = json.loads(reply.json()["info"])
        picture = decoded(reply.json()["images"][0])
        assert picture.size == (64, 64) and picture.info["parameters"] == info["infotexts"][0]
        assert "Denoising strength: 0.5" in info["infotexts"][0] and info["sd_model_name"] == "demo"
    atelier.close()
