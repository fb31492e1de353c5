"""The OpenAPI document tells the truth about the compatible APIs too: AUTOMATIC1111 (`/sdapi/v1/*`), OpenAI
images (`/v1/images/generations`) and the Diffusers-API (`/api/predict`), each in its own shapes.

Every compatible operation has a typed success answer and documents its errors in its dialect's shape (never
the native `ErrorBody`), with exactly the statuses it can answer; real answers of the test profile, successes
and errors, validate against the schemas the document gives for them, every documented object closed."""

from __future__ import annotations

import base64
import io
import json
from pathlib import Path
from typing import Any

import httpx
import pytest
from PIL import Image

from app.entrypoints.http import openapi
from app.entrypoints.http.app import create_app
from app.entrypoints.library import Atelier
from tests.e2e.conftest import open_test_atelier
from tests.e2e.test_openapi import check, is_typed, operations, resolve, schema_errors

pytestmark = pytest.mark.anyio

TXT2IMG, IMG2IMG, OPTIONS = "/sdapi/v1/txt2img", "/sdapi/v1/img2img", "/sdapi/v1/options"
OPENAI, PREDICT = "/v1/images/generations", "/api/predict"
OPENAI_TEXT = ("/v1/chat/completions", "/v1/completions", "/v1/embeddings")
KEY = "user-key-0123456789"
REF = "#/components/schemas/"
# The error statuses each operation documents: its own, and those of the middleware (401 and 429 everywhere;
# 413, and 400 for a body nested too deep, where a body is read; the Diffusers-API answers bad input as 460).
GENERATION = {400, 401, 404, 413, 422, 429, 500, 503, 504, 507}
STATUSES: dict[tuple[str, str], set[int]] = {
    (TXT2IMG, "post"): GENERATION,
    (IMG2IMG, "post"): GENERATION,
    (OPTIONS, "get"): {401, 429, 503},
    (OPTIONS, "post"): {400, 401, 404, 413, 422, 429, 503},
    ("/sdapi/v1/progress", "get"): {401, 429, 503},
    ("/sdapi/v1/interrupt", "post"): {401, 429, 503},
    ("/sdapi/v1/sd-models", "get"): {401, 429, 503},
    ("/sdapi/v1/samplers", "get"): {401, 429},
    ("/sdapi/v1/upscalers", "get"): {401, 429},
    ("/sdapi/v1/latent-upscale-modes", "get"): {401, 429},
    ("/sdapi/v1/loras", "get"): {401, 429, 503},
    ("/sdapi/v1/sd-vae", "get"): {401, 429, 503},
    (OPENAI, "post"): {400, 401, 404, 413, 429, 500, 503, 504},
    **{(path, "post"): {400, 401, 404, 413, 429, 500, 503} for path in OPENAI_TEXT},
    ("/v1/chat/completions", "post"): {400, 401, 404, 409, 413, 429, 500, 503},  # 409: NAME+knowledge, uncalibrated
    (PREDICT, "post"): {401, 413, 429, 460, 462, 469},
    ("/v1/files", "post"): {400, 401, 413, 429, 503},
    ("/v1/files/{file_id}", "get"): {401, 404, 429, 503},
    ("/v1/fine_tuning/jobs", "post"): {400, 401, 404, 409, 413, 429, 503},
    ("/v1/fine_tuning/jobs", "get"): {400, 401, 429, 503},  # 400: a bad `limit`
    ("/v1/fine_tuning/jobs/{fine_tuning_job_id}", "get"): {401, 404, 429, 503},
    ("/v1/fine_tuning/jobs/{fine_tuning_job_id}/events", "get"): {400, 401, 404, 429, 503},
    ("/v1/fine_tuning/jobs/{fine_tuning_job_id}/cancel", "post"): {401, 404, 409, 429, 503},
}
ERROR_MODELS = {
    "/sdapi/": "A1111Error",
    OPENAI: "OpenAIError",
    **dict.fromkeys(OPENAI_TEXT, "OpenAIError"),
    "/v1/files": "OpenAIError",
    "/v1/fine_tuning": "OpenAIError",
    PREDICT: "DiffusersApiError",
}
SMALL = {"prompt": "猫", "steps": 1, "width": 64, "height": 64}
REQUESTS: dict[str, dict[str, Any]] = {
    TXT2IMG: SMALL,
    OPENAI: {"prompt": "猫", "size": "64x64"},
    PREDICT: {"task_id": "t-1", **SMALL},
}


def png(size: tuple[int, int] = (64, 64)) -> str:
    buffer = io.BytesIO()
    Image.new("RGB", size, "red").save(buffer, format="PNG")
    return base64.b64encode(buffer.getvalue()).decode()


def compat(doc: dict[str, Any]) -> list[tuple[str, str, dict[str, Any]]]:
    return [(path, method, op) for path, method, op in operations(doc) if openapi.is_compat(path)]


def error_model(path: str) -> str:
    return next(model for prefix, model in ERROR_MODELS.items() if path.startswith(prefix))


