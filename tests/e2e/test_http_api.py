"""The HTTP API through httpx.ASGITransport, on the test profile (in-memory jobs,
pattern generator) so the contract is checked without model weights."""

from __future__ import annotations

import asyncio
import io
import json
from typing import Any

import httpx
import pytest
from PIL import Image

from app.entrypoints.http.app import create_app
from app.entrypoints.library import Atelier
from tests.e2e.conftest import open_test_atelier

pytestmark = pytest.mark.anyio


async def wait_finished(client: httpx.AsyncClient, job_id: str, **kw: Any) -> dict[str, Any]:
    for _ in range(200):
        body = (await client.get(f"/v1/jobs/{job_id}", **kw)).json()
        if body["status"] in ("succeeded", "failed", "cancelled"):
            return body
        await asyncio.sleep(0.02)
    raise AssertionError(f"job {job_id} did not finish: {body}")


async def test_submit_poll_and_fetch_the_png(client: httpx.AsyncClient) -> None:
    reply = await client.post("/v1/jobs", json={"prompt": "一只猫在草地上", "seed": 42, "num_images": 2, "steps": 3})
    assert reply.status_code == 202
    job = reply.json()
    assert job["status"] in ("queued", "running", "succeeded") and job["seed"] == 42
    assert job["params"]["width"] == 64 and job["params"]["model"] == "demo"
    done = await wait_finished(client, job["id"])
    assert done["status"] == "succeeded" and done["progress"] == 1.0
    assert [i["seed"] for i in done["images"]] == [42, 43]
    png = await client.get(done["images"][1]["url"])
    assert png.status_code == 200 and png.headers["content-type"] == "image/png"
    picture = Image.open(io.BytesIO(png.content))
    assert picture.size == (64, 64)
    assert "Seed: 43" in picture.info["parameters"] and picture.info["parameters"].startswith("一只猫在草地上")


@pytest.mark.parametrize(
    ("body", "status", "code"),
    [
        ({"prompt": ""}, 422, "empty_prompt"),
        ({"prompt": "猫", "width": 100}, 422, "invalid_width"),
        ({"prompt": "猫", "steps": 1000}, 422, "invalid_steps"),
        ({"prompt": "猫", "num_images": 9}, 422, "invalid_num_images"),
        ({"prompt": "猫", "scheduler": "warp"}, 422, "unknown_scheduler"),
        ({"prompt": "猫", "model": "missing"}, 404, "unknown_model"),
        ({"prompt": "猫", "stepz": 3}, 422, "invalid_parameters"),
        ({"prompt": "猫", "width": "wide"}, 422, "invalid_parameters"),
        ({}, 422, "invalid_parameters"),
    ],
)
async def test_bad_requests_get_a_clear_error_and_store_nothing(
    client: httpx.AsyncClient, body: dict[str, Any], status: int, code: str
) -> None:
    reply = await client.post("/v1/jobs", json=body)
    assert reply.status_code == status
    error = reply.json()["error"]
    assert error["code"] == code and error["message"]
    assert "Traceback" not in reply.text
    assert (await client.get("/v1/jobs")).json()["total"] == 0


async def test_malformed_json_and_oversized_bodies(client: httpx.AsyncClient) -> None:
    reply = await client.post("/v1/jobs", content=b"{not json", headers={"content-type": "application/json"})
    assert reply.status_code == 400 and reply.json()["error"]["code"] == "invalid_json"
    huge = json.dumps({"prompt": "a" * 31_000_000})
    reply = await client.post("/v1/jobs", content=huge, headers={"content-type": "application/json"})
    assert reply.status_code == 413 and reply.json()["error"]["code"] == "request_too_large"


async def test_unknown_things_are_404(client: httpx.AsyncClient) -> None:
    for url in ["/v1/jobs/" + "0" * 32, "/v1/jobs/nope", "/v1/images/../../etc/passwd", "/v1/images/abc", "/nowhere"]:
        reply = await client.get(url)
        assert reply.status_code == 404, url
        assert set(reply.json()["error"]) >= {"code", "message"}
    reply = await client.post("/v1/jobs/" + "0" * 32 + "/cancel")
    assert reply.status_code == 404 and reply.json()["error"]["code"] == "job_not_found"


async def test_cancel_a_finished_job_is_409(client: httpx.AsyncClient) -> None:
    job = (await client.post("/v1/jobs", json={"prompt": "猫", "steps": 1})).json()
    await wait_finished(client, job["id"])
    reply = await client.post(f"/v1/jobs/{job['id']}/cancel")
    assert reply.status_code == 409 and reply.json()["error"]["code"] == "job_finished"


