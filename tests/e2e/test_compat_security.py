"""The compatible APIs (AUTOMATIC1111, OpenAI images, Diffusers-API) against hostile and careless clients:
nothing a client sends causes a 5xx or a leak, waiting holds no server thread, URLs never come from the Host
header, per-key A1111 options, reported ignored fields, the infotext A1111 reads, and the real OpenAI SDK
against a real uvicorn server."""

from __future__ import annotations

import asyncio
import base64
import io
import json
import re
import socket
import threading
import time
from collections.abc import AsyncIterator, Iterator
from contextlib import suppress
from pathlib import Path
from typing import Any

import httpx
import pytest
import uvicorn
from PIL import Image

from app.adapters.diffusers.sampler_names import sampler_of
from app.adapters.memory.options import InMemoryOwnerOptions
from app.domain.errors import Conflict
from app.domain.generation import GenerationParams, infotext
from app.domain.specs import LoraSpec
from app.entrypoints.http.app import create_app
from app.entrypoints.library import Atelier
from app.ports.options import OwnerOptions
from tests.e2e.conftest import open_test_atelier

pytestmark = pytest.mark.anyio

A1111, OPENAI, DIFFUSERS = "a1111", "openai", "diffusers"
DIALECTS: dict[str, tuple[str, dict[str, Any]]] = {
    A1111: ("/sdapi/v1/txt2img", {"prompt": "猫", "steps": 1, "width": 64, "height": 64}),
    OPENAI: ("/v1/images/generations", {"prompt": "猫", "size": "64x64"}),
    DIFFUSERS: ("/api/predict", {"task_id": "s", "prompt": "猫", "steps": 1, "width": 64, "height": 64}),
}
# What an error text must never hold: exception class names, traceback lines, source files.
LEAKS = re.compile(r"Traceback|\b[A-Z]\w*(Error|Exception)\b|\.py\b|site-packages")


def client_for(atelier: Atelier, **headers: str) -> httpx.AsyncClient:
    transport = httpx.ASGITransport(app=create_app(atelier))
    return httpx.AsyncClient(transport=transport, base_url="http://atelier", headers=headers)


@pytest.fixture
async def client(atelier: Atelier) -> AsyncIterator[httpx.AsyncClient]:
    async with client_for(atelier) as c:
        yield c


def message_of(dialect: str, reply: httpx.Response) -> str:
    """The error text of a refusal in the dialect's own shape (and checks that shape)."""
    body = reply.json()
    if dialect == A1111:
        assert set(body) == {"detail", "error"} and body["detail"] == body["error"]["message"]
        return str(body["detail"])
    if dialect == OPENAI:
        assert set(body["error"]) == {"message", "type", "param", "code"} and body["error"]["code"]
        return str(body["error"]["message"])
    assert set(body) == {"success", "task_id", "error_code", "error_msg"}
    assert body["success"] == 0 and body["error_code"] == reply.status_code
    return str(body["error_msg"])


def assert_refused(dialect: str, reply: httpx.Response, data_dir: Path) -> str:
    assert 400 <= reply.status_code < 500, reply.text
    if dialect == DIFFUSERS:
        assert reply.status_code == 460
    if dialect == OPENAI:
        assert reply.json()["error"]["type"] == "invalid_request_error"
    message = message_of(dialect, reply)
    assert message and not LEAKS.search(message) and str(data_dir) not in reply.text
    return message


def raw(dialect: str, **changes: Any) -> bytes:
    return json.dumps({**DIALECTS[dialect][1], **changes}).encode()


def swapped(dialect: str, field: str, literal: str) -> bytes:
    """The dialect's valid body with ``field`` set to a JSON literal that json.dumps would not write."""
    return raw(dialect, **{field: "@@"}).replace(b'"@@"', literal.encode())