@pytest.fixture
async def document(client: httpx.AsyncClient) -> dict[str, Any]:
    response = await client.get("/openapi.json")
    assert response.status_code == 200
    body: dict[str, Any] = response.json()
    return body


def client_for(tmp_path: Path, **settings: Any) -> tuple[Atelier, httpx.AsyncClient]:
    atelier = open_test_atelier(tmp_path, **settings)
    transport = httpx.ASGITransport(app=create_app(atelier))
    return atelier, httpx.AsyncClient(transport=transport, base_url="http://atelier")


# ---------------------------------------------------------------- the document


async def test_every_compat_operation_has_a_typed_success_reply(document: dict[str, Any]) -> None:
    found = set()
    for path, method, op in compat(document):
        found.add((path, method))
        successes = [status for status in op["responses"] if status.startswith("2")]
        assert successes == ["200"], (path, method, successes)
        schema = op["responses"]["200"]["content"]["application/json"]["schema"]
        if (path, method) == ("/sdapi/v1/interrupt", "post"):  # `{}`, and nothing else
            assert resolve(document, schema)["additionalProperties"] is False
        elif (path, method) == (OPTIONS, "post"):  # A1111 answers `null`
            assert schema == {"type": "null"}
        else:
            assert is_typed(document, schema), (path, method, schema)
    assert found == set(STATUSES)


async def test_compat_errors_are_documented_in_their_own_dialect(document: dict[str, Any]) -> None:
    for path, method, op in compat(document):
        errors = {int(status): response for status, response in op["responses"].items() if status != "200"}
        assert set(errors) == STATUSES[(path, method)], (path, method, sorted(errors))
        for status, response in errors.items():
            media = response["content"]["application/json"]
            assert media["schema"] == {"$ref": REF + error_model(path)}, (path, method, status)
            example = media["example"]
            assert not schema_errors(example, media["schema"], document), (path, status, example)
            if path == PREDICT:
                assert example["error_code"] == status
            assert response["description"], (path, status)
        assert "Retry-After" in errors[429]["headers"] and "WWW-Authenticate" in errors[401]["headers"]
    assert "ErrorBody" not in json.dumps([op for _, _, op in compat(document)])


async def test_compat_shapes(document: dict[str, Any]) -> None:
    def fields(name: str) -> tuple[set[str], set[str]]:
        schema = resolve(document, {"$ref": REF + name})
        return set(schema["properties"]), set(schema.get("required", ()))

    assert fields("A1111ImagesOut") == ({"images", "parameters", "info"},) * 2
    assert fields("A1111Error") == ({"detail", "error"},) * 2
    assert fields("A1111ErrorDetail") == ({"code", "message"},) * 2
    assert fields("OpenAIImagesOut") == ({"created", "data"},) * 2
    assert fields("OpenAIImage") == ({"url", "b64_json", "revised_prompt"}, set())
    assert fields("OpenAIErrorDetail") == ({"message", "type", "param", "code"},) * 2
    out = {"success", "task_id", "seed", "image_url", "is_nsfw", "prompt"}
    assert fields("DiffusersApiOut") == (out | {"images_base64"}, out)
    assert fields("DiffusersApiError") == ({"success", "task_id", "error_code", "error_msg"},) * 2
    info = resolve(document, {"$ref": REF + "A1111ImagesOut"})["properties"]["info"]
    assert info["type"] == "string" and info["contentMediaType"] == "application/json"
    assert "ignored_fields" in info["contentSchema"]["properties"]


# ---------------------------------------------------------------- real answers against the document


async def test_a1111_answers_match_the_document(client: httpx.AsyncClient, document: dict[str, Any]) -> None:
    body = {**SMALL, "seed": 7, "batch_size": 2, "restore_faces": True}
    answer = await check(document, await client.post(TXT2IMG, json=body), TXT2IMG, "post")
    assert len(answer["images"]) == 2 and answer["parameters"] == body
    info_schema = resolve(document, {"$ref": REF + "A1111ImagesOut"})["properties"]["info"]["contentSchema"]
    info = json.loads(answer["info"])
    assert not schema_errors(info, info_schema, document) and info["ignored_fields"] == ["restore_faces"]
    reply = await client.post(IMG2IMG, json={**SMALL, "init_images": [png()], "send_images": False})
    assert (await check(document, reply, IMG2IMG, "post"))["images"] == []
    listings = (
        "/sdapi/v1/sd-models",
        "/sdapi/v1/samplers",
        "/sdapi/v1/loras",
        "/sdapi/v1/upscalers",
        "/sdapi/v1/sd-vae",
    )
    for path in ("/sdapi/v1/progress", *listings, "/sdapi/v1/latent-upscale-modes", OPTIONS):
        await check(document, await client.get(path), path, "get")
    assert await check(document, await client.post("/sdapi/v1/interrupt"), "/sdapi/v1/interrupt", "post") == {}
    assert (
        await check(document, await client.post(OPTIONS, json={"CLIP_stop_at_last_layers": 2}), OPTIONS, "post") is None
    )
    assert (await check(document, await client.get(OPTIONS), OPTIONS, "get"))["CLIP_stop_at_last_layers"] == 2
    missing = await client.post(TXT2IMG, json={**SMALL, "override_settings": {"sd_model_checkpoint": "nope"}})
    assert (await check(document, missing, TXT2IMG, "post"))["error"]["code"] == "unknown_model"
    invalid = await client.post(IMG2IMG, json={**SMALL, "steps": "many"})
    assert (await check(document, invalid, IMG2IMG, "post"))["error"]["code"] == "invalid_parameters"
    unknown = await client.post(OPTIONS, json={"sd_model_checkpoint": "nope"})
    assert (await check(document, unknown, OPTIONS, "post"))["error"]["code"] == "unknown_model"