async def test_cancel_a_running_job_stops_it(tmp_path: Any) -> None:
    atelier = open_test_atelier(tmp_path)
    atelier.container.generator().step_seconds = 0.05
    app = create_app(atelier)
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://a") as client:
        job = (await client.post("/v1/jobs", json={"prompt": "猫", "steps": 100})).json()
        for _ in range(100):
            if (await client.get(f"/v1/jobs/{job['id']}")).json()["status"] == "running":
                break
            await asyncio.sleep(0.02)
        reply = await client.post(f"/v1/jobs/{job['id']}/cancel")
        assert reply.status_code == 200 and reply.json()["cancel_requested"] is True
        done = await wait_finished(client, job["id"])
        assert done["status"] == "cancelled" and done["progress"] < 0.5 and done["images"] == []
    atelier.close()


async def test_list_pages_newest_first(client: httpx.AsyncClient) -> None:
    ids = [(await client.post("/v1/jobs", json={"prompt": f"猫 {i}", "steps": 1})).json()["id"] for i in range(5)]
    page = (await client.get("/v1/jobs", params={"limit": 2, "offset": 1})).json()
    assert page["total"] == 5 and page["limit"] == 2 and page["offset"] == 1
    assert [j["id"] for j in page["items"]] == [ids[3], ids[2]]
    assert (await client.get("/v1/jobs", params={"limit": 0})).status_code == 422
    assert (await client.get("/v1/jobs", params={"status": "exploded"})).status_code == 422


async def test_server_sent_events_report_progress_then_done(tmp_path: Any) -> None:
    atelier = open_test_atelier(tmp_path, progress_interval=0.0)
    atelier.container.generator().step_seconds = 0.06
    app = create_app(atelier)
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://a") as client:
        job = (await client.post("/v1/jobs", json={"prompt": "猫", "steps": 12})).json()
        reply = await client.get(f"/v1/jobs/{job['id']}/events")
    atelier.close()
    assert reply.headers["content-type"].startswith("text/event-stream")
    events = [block for block in reply.text.split("\n\n") if block.startswith("event:")]
    names = [block.split("\n")[0].removeprefix("event: ") for block in events]
    payloads = [json.loads(block.split("\n")[1].removeprefix("data: ")) for block in events]
    assert names[-1] == "done" and set(names[:-1]) == {"progress"}
    progress = [p["progress"] for p in payloads]
    assert progress == sorted(progress) and len(set(progress)) >= 3
    assert payloads[-1]["status"] == "succeeded"


async def test_events_of_unknown_job_is_404(client: httpx.AsyncClient) -> None:
    reply = await client.get("/v1/jobs/" + "f" * 32 + "/events")
    assert reply.status_code == 404


async def test_api_keys_separate_owners(tmp_path: Any) -> None:
    atelier = open_test_atelier(tmp_path, api_keys="alpha,beta")
    app = create_app(atelier)
    alpha = {"Authorization": "Bearer alpha"}
    beta = {"X-API-Key": "beta"}
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://a") as client:
        assert (await client.post("/v1/jobs", json={"prompt": "猫"})).status_code == 401
        wrong = await client.get("/v1/jobs", headers={"Authorization": "Bearer gamma"})
        assert wrong.status_code == 401 and wrong.json()["error"]["code"] == "unauthorized"
        job = (await client.post("/v1/jobs", json={"prompt": "猫", "steps": 1}, headers=alpha)).json()
        done = await wait_finished(client, job["id"], headers=alpha)
        assert (await client.get(f"/v1/jobs/{job['id']}", headers=beta)).status_code == 404
        assert (await client.get(done["images"][0]["url"], headers=beta)).status_code == 404
        assert (await client.get(done["images"][0]["url"], headers=alpha)).status_code == 200
        assert (await client.get("/v1/jobs", headers=beta)).json()["total"] == 0
        assert (await client.get("/healthz")).status_code == 200  # health needs no key
    atelier.close()


async def test_models_health_and_openapi(client: httpx.AsyncClient) -> None:
    listed = (await client.get("/v1/models")).json()
    assert listed["object"] == "list"
    # The image models, then the language models by the names a chat request gives (the test profile's tiny Llama).
    assert [(m["id"], m["kind"]) for m in listed["data"]] == [
        ("demo", "base"),
        ("tiny-llama", "llm"),
        ("tiny-llama@base", "llm"),
        ("tiny-llama+knowledge", "llm"),
    ]
    assert [m["name"] for m in (await client.get("/v1/models", params={"kind": "base"})).json()["data"]] == ["demo"]
    text = (await client.get("/v1/models", params={"kind": "llm"})).json()["data"]
    assert [m["default"] for m in text] == [True, False, False] and text[1]["parent"] == "tiny-llama"
    assert (await client.get("/healthz")).json() == {"status": "ok", "database": "ok", "profile": "test"}
    spec = (await client.get("/openapi.json")).json()
    for path in [
        "/v1/jobs",
        "/v1/jobs/{job_id}",
        "/v1/jobs/{job_id}/events",
        "/v1/jobs/{job_id}/cancel",
        "/v1/images/{image_id}",
        "/v1/models",
        "/healthz",
    ]:
        assert path in spec["paths"], path
    docs = await client.get("/docs")
    assert docs.status_code == 200 and "swagger" in docs.text.lower()