WRONG_TYPE = {A1111: "batch_size", OPENAI: "n", DIFFUSERS: "image_num"}
NUMBER = {A1111: "seed", OPENAI: "n", DIFFUSERS: "seed"}  # an integer field each dialect reads
FLOAT = {A1111: "cfg_scale", OPENAI: "n", DIFFUSERS: "cfg_scale"}
SECOND_TEXT = {A1111: "negative_prompt", OPENAI: "user", DIFFUSERS: "negative_prompt"}
HOSTILE: dict[str, Any] = {
    "deep array": lambda d: b"[" * 100_000,
    "deep object": lambda d: b'{"a": ' * 100_000,
    "nested field": lambda d: swapped(d, "prompt", "[" * 70 + "]" * 70),
    "surrogate prompt": lambda d: swapped(d, "prompt", '"\\udfff"'),
    "surrogate negative": lambda d: swapped(d, SECOND_TEXT[d], '"a\\ud800b"'),
    "surrogate key": lambda d: swapped(d, "extra", '{"\\udfff": 1}'),
    "huge seed": lambda d: raw(d, **{NUMBER[d]: 2**70}),
    "huge steps": lambda d: raw(d, steps=10**30) if d != OPENAI else raw(d, n=10**30),
    "huge width": lambda d: raw(d, width=10**20) if d != OPENAI else raw(d, size=f"{10**20}x64"),
    "long number": lambda d: swapped(d, NUMBER[d], "9" * 5000),
    "nan": lambda d: swapped(d, FLOAT[d], "NaN"),
    "infinity": lambda d: swapped(d, FLOAT[d], "1e400"),
    "prompt number": lambda d: raw(d, prompt=5),
    "wrong type": lambda d: raw(d, **{WRONG_TYPE[d]: "x"}),
    "array body": lambda d: b"[]",
    "string body": lambda d: b'"x"',
    "null body": lambda d: b"null",
    "not json": lambda d: b"{prompt: cat",
    "not utf-8": lambda d: b'{"prompt": "\xff\xfe"}',
}


@pytest.mark.parametrize("content_type", ["application/json", "text/plain"])
@pytest.mark.parametrize("case", list(HOSTILE))
@pytest.mark.parametrize("dialect", list(DIALECTS))
async def test_nothing_a_client_sends_causes_a_5xx_or_a_leak(
    client: httpx.AsyncClient, atelier: Atelier, tmp_path: Path, dialect: str, case: str, content_type: str
) -> None:
    """Each dialect refuses in its own shape with a 4xx, names the field of a bad text, stores nothing."""
    path = DIALECTS[dialect][0]
    reply = await client.post(path, content=HOSTILE[case](dialect), headers={"content-type": content_type})
    message = assert_refused(dialect, reply, tmp_path)
    field = {"surrogate prompt": "prompt", "surrogate negative": SECOND_TEXT[dialect]}.get(case)
    if field:
        assert field in message
    assert atelier.jobs().total == 0


async def test_a_route_refuses_hostile_json_on_its_own(
    client: httpx.AsyncClient, atelier: Atelier, tmp_path: Path
) -> None:
    """Multipart bodies pass the body guard unread; the routes still parse them safely."""
    multipart = {"content-type": "multipart/form-data; boundary=x"}
    for dialect, (path, _) in DIALECTS.items():
        for case in ("deep array", "nested field", "surrogate prompt", "nan", "long number", "null body"):
            reply = await client.post(path, content=HOSTILE[case](dialect), headers=multipart)
            message = assert_refused(dialect, reply, tmp_path)
            if case == "surrogate prompt":
                assert "prompt" in message and "surrogate" in message
    assert atelier.jobs().total == 0


@pytest.mark.parametrize("size", [-5, 0])
@pytest.mark.parametrize("field", ["width", "height"])
async def test_diffusers_api_refuses_a_size_that_is_not_positive(
    client: httpx.AsyncClient, atelier: Atelier, field: str, size: int
) -> None:
    reply = await client.post("/api/predict", json={"task_id": "w", "prompt": "猫", field: size})
    assert reply.status_code == 460
    assert reply.json()["error_msg"] == f"{field} must be a positive number of pixels; got {size}."
    assert reply.json()["task_id"] == "w" and atelier.jobs().total == 0


async def test_an_error_echoes_only_a_plain_task_id(client: httpx.AsyncClient) -> None:
    reply = await client.post("/api/predict", json={"task_id": {"x": [1]}, "prompt": 5})
    assert reply.status_code == 460 and reply.json()["task_id"] is None


# -- URLs ------------------------------------------------------------------------------------