async def test_openai_answers_match_the_document(client: httpx.AsyncClient, document: dict[str, Any]) -> None:
    url = await check(document, await client.post(OPENAI, json=REQUESTS[OPENAI]), OPENAI, "post")
    assert list(url["data"][0]) == ["url"]
    b64 = await client.post(OPENAI, json={**REQUESTS[OPENAI], "response_format": "b64_json", "n": 2})
    assert [list(item) for item in (await check(document, b64, OPENAI, "post"))["data"]] == [["b64_json"]] * 2
    invalid = await client.post(OPENAI, json={"prompt": "猫", "n": "many"})
    assert (await check(document, invalid, OPENAI, "post"))["error"]["param"] == "n"
    missing = await client.post(OPENAI, json={"prompt": "猫", "model": "sd-nope"})
    assert (await check(document, missing, OPENAI, "post"))["error"]["code"] == "model_not_found"


async def test_diffusers_api_answers_match_the_document(client: httpx.AsyncClient, document: dict[str, Any]) -> None:
    plain = await check(document, await client.post(PREDICT, json=REQUESTS[PREDICT]), PREDICT, "post")
    assert plain["success"] == 1 and "images_base64" not in plain
    with_images = await client.post(PREDICT, json={**SMALL, "task_id": 3, "use_base64": True})
    assert len((await check(document, with_images, PREDICT, "post"))["images_base64"]) == 1
    for body, status in [({"task_id": 5}, 460), ({**SMALL, "func_name": "i2i", "image_base64": "%%%"}, 462)]:
        reply = await client.post(PREDICT, json=body)
        assert reply.status_code == status and (await check(document, reply, PREDICT, "post"))["success"] == 0


async def test_middleware_refusals_match_each_dialect(tmp_path: Path) -> None:
    """401 and 429 from the key and rate checks, 413 and a body nested too deep from the body guard."""
    atelier, client = client_for(tmp_path, api_keys=(KEY,), requests_per_minute=1, max_request_bytes=4096)
    deep = ('{"a":' * 70 + "1" + "}" * 70).encode()
    async with client:
        document = (await client.get("/openapi.json", headers={"X-API-Key": KEY})).json()
        for path, body in REQUESTS.items():
            refused = await client.post(path, json=body)
            assert refused.status_code == 401 and refused.headers["WWW-Authenticate"] == "Bearer"
            await check(document, refused, path, "post")
            limited = await client.post(path, json=body, headers={"X-API-Key": KEY})
            assert limited.status_code == 429 and int(limited.headers["Retry-After"]) > 0
            await check(document, limited, path, "post")
    atelier.close()
    atelier, client = client_for(tmp_path / "guard", max_request_bytes=4096)
    async with client:
        document = (await client.get("/openapi.json")).json()
        for path, body in REQUESTS.items():
            large = await client.post(path, json={**body, "prompt": "猫" * 4096})
            assert large.status_code == 413
            await check(document, large, path, "post")
            nested = await client.post(path, content=deep, headers={"content-type": "application/json"})
            assert nested.status_code == (460 if path == PREDICT else 400)
            await check(document, nested, path, "post")
        nested = await client.post(OPTIONS, content=deep, headers={"content-type": "application/json"})
        assert (await check(document, nested, OPTIONS, "post"))["error"]["code"] == "too_deep"
    atelier.close()


async def test_a_failed_or_unfinished_job_matches_each_dialect(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The 5xx answers the compatible APIs give by design: a job that failed, a job that outlasted the wait."""
    atelier, client = client_for(tmp_path)

    def explode(*_: Any, **__: Any) -> Any:
        raise RuntimeError("boom")

    generator = atelier.container.generator()
    monkeypatch.setattr(generator, "generate", explode)
    monkeypatch.setattr(generator, "generate_batch", explode, raising=False)
    async with client:
        document = (await client.get("/openapi.json")).json()
        for path, body in REQUESTS.items():
            failed = await client.post(path, json=body)
            assert failed.status_code == (469 if path == PREDICT else 500), failed.text
            await check(document, failed, path, "post")
    atelier.close()
    atelier, client = client_for(tmp_path / "slow", compat_wait_seconds=0)
    atelier.container.generator().step_seconds = 0.05
    async with client:
        document = (await client.get("/openapi.json")).json()
        for path, body in REQUESTS.items():
            late = await client.post(path, json={**body, "steps": 8} if path != OPENAI else body)
            assert late.status_code == (469 if path == PREDICT else 504), late.text
            await check(document, late, path, "post")
    atelier.close()
