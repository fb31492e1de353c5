"""Authorization and isolation, enforced once for the whole app: every route of the app is enumerated, so a
route added later without a key check fails here. Also roles (edits need an admin key), per-key isolation of
jobs, uploads, documents, queries and sessions, and the per-key limits."""

from __future__ import annotations

import re
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest
from fastapi.routing import APIRoute
from starlette.routing import Mount, Route

from app.entrypoints.http.app import create_app
from app.entrypoints.http.errors import all_routes
from app.entrypoints.library import Atelier
from tests.e2e.conftest import open_test_atelier

pytestmark = pytest.mark.anyio
A, B, ADMIN = "key-a", "key-b", "key-admin"
PUBLIC = {"/healthz", "/readyz", "/", "/openapi.json", "/docs", "/redoc", "/docs/oauth2-redirect"}
PNG_64 = (  # a 64×64 red PNG
    "iVBORw0KGgoAAAANSUhEUgAAAEAAAABACAIAAAAlC+aJAAAAX0lEQVR4nO3PQQ0AIBDAMMC/50MEj4ZkVbDtWX87OuBVA1oDWgNaA1oDWgNa"
    "A1oDWgNaA1oDWgNaA1oDWgNaA1oDWgNaA1oDWgNaA1oDWgNaA1oDWgNaA1oDWgNaA9oFUoUBf3Xr7AgAAAAASUVORK5CYII="
)