async def test_image_urls_never_come_from_the_host_header(tmp_path: Path) -> None:
    for base in (None, "https://img.example.com/"):
        atelier = open_test_atelier(tmp_path / str(bool(base)), public_base_url=base)
        async with client_for(atelier, Host="evil.example") as c:
            openai = await c.post("/v1/images/generations", json={"prompt": "猫", "size": "64x64", "n": 2})
            diffusers = await c.post("/api/predict", json={"prompt": "猫", "steps": 1, "image_num": 2})
            urls = [item["url"] for item in openai.json()["data"]] + diffusers.json()["image_url"].split(",")
            for reply in (openai, diffusers):
                assert reply.status_code == 200 and "evil.example" not in reply.text
            prefix = "https://img.example.com/v1/images/" if base else "/v1/images/"
            assert len(urls) == 4 and all(url.startswith(prefix) for url in urls)
            fetched = await c.get(urls[0].removeprefix("https://img.example.com"))
            assert fetched.status_code == 200 and fetched.headers["content-type"] == "image/png"
        atelier.close()


# -- waiting -----------------------------------------------------------------------------------


async def test_a_job_outlasting_the_wait_answers_each_dialects_timeout_and_keeps_running(tmp_path: Path) -> None:
    atelier = open_test_atelier(tmp_path, compat_wait_seconds=0.3)
    atelier.container.generator().step_seconds = 0.05
    async with client_for(atelier) as c:
        for dialect, (path, body) in DIALECTS.items():
            started = time.monotonic()
            reply = await c.post(path, json={**body, "steps": 12} if dialect != OPENAI else body)
            assert time.monotonic() - started < 5
            job = atelier.jobs(limit=1).items[0]
            answer = reply.json()
            if dialect == A1111:
                assert reply.status_code == 504 and answer["error"]["code"] == "wait_timeout"
                message = answer["detail"]
                assert answer["error"]["message"] == message
            elif dialect == OPENAI:
                assert reply.status_code == 504 and answer["error"]["type"] == "timeout"
                assert (answer["error"]["code"], answer["error"]["param"]) == ("wait_timeout", None)
                message = answer["error"]["message"]
            else:
                assert reply.status_code == 469 and answer["error_code"] == 469 and answer["success"] == 0
                assert answer["task_id"] == "s"
                message = answer["error_msg"]
            assert job.id in message and f"/v1/jobs/{job.id}" in message
            for _ in range(200):  # it keeps running after the answer
                if atelier.job(job.id).status.finished:
                    break
                await asyncio.sleep(0.05)
            assert atelier.job(job.id).status.value == "succeeded"
    atelier.close()


async def test_fifty_waiting_requests_leave_healthz_answering(tmp_path: Path) -> None:
    """Waiting requests hold no thread of the pool (40 threads): the 51st request is answered at once."""
    atelier = open_test_atelier(tmp_path, compat_wait_seconds=60, max_queued_jobs=0, requests_per_minute=0)
    atelier.container.generator().step_seconds = 0.05
    body = {"prompt": "猫", "steps": 100, "width": 64, "height": 64}
    async with client_for(atelier) as c:
        pending = [asyncio.create_task(c.post("/sdapi/v1/txt2img", json=body)) for _ in range(50)]
        try:
            for _ in range(200):
                if atelier.jobs().total == 50:
                    break
                await asyncio.sleep(0.05)
            assert atelier.jobs().total == 50
            started = time.monotonic()
            health = await asyncio.wait_for(c.get("/healthz"), timeout=5)
            assert health.status_code == 200 and time.monotonic() - started < 2
            assert not any(task.done() for task in pending)  # still waiting for their jobs
        finally:
            for job in atelier.jobs(limit=100).items:
                with suppress(Conflict):
                    atelier.cancel(job.id)
        replies = await asyncio.wait_for(asyncio.gather(*pending), timeout=30)
        assert [r.status_code for r in replies] == [200] * 50  # interrupted jobs answer what they have, as A1111
    atelier.close()


# -- leaks of the model lists ------------------------------------------------------------------------