async def test_database_unavailable_is_503(tmp_path: Any) -> None:
    atelier = Atelier.open(data_dir=str(tmp_path), database_url="postgresql+psycopg://u:p@127.0.0.1:1/db")
    app = create_app(atelier)
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://a") as client:
        for reply in [
            await client.get("/healthz"),
            await client.post("/v1/jobs", json={"prompt": "猫"}),
            await client.get("/v1/jobs"),
        ]:
            assert reply.status_code == 503
            assert reply.json()["error"]["code"] == "database_unavailable"
            assert "unavailable" in reply.json()["error"]["message"].lower()
    atelier.close()


def tiny_png(colour: str = "red") -> bytes:
    import io as _io

    buffer = _io.BytesIO()
    Image.new("RGB", (96, 72), colour).save(buffer, format="PNG")
    return buffer.getvalue()


async def test_uploads_multipart_and_base64(client: httpx.AsyncClient) -> None:
    import base64

    reply = await client.post("/v1/uploads", files={"file": ("a.png", tiny_png(), "image/png")})
    assert reply.status_code == 201
    upload = reply.json()
    assert upload["id"].startswith("upload-") and (upload["width"], upload["height"]) == (96, 72)
    data_url = "data:image/png;base64," + base64.b64encode(tiny_png()).decode()
    again = await client.post("/v1/uploads/base64", json={"image_base64": data_url})
    assert again.status_code == 201 and again.json()["id"] == upload["id"]
    bad = await client.post("/v1/uploads", files={"file": ("a.png", b"not an image", "image/png")})
    assert bad.status_code == 422 and bad.json()["error"]["code"] == "invalid_image"
    bomb = await client.post("/v1/uploads/base64", json={"image_base64": "@@@"})
    assert bomb.status_code == 422 and bomb.json()["error"]["code"] == "invalid_image"


async def test_every_mode_is_accepted_with_ids_or_inline_base64(client: httpx.AsyncClient) -> None:
    import base64

    upload = (await client.post("/v1/uploads", files={"file": ("a.png", tiny_png(), "image/png")})).json()["id"]
    inline = base64.b64encode(tiny_png("blue")).decode()
    bodies = {
        "img2img": {"init_image": upload, "strength": 0.5, "resize_mode": "crop"},
        "inpaint": {"init_image": inline, "mask_image": upload},
        "outpaint": {"init_image": upload, "outpaint": {"left": 16, "down": 8, "fill": "reflect"}},
    }
    for mode, extra in bodies.items():
        reply = await client.post("/v1/jobs", json={"prompt": "猫", "steps": 1, **extra})
        assert reply.status_code == 202, reply.text
        job = await wait_finished(client, reply.json()["id"])
        assert job["status"] == "succeeded" and job["params"]["mode"] == mode
    assert job["params"]["width"] == 96 + 16 and job["params"]["height"] == 72 + 8
    reply = await client.post("/v1/jobs", json={"prompt": "猫", "mode": "inpaint", "init_image": upload})
    assert reply.status_code == 422 and reply.json()["error"]["code"] == "missing_mask_image"
    reply = await client.post("/v1/jobs", json={"prompt": "猫", "init_image": "upload-" + "0" * 32})
    assert reply.status_code == 422 and reply.json()["error"]["code"] == "unknown_input_image"
    reply = await client.post("/v1/jobs", json={"prompt": "猫", "init_image": "%%%"})
    assert reply.status_code == 422 and reply.json()["error"]["code"] == "invalid_image"
    reply = await client.post("/v1/jobs", json={"prompt": "猫", "loras": [{"name": "nope", "weight": 0.5}]})
    assert reply.status_code == 404 and reply.json()["error"]["code"] == "unknown_model"
    reply = await client.post("/v1/jobs", json={"prompt": "猫 <lora:nope:0.5>"})
    assert reply.status_code == 404 and "nope" in reply.json()["error"]["message"]


async def test_concurrent_requests_with_one_batching_key_share_a_pipeline_call(tmp_path: Any) -> None:
    atelier = open_test_atelier(tmp_path, batch_window=0.5)
    app = create_app(atelier)
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://a") as client:
        replies = await asyncio.gather(
            *[client.post("/v1/jobs", json={"prompt": f"第{i}只猫", "steps": 2, "seed": i}) for i in range(4)]
        )
        done = [await wait_finished(client, reply.json()["id"]) for reply in replies]
        other = (await client.post("/v1/jobs", json={"prompt": "猫", "steps": 3})).json()
        await wait_finished(client, other["id"])
    atelier.close()
    assert {job["status"] for job in done} == {"succeeded"}
    assert [job["seed"] for job in done] == [0, 1, 2, 3]
    assert atelier.container.generator().batches == [4]  # the job with other steps ran alone