def key(name: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {name}"}


@pytest.fixture
def keyed(tmp_path: Any) -> Any:
    instance = open_test_atelier(tmp_path, api_keys=(A, B), admin_keys=(ADMIN,))
    yield instance
    instance.close()


@pytest.fixture
async def client(keyed: Atelier) -> AsyncIterator[httpx.AsyncClient]:
    transport = httpx.ASGITransport(app=create_app(keyed))
    async with httpx.AsyncClient(transport=transport, base_url="http://atelier") as c:
        yield c


def operations(app: Any) -> list[tuple[str, str]]:
    """(method, path template) of every route the app serves, mounts included."""
    found = []
    for route in all_routes(app.routes):
        if isinstance(route, APIRoute | Route):
            found += [(method, route.path) for method in sorted(route.methods or ()) if method != "HEAD"]
        elif isinstance(route, Mount):
            found.append(("GET", route.path + "/{path}"))
    return found


def fill(template: str, values: dict[str, str]) -> str:
    return re.sub(r"\{(\w+)(:\w+)?\}", lambda m: values.get(m.group(1), "x1"), template)


async def test_every_route_needs_a_key_except_the_public_list(client: httpx.AsyncClient, keyed: Atelier) -> None:
    app = create_app(keyed)
    seen = set()
    for method, template in operations(app):
        path = fill(template, {"path": "studio.js"})
        response = await client.request(method, path, json={} if method == "POST" else None)
        seen.add(template)
        if template in PUBLIC or template.startswith(("/studio", "/docs-assets")):
            assert response.status_code != 401, (method, template)
            continue
        assert response.status_code == 401, (method, template, response.status_code)
        wrong = await client.request(method, path, headers=key("not-a-key"), json={} if method == "POST" else None)
        assert wrong.status_code == 401, (method, template)
        assert "key" in response.text.lower()  # a sentence that says what is missing, in the route's dialect
    assert {"/v1/jobs", "/v1/edits", "/sdapi/v1/txt2img", "/api/predict", "/v1/images/generations"} <= seen
    assert len(seen) > 30


async def test_unknown_paths_need_a_key_too_and_public_ones_answer(client: httpx.AsyncClient) -> None:
    assert (await client.get("/v1/nothing-here")).status_code == 401
    assert (await client.get("/healthz")).status_code == 200
    assert (await client.get("/readyz")).status_code == 200
    assert (await client.get("/openapi.json")).status_code == 200


async def test_docs_can_be_made_private(tmp_path: Any) -> None:
    with open_test_atelier(tmp_path, api_keys=(A,), docs_public=False) as atelier:
        transport = httpx.ASGITransport(app=create_app(atelier))
        async with httpx.AsyncClient(transport=transport, base_url="http://atelier") as c:
            assert (await c.get("/openapi.json")).status_code == 401
            assert (await c.get("/openapi.json", headers=key(A))).status_code == 200


async def test_another_keys_resources_are_not_found(client: httpx.AsyncClient, keyed: Atelier) -> None:
    """A makes one of everything; B, sending A's ids to every route with a path parameter, gets 404."""
    job = (await client.post("/v1/jobs", json={"prompt": "猫", "seed": 1, "steps": 2}, headers=key(A))).json()
    done = keyed.wait(job["id"], timeout=30)
    assert done.status.value == "succeeded"
    session = (await client.post("/v1/prompt-sessions", json={"prompt": "猫"}, headers=key(A))).json()
    await client.post(
        f"/v1/prompt-sessions/{session['id']}/turns", json={"instruction": "红色", "k": 1, "n": 1}, headers=key(A)
    )
    query = (
        await client.post("/v1/knowledge/queries", json={"question": "猫?", "retrieval": "never"}, headers=key(A))
    ).json()
    record = b'{"messages": [{"role": "user", "content": "a"}, {"role": "assistant", "content": "b"}]}\n'
    uploaded = await client.post(
        "/v1/files", files={"file": ("a.jsonl", record)}, data={"purpose": "fine-tune"}, headers=key(A)
    )
    tuning = {"model": "tiny-llama", "training_file": uploaded.json()["id"], "suffix": "mine"}
    fine_tuning = (await client.post("/v1/fine_tuning/jobs", json=tuning, headers=key(A))).json()
    values = {
        "job_id": job["id"],
        "image_id": done.images[0].id,
        "session_id": session["id"],
        "query_id": query["id"],
        "turn": "1",
        "file_id": uploaded.json()["id"],
        "fine_tuning_job_id": fine_tuning["id"],
        "training_id": fine_tuning["id"].removeprefix("ftjob-"),  # the same job under Atelier's own routes
    }
    checked = 0
    for method, template in operations(create_app(keyed)):
        names = set(re.findall(r"\{(\w+)", template)) - {"path"}
        if not names or template.startswith("/v1/edits") or not names <= set(values):
            continue
        path = fill(template, values)
        body = {"index": 0} if template.endswith("/choose") else {"turn": None} if template.endswith("/branch") else {}
        if template.endswith("/turns"):
            body = {"instruction": "蓝色", "k": 1, "n": 1}
        theirs = await client.request(method, path, headers=key(B), json=body if method == "POST" else None)
        assert theirs.status_code == 404, (method, template, theirs.status_code, theirs.text)
        if method == "GET":
            mine = await client.request(method, path, headers=key(A))
            assert mine.status_code == 200, (method, template, mine.status_code)
        checked += 1
    assert checked >= 11
    listed = (await client.get("/v1/jobs", headers=key(B))).json()
    assert listed["total"] == 0


async def test_uploads_belong_to_the_key_that_made_them(client: httpx.AsyncClient) -> None:
    upload = (await client.post("/v1/uploads/base64", json={"image_base64": PNG_64}, headers=key(A))).json()
    preview = {"image": upload["id"], "kind": "none", "width": 64, "height": 64}
    assert (await client.post("/v1/control-maps", json=preview, headers=key(A))).status_code == 200
    theirs = await client.post("/v1/control-maps", json=preview, headers=key(B))
    assert theirs.status_code == 404
    job = {"prompt": "猫", "init_image": upload["id"], "steps": 2}
    refused = await client.post("/v1/jobs", json=job, headers=key(B))
    assert refused.status_code == 422 and refused.json()["error"]["field"] == "init_image"
    assert (await client.get("/v1/jobs", headers=key(B))).json()["total"] == 0
    assert (await client.post("/v1/jobs", json=job, headers=key(A))).status_code == 202
    # the same picture uploaded by B is B's own upload, with another id
    own = (await client.post("/v1/uploads/base64", json={"image_base64": PNG_64}, headers=key(B))).json()
    assert own["id"] != upload["id"]


async def test_edits_need_an_admin_key(client: httpx.AsyncClient) -> None:
    for method, path, body in [
        ("GET", "/v1/edits", None),
        ("GET", "/v1/edits/e1", None),
        ("POST", "/v1/edits", {"prompt": "Capital of Italy?", "target": "Milan"}),
        ("POST", "/v1/edits/rollback", {"to": 0}),
    ]:
        refused = await client.request(method, path, headers=key(A), json=body)
        assert refused.status_code == 403 and refused.json()["error"]["code"] == "forbidden", path
        assert (await client.request(method, path, json=body)).status_code == 401
    assert (await client.get("/v1/edits", headers=key(ADMIN))).status_code == 200
    assert (await client.post("/v1/edits/rollback", json={"to": 0}, headers=key(ADMIN))).status_code == 200


async def test_documents_live_in_the_callers_collection(client: httpx.AsyncClient) -> None:
    secret = {"source": "plans.md", "text": "The launch code of project Zephyr is amber-falcon-42."}
    assert (
        await client.post("/v1/knowledge/documents", json={"documents": [secret]}, headers=key(A))
    ).status_code == 201
    ask = {"question": "What is the launch code of project Zephyr?", "retrieval": "always", "top_k": 5}
    mine = (await client.post("/v1/knowledge/queries", json=ask, headers=key(A))).json()
    assert any("amber-falcon" in p["text"] for p in mine["passages"])
    theirs = (await client.post("/v1/knowledge/queries", json=ask, headers=key(B))).json()
    assert not any("amber-falcon" in p["text"] for p in theirs["passages"])
    # B ingesting the same source name makes B's own document; A's stays
    other = {"source": "plans.md", "text": "Nothing to see here."}
    assert (
        await client.post("/v1/knowledge/documents", json={"documents": [other]}, headers=key(B))
    ).status_code == 201
    again = (await client.post("/v1/knowledge/queries", json=ask, headers=key(A))).json()
    assert any("amber-falcon" in p["text"] for p in again["passages"])
    # only an admin publishes to the shared collection, which every key searches
    shared = {"documents": [{"source": "faq.md", "text": "Support answers within one day."}], "shared": True}
    assert (await client.post("/v1/knowledge/documents", json=shared, headers=key(A))).status_code == 403
    assert (await client.post("/v1/knowledge/documents", json=shared, headers=key(ADMIN))).status_code == 201
    ask_faq = {"question": "How fast does support answer?", "retrieval": "always"}
    for name in (A, B):
        found = (await client.post("/v1/knowledge/queries", json=ask_faq, headers=key(name))).json()
        assert any(p["source"] == "faq.md" for p in found["passages"])


async def test_rate_limit_answers_429_with_retry_after(tmp_path: Any) -> None:
    with open_test_atelier(tmp_path, api_keys=(A, B), requests_per_minute=3) as atelier:
        transport = httpx.ASGITransport(app=create_app(atelier))
        async with httpx.AsyncClient(transport=transport, base_url="http://atelier") as c:
            codes = [(await c.get("/v1/jobs", headers=key(A))).status_code for _ in range(4)]
            assert codes == [200, 200, 200, 429]
            limited = await c.get("/v1/jobs", headers=key(A))
            assert limited.json()["error"]["code"] == "rate_limited" and int(limited.headers["retry-after"]) >= 1
            assert (await c.get("/v1/jobs", headers=key(B))).status_code == 200  # per key
            assert (await c.get("/healthz")).status_code == 200  # public routes are not counted
            a1111 = await c.get("/sdapi/v1/samplers", headers=key(A))
            assert a1111.status_code == 429 and "detail" in a1111.json()  # in the dialect's shape


async def test_queued_jobs_and_job_size_are_limited_per_key(tmp_path: Any) -> None:
    with open_test_atelier(tmp_path, api_keys=(A, B), max_queued_jobs=2, max_job_work=64 * 64 * 20) as atelier:
        atelier.container.executor().shutdown()  # nothing runs: jobs stay queued
        transport = httpx.ASGITransport(app=create_app(atelier))
        async with httpx.AsyncClient(transport=transport, base_url="http://atelier") as c:
            job = {"prompt": "猫", "steps": 20, "width": 64, "height": 64}
            codes = [(await c.post("/v1/jobs", json=job, headers=key(A))).status_code for _ in range(3)]
            assert codes == [202, 202, 429]
            assert atelier.jobs(owner=None).total == 2  # the refused one was not stored
            assert (await c.post("/v1/jobs", json=job, headers=key(B))).status_code == 202
            big = await c.post("/v1/jobs", json={**job, "steps": 21}, headers=key(B))
            assert big.status_code == 422 and big.json()["error"]["code"] == "job_too_large"
            assert "64×64" in big.json()["error"]["message"]


async def test_a_job_over_its_time_budget_fails_with_its_own_code(tmp_path: Any) -> None:
    with open_test_atelier(tmp_path, job_time_budget=0.2) as atelier:
        atelier.container.generator().step_seconds = 0.05
        job = atelier.generate("猫", steps=50, timeout=30)
        assert job.status.value == "failed" and job.error_code == "time_budget_exceeded"
        assert "0.2 s" in (job.error_message or "")
        quick = atelier.generate("猫", steps=2, timeout=30)
        assert quick.status.value == "succeeded"