async def test_model_lists_show_paths_to_admins_only(tmp_path: Path) -> None:
    atelier = open_test_atelier(tmp_path, api_keys=("user-key",), admin_keys=("admin-key",))
    atelier.add_model("other", "/srv/models/other-model", kind="base")
    atelier.add_model("style", "/srv/models/style.safetensors", kind="lora")
    async with client_for(atelier, Authorization="Bearer user-key") as user:
        models = (await user.get("/sdapi/v1/sd-models")).json()
        loras = (await user.get("/sdapi/v1/loras")).json()
        assert [(m["title"], m["filename"]) for m in models] == [("demo", "demo"), ("other", "other")]
        assert [(lora["name"], lora["path"]) for lora in loras] == [("style", "style")]
        assert "/srv/" not in json.dumps([models, loras]) and "memory://" not in json.dumps(models)
    async with client_for(atelier, Authorization="Bearer admin-key") as admin:
        models = (await admin.get("/sdapi/v1/sd-models")).json()
        loras = (await admin.get("/sdapi/v1/loras")).json()
        assert models[1]["filename"] == "/srv/models/other-model"
        assert loras[0]["path"] == "/srv/models/style.safetensors"
    atelier.close()


# -- A1111 options -----------------------------------------------------------------------------------


async def test_a1111_options_choose_the_checkpoint_per_key(tmp_path: Path) -> None:
    atelier = open_test_atelier(tmp_path, api_keys=("alice", "bob"))
    atelier.add_model("other", "other")
    atelier.add_model("clear-vae", "clear-vae", kind="vae")
    small = {"prompt": "猫", "steps": 1, "width": 64, "height": 64}
    async with (
        client_for(atelier, Authorization="Bearer alice") as alice,
        client_for(atelier, Authorization="Bearer bob") as bob,
    ):
        defaults = {"sd_vae": "Automatic", "CLIP_stop_at_last_layers": 1}
        assert (await alice.get("/sdapi/v1/options")).json() == {**defaults, "sd_model_checkpoint": "demo"}
        missing = await alice.post("/sdapi/v1/options", json={"sd_model_checkpoint": "missing [abc123]"})
        assert missing.status_code == 404 and missing.json()["error"]["code"] == "unknown_model"
        assert missing.json()["detail"] == missing.json()["error"]["message"]
        unknown_vae = await alice.post("/sdapi/v1/options", json={"sd_vae": "x"})
        assert unknown_vae.status_code == 404 and "named 'x'" in unknown_vae.json()["error"]["message"]
        changes = {
            "sd_model_checkpoint": "other.safetensors [1a2b3c4d]",
            "CLIP_stop_at_last_layers": 2,
            "sd_vae": "clear-vae.safetensors",
            "eta_noise_seed_delta": 31337,
        }
        stored = await alice.post("/sdapi/v1/options", json=changes)
        assert stored.status_code == 200 and stored.json() is None
        options = (await alice.get("/sdapi/v1/options")).json()
        assert options == {**changes, "sd_model_checkpoint": "other", "sd_vae": "clear-vae"}
        assert (await bob.get("/sdapi/v1/options")).json() == {**defaults, "sd_model_checkpoint": "demo"}
        vaes = (await alice.get("/sdapi/v1/sd-vae")).json()
        assert vaes == [{"model_name": "clear-vae", "filename": "clear-vae"}]  # no server path for a user key

        assert (await alice.post("/sdapi/v1/txt2img", json=small)).status_code == 200
        params = atelier.jobs(limit=1).items[0].params
        assert (params.model, params.vae, params.clip_skip) == ("other", "clear-vae", 2)  # the options apply
        override = {**small, "override_settings": {"sd_model_checkpoint": "demo", "sd_vae": "Automatic"}}
        assert (await alice.post("/sdapi/v1/txt2img", json=override)).status_code == 200
        params = atelier.jobs(limit=1).items[0].params
        assert (params.model, params.vae) == ("demo", None)
        assert (await bob.post("/sdapi/v1/txt2img", json=small)).status_code == 200
        params = atelier.jobs(limit=1).items[0].params
        assert (params.model, params.vae, params.clip_skip) == ("demo", None, 1)

        assert (await alice.post("/sdapi/v1/options", json={"sd_vae": None})).status_code == 200
        assert (await alice.get("/sdapi/v1/options")).json()["sd_vae"] == "Automatic"
        refused = await alice.post("/sdapi/v1/options", content=b"[1]")
        assert refused.status_code in (400, 422) and refused.json()["error"]["code"]
    atelier.close()


def check_options_contract(store: OwnerOptions) -> None:
    assert store.get("alice") == {}
    store.set("alice", {"sd_model_checkpoint": "demo", "nested": {"a": [1, 2]}})
    store.set("alice", {"sd_model_checkpoint": "other", "nested": {"a": [3]}})
    store.set("bob", {"x": 1})
    assert store.get("alice") == {"sd_model_checkpoint": "other", "nested": {"a": [3]}}
    assert store.get("bob") == {"x": 1}
    store.get("alice")["nested"]["a"].append(9)  # a copy: changing it changes nothing stored
    assert store.get("alice")["nested"] == {"a": [3]}


def test_owner_options_contract_in_memory_and_in_sql(tmp_path: Path) -> None:
    check_options_contract(InMemoryOwnerOptions())
    with Atelier.open(data_dir=str(tmp_path), start_worker=False) as atelier:
        check_options_contract(atelier.container.owner_options())
    with Atelier.open(data_dir=str(tmp_path), start_worker=False) as atelier:  # persisted
        assert atelier.container.owner_options().get("bob") == {"x": 1}


# -- ignored fields and samplers --------------------------------------------------------------------


async def test_a1111_reports_the_fields_it_does_not_honour(client: httpx.AsyncClient) -> None:
    neutral = {
        "prompt": "猫",
        "steps": 1,
        "width": 64,
        "height": 64,
        "styles": [],
        "subseed": -1,
        "subseed_strength": 0,
        "seed_resize_from_h": -1,
        "seed_resize_from_w": 0,
        "enable_hr": False,
        "hr_scale": 2,
        "hr_upscaler": "Latent",
        "denoising_strength": 0.7,
        "restore_faces": False,
        "tiling": False,
        "eta": 1.0,
        "s_noise": 1,
        "s_churn": 0,
        "do_not_save_grid": False,
        "save_images": True,
        "override_settings": {},
        "override_settings_restore_afterwards": True,
        "script_args": [],
        "script_name": None,
        "alwayson_scripts": {},
    }
    reply = await client.post("/sdapi/v1/txt2img", json=neutral)
    assert reply.status_code == 200 and json.loads(reply.json()["info"])["ignored_fields"] == []
    effective = {
        **neutral,
        "restore_faces": True,
        "tiling": True,
        "subseed": 5,
        "subseed_strength": 0.3,
        "seed_resize_from_h": 512,
        "override_settings": {
            "sd_model_checkpoint": "demo",
            "CLIP_stop_at_last_layers": 2,
            "eta_noise_seed_delta": 31337,
        },
        "alwayson_scripts": {"ADetailer": {"args": [True]}},
        "brand_new_field": "on",
    }
    reply = await client.post("/sdapi/v1/txt2img", json=effective)
    assert reply.status_code == 200, reply.text
    assert json.loads(reply.json()["info"])["ignored_fields"] == [
        "subseed",
        "subseed_strength",
        "seed_resize_from_h",
        "restore_faces",
        "tiling",
        "brand_new_field",
        "override_settings.eta_noise_seed_delta",
        "alwayson_scripts.ADetailer",
    ]


def png(size: tuple[int, int] = (64, 64)) -> str:
    buffer = io.BytesIO()
    Image.new("RGB", size, "red").save(buffer, format="PNG")
    return base64.b64encode(buffer.getvalue()).decode()


async def test_a1111_reports_ignored_inpainting_fields_and_controlnet_units(
    client: httpx.AsyncClient, atelier: Atelier
) -> None:
    atelier.add_model("canny", "canny", kind="controlnet")
    small = {"prompt": "猫", "steps": 1, "width": 64, "height": 64, "init_images": [png()]}
    masked = {**small, "mask": png(), "mask_blur": 8, "inpainting_fill": 1, "inpaint_full_res": True}
    reply = await client.post("/sdapi/v1/img2img", json=masked)
    assert json.loads(reply.json()["info"])["ignored_fields"] == ["mask_blur", "inpainting_fill"]
    unmasked = {**small, "mask_blur": 8, "inpainting_fill": 1}  # no mask: they change nothing in A1111 either
    reply = await client.post("/sdapi/v1/img2img", json=unmasked)
    assert json.loads(reply.json()["info"])["ignored_fields"] == []
    unit = {"image": png(), "module": "canny", "model": "canny"}
    units = [unit, {**unit, "weight": 0.5}, {**unit, "enabled": False}]
    reply = await client.post("/sdapi/v1/img2img", json={**small, "alwayson_scripts": {"controlnet": {"args": units}}})
    assert json.loads(reply.json()["info"])["ignored_fields"] == []  # every enabled unit is honoured
    assert [unit.scale for unit in atelier.jobs(limit=1).items[0].params.controls] == [1.0, 0.5]
    odd = {**small, "alwayson_scripts": {"controlnet": {"args": 5}}}
    reply = await client.post("/sdapi/v1/img2img", json=odd)
    assert reply.status_code == 200 and atelier.jobs(limit=1).items[0].params.controls == ()


async def test_a1111_scheduler_that_cannot_be_honoured_is_reported(client: httpx.AsyncClient, atelier: Atelier) -> None:
    small = {"prompt": "猫", "steps": 1, "width": 64, "height": 64}
    karras = await client.post("/sdapi/v1/txt2img", json={**small, "sampler_name": "DPM++ 2M", "scheduler": "Karras"})
    info = json.loads(karras.json()["info"])
    assert (info["sampler_name"], info["ignored_fields"]) == ("DPM++ 2M Karras", [])
    euler = await client.post("/sdapi/v1/txt2img", json={**small, "sampler_name": "Euler", "scheduler": "Karras"})
    info = json.loads(euler.json()["info"])
    assert (info["sampler_name"], info["ignored_fields"]) == ("Euler", ["scheduler"])
    before = atelier.jobs().total
    for missing in ("DPM2 a", "Restart"):  # A1111 has them, Atelier does not: refused, as before
        reply = await client.post("/sdapi/v1/txt2img", json={**small, "sampler_name": missing})
        assert reply.status_code == 422 and reply.json()["error"]["code"] == "unknown_scheduler"
    assert atelier.jobs().total == before


# -- infotext -----------------------------------------------------------------------------------------


def resolved(**values: Any) -> GenerationParams:
    return GenerationParams(prompt="猫", model="demo", seed=3, width=64, height=64, steps=20, **values)


def test_infotext_names_the_sampler_that_ran_or_none() -> None:
    assert "Sampler" not in infotext(resolved(), 3)
    assert "Steps: 20, Sampler: DDIM, CFG scale" in infotext(resolved(), 3, sampler="DDIM")
    assert "Sampler: Euler a," in infotext(resolved(scheduler="euler_a"), 3, sampler="DDIM")
    assert sampler_of("EulerAncestralDiscreteScheduler") == "Euler a"
    assert sampler_of("DPMSolverMultistepScheduler", {"use_karras_sigmas": True}) == "DPM++ 2M Karras"
    assert sampler_of("DPMSolverMultistepScheduler", {"algorithm_type": "sde-dpmsolver++"}) == "DPM++ 2M SDE"
    assert sampler_of("PNDMScheduler", {"skip_prk_steps": True}) == "PNDM"
    assert sampler_of("FlowMatchEulerDiscreteScheduler") is None


def test_infotext_writes_loras_the_a1111_way() -> None:
    listed = resolved(loras=(LoraSpec("poem", 0.7), LoraSpec("ink", 1.0)))
    text = infotext(listed, 3)
    assert text.splitlines()[0] == "猫 <lora:poem:0.7> <lora:ink:1>"
    assert "Lora hashes" not in text  # no file hash known: no made-up one
    digest = "0123456789abcdef" * 4
    text = infotext(listed, 3, lora_hashes={"poem": digest})
    assert text.splitlines()[-1].endswith('Lora hashes: "poem: 0123456789ab"')
    base = {"prompt": "猫 <lora:poem:0.5>", "model": "demo", "seed": 1, "steps": 20}
    tagged = GenerationParams(**base, loras=(LoraSpec("poem", 0.8),))
    assert infotext(tagged, 1).splitlines()[0] == "猫 <lora:poem:0.8>"  # the weight that was applied
    same = GenerationParams(**base, loras=(LoraSpec("poem", 0.5),))
    assert infotext(same, 1).splitlines()[0] == "猫 <lora:poem:0.5>"


async def test_a1111_infotexts_are_those_the_pngs_carry(client: httpx.AsyncClient, atelier: Atelier) -> None:
    atelier.add_model("poem", "poem", kind="lora")
    body = {"prompt": "猫 <lora:poem:0.5>", "steps": 1, "width": 64, "height": 64, "batch_size": 2}
    answer = (await client.post("/sdapi/v1/txt2img", json=body)).json()
    info = json.loads(answer["info"])
    for image, text in zip(answer["images"], info["infotexts"], strict=True):
        assert Image.open(io.BytesIO(base64.b64decode(image))).info["parameters"] == text
        assert text.startswith("猫 <lora:poem:0.5>\n") and "Sampler: default" not in text


# -- OpenAI images ------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "model", ["dall-e-2", "dall-e-3", "gpt-image-1", "gpt-image-1-mini", "gpt-image-1.5", "chatgpt-image-latest", None]
)
async def test_openai_model_names_mean_the_default_model(
    client: httpx.AsyncClient, atelier: Atelier, model: str | None
) -> None:
    body = {"prompt": "猫", "size": "64x64"} | ({"model": model} if model else {})
    reply = await client.post("/v1/images/generations", json=body)
    assert reply.status_code == 200, reply.text
    assert atelier.jobs(limit=1).items[0].params.model == atelier.settings.default_model


async def test_openai_registered_models_are_used_and_others_not_found(
    client: httpx.AsyncClient, atelier: Atelier
) -> None:
    for name in ("other", "dall-e-mine"):  # a registered name wins, even one that looks like OpenAI's
        atelier.add_model(name, name)
        reply = await client.post("/v1/images/generations", json={"prompt": "猫", "size": "64x64", "model": name})
        assert reply.status_code == 200 and atelier.jobs(limit=1).items[0].params.model == name
    before = atelier.jobs().total
    reply = await client.post("/v1/images/generations", json={"prompt": "猫", "model": "stable-diffusion-9"})
    error = reply.json()["error"]
    assert reply.status_code == 404 and (error["code"], error["type"]) == ("model_not_found", "invalid_request_error")
    assert "stable-diffusion-9" in error["message"] and atelier.jobs().total == before


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture
def live_server(tmp_path: Path) -> Iterator[str]:
    """A real uvicorn on 127.0.0.1 serving the test profile; image URLs point at it."""
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    atelier = open_test_atelier(tmp_path, public_base_url=url)
    server = uvicorn.Server(uvicorn.Config(create_app(atelier), host="127.0.0.1", port=port, log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 20
    while not server.started and time.monotonic() < deadline:
        time.sleep(0.05)
    assert server.started
    yield url
    server.should_exit = True
    thread.join(10)
    atelier.close()


async def test_the_openai_sdk_generates_through_a_real_server(live_server: str) -> None:
    openai = pytest.importorskip("openai")
    client = openai.AsyncOpenAI(base_url=f"{live_server}/v1", api_key="unused", max_retries=0)
    result = await client.images.generate(model="dall-e-3", prompt="一只猫", size="256x256")
    assert result.data is not None and len(result.data) == 1
    url = result.data[0].url
    assert url is not None and url.startswith(f"{live_server}/v1/images/")
    async with httpx.AsyncClient() as http:
        fetched = await http.get(url)
    assert fetched.status_code == 200 and Image.open(io.BytesIO(fetched.content)).size == (256, 256)
    encoded = await client.images.generate(prompt="一只猫", size="256x256", response_format="b64_json", n=2)
    assert encoded.data is not None and len(encoded.data) == 2
    assert Image.open(io.BytesIO(base64.b64decode(encoded.data[1].b64_json or ""))).size == (256, 256)
    with pytest.raises(openai.NotFoundError) as missing:
        await client.images.generate(model="no-such-model", prompt="一只猫", size="256x256")
    assert missing.value.code == "model_not_found"
    await client.close()
