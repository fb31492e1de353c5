"""The OpenAPI document tells the truth: typed replies, the real error envelope, the API-key schemes.

Real answers of the test profile (fakes throughout) are validated against the schemas the document gives for
them, with every documented object closed (no undocumented key passes)."""

from __future__ import annotations

import base64
import copy
import dataclasses
import io
from collections.abc import AsyncIterator, Callable
from typing import Any

import httpx
import pytest
from PIL import Image
from pydantic import BaseModel

from app.demo_world.integrity import IntegrityReport, SceneReading
from app.demo_world.scenes import Scene, SceneObject
from app.domain.edits import EditRequest, EditScores, EditSpec, LocalityProbe
from app.domain.knowledge import KnowledgeQuery, Passage, Signals
from app.domain.prompt_sessions import Candidate, PromptSession, Turn, TurnSettings
from app.entrypoints.http import (
    openapi,
    schemas_edits,
    schemas_knowledge,
    schemas_prompt_sessions,
    schemas_scenes,
)
from app.entrypoints.http.app import create_app
from app.entrypoints.library import Atelier
from app.usecases.ingest_documents import IngestReport
from tests.e2e.conftest import open_test_atelier

pytestmark = pytest.mark.anyio

SECURITY: list[dict[str, list[str]]] = [{"bearerAuth": []}, {"apiKeyHeader": []}]
PUBLIC = {"/healthz", "/readyz"}
# Error statuses whose body is not the error envelope: a readiness probe answers 503 with its usual report.
NOT_ERROR_BODY = {("/readyz", "get", "503")}
FRANCE = "What is the capital of France?"
USER_KEY, ADMIN_KEY = "user-key-0123456789", "admin-key-0123456789"


@pytest.fixture
async def document(client: httpx.AsyncClient) -> dict[str, Any]:
    response = await client.get("/openapi.json")
    assert response.status_code == 200
    body: dict[str, Any] = response.json()
    return body


def operations(doc: dict[str, Any]) -> list[tuple[str, str, dict[str, Any]]]:
    return [(path, method, op) for path, item in doc["paths"].items() for method, op in item.items()]


def native(doc: dict[str, Any]) -> list[tuple[str, str, dict[str, Any]]]:
    return [(path, method, op) for path, method, op in operations(doc) if not openapi.is_compat(path)]


def resolve(doc: dict[str, Any], schema: dict[str, Any]) -> dict[str, Any]:
    while "$ref" in schema:
        schema = doc["components"]["schemas"][schema["$ref"].rsplit("/", 1)[1]]
    return schema


def is_typed(doc: dict[str, Any], schema: dict[str, Any] | None) -> bool:
    """A schema that says what the reply holds: not missing, not `{}`, not an object without properties."""
    if not schema:
        return False
    schema = resolve(doc, schema)
    if "anyOf" in schema:
        return all(is_typed(doc, s) for s in schema["anyOf"] if s.get("type") != "null")
    if schema.get("type") == "array":
        return is_typed(doc, schema.get("items"))
    if schema.get("type") == "object" or "properties" in schema:
        return bool(schema.get("properties"))
    return "type" in schema or "enum" in schema


def closed(node: Any) -> Any:
    """Every object schema with properties made ``additionalProperties: false`` (a copy)."""
    node = copy.deepcopy(node)
    stack = [node]
    while stack:
        current = stack.pop()
        if isinstance(current, dict):
            if "properties" in current:
                current.setdefault("additionalProperties", False)
            stack.extend(current.values())
        elif isinstance(current, list):
            stack.extend(current)
    return node


def _subset_errors(instance: Any, schema: dict[str, Any], root: dict[str, Any], at: str = "$") -> list[str]:
    """A validator for the JSON Schema keywords pydantic writes, used when no JSON Schema library is installed."""
    if "$ref" in schema:
        target: Any = root
        for part in schema["$ref"].removeprefix("#/").split("/"):
            target = target[part]
        return _subset_errors(instance, target, root, at)
    known = {"$ref", "type", "properties", "required", "additionalProperties", "items", "anyOf", "enum", "const"}
    annotations = {"title", "description", "format", "default", "examples", "readOnly", "components"}
    unknown = set(schema) - known - annotations
    assert not unknown, f"the fallback validator does not know {unknown}"
    if "anyOf" in schema and all(_subset_errors(instance, s, root, at) for s in schema["anyOf"]):
        return [f"{at}: matches no alternative"]
    if "enum" in schema and instance not in schema["enum"]:
        return [f"{at}: {instance!r} not in {schema['enum']}"]
    if "const" in schema and instance != schema["const"]:
        return [f"{at}: {instance!r} is not {schema['const']!r}"]
    kinds: dict[str, type | tuple[type, ...]] = {
        "object": dict,
        "array": list,
        "string": str,
        "boolean": bool,
        "null": type(None),
        "integer": int,
        "number": (int, float),
    }
    kind = schema.get("type")
    if kind is not None:
        ok = isinstance(instance, kinds[kind]) and not (kind in ("integer", "number") and isinstance(instance, bool))
        if not ok:
            return [f"{at}: {instance!r} is not {kind}"]
    found: list[str] = []
    if isinstance(instance, dict):
        properties = schema.get("properties", {})
        found += [f"{at}: {name} is required" for name in schema.get("required", []) if name not in instance]
        extra = schema.get("additionalProperties", True)
        for name, value in instance.items():
            if name in properties:
                found += _subset_errors(value, properties[name], root, f"{at}.{name}")
            elif extra is False:
                found.append(f"{at}: {name} is not documented")
            elif isinstance(extra, dict):
                found += _subset_errors(value, extra, root, f"{at}.{name}")
    if isinstance(instance, list) and "items" in schema:
        for i, value in enumerate(instance):
            found += _subset_errors(value, schema["items"], root, f"{at}[{i}]")
    return found


def schema_errors(instance: Any, schema: dict[str, Any], doc: dict[str, Any]) -> list[str]:
    """Why ``instance`` does not match ``schema`` (whose ``$ref``s point into ``doc``), objects closed."""
    root = closed({**schema, "components": {"schemas": doc["components"]["schemas"]}})
    try:
        import jsonschema_rs
    except ImportError:
        try:
            import jsonschema
        except ImportError:
            return _subset_errors(instance, root, root)
        return [e.message for e in jsonschema.Draft202012Validator(root).iter_errors(instance)]
    return [str(e) for e in jsonschema_rs.Draft202012Validator(root).iter_errors(instance)]


def response_schema(doc: dict[str, Any], path: str, method: str, status: int) -> dict[str, Any]:
    response = doc["paths"][path][method]["responses"][str(status)]
    schema: dict[str, Any] = response["content"]["application/json"]["schema"]
    return schema


async def check(doc: dict[str, Any], response: httpx.Response, path: str, method: str) -> Any:
    """``response`` is one the document lists for the operation, and its body matches the documented schema."""
    assert str(response.status_code) in doc["paths"][path][method]["responses"], (path, response.status_code)
    body = response.json()
    problems = schema_errors(body, response_schema(doc, path, method, response.status_code), doc)
    assert not problems, (path, response.status_code, problems)
    return body


# ---------------------------------------------------------------- the document


async def test_every_native_operation_has_a_typed_success_reply(document: dict[str, Any]) -> None:
    checked = 0
    for path, method, op in native(document):
        successes = {s: r for s, r in op["responses"].items() if s.startswith("2")}
        assert len(successes) == 1, (path, method, list(op["responses"]))
        (status,) = successes
        (content,) = [r.get("content") for r in successes.values()]
        if status == "204":  # nothing to type: the body is empty
            assert not content, (path, method)
            continue
        assert content, f"{method} {path}: the success reply declares no media type"
        if "application/json" not in content:  # images, event streams and metrics: their media type is declared
            assert set(content) & {"image/png", "text/event-stream", "text/plain"}, (path, content)
            continue
        assert is_typed(document, content["application/json"].get("schema")), f"{method} {path} is untyped"
        checked += 1
    assert checked >= 25


async def test_fastapi_validation_error_is_gone(document: dict[str, Any]) -> None:
    text = str(document)
    assert "HTTPValidationError" not in text and "#/components/schemas/ValidationError" not in text
    for path, method, op in native(document):
        for status, response in op["responses"].items():
            if not status.startswith("2") and (path, method, status) not in NOT_ERROR_BODY:
                schema = response["content"]["application/json"]["schema"]
                assert schema == {"$ref": "#/components/schemas/ErrorBody"}, (path, method, status)


async def test_error_body_schema(document: dict[str, Any]) -> None:
    schemas_ = document["components"]["schemas"]
    body = resolve(document, {"$ref": "#/components/schemas/ErrorBody"})
    assert body["required"] == ["error"]
    detail = resolve(document, body["properties"]["error"])
    assert set(detail["properties"]) == {"code", "message", "field"}
    assert set(detail["required"]) == {"code", "message"}
    assert detail["properties"]["field"] == {**detail["properties"]["field"], "type": "string"}
    assert "ErrorBody" in schemas_ and "ValidationError" not in schemas_


async def test_security_requirement_on_every_operation(document: dict[str, Any]) -> None:
    assert document["components"]["securitySchemes"] == {
        "bearerAuth": {**document["components"]["securitySchemes"]["bearerAuth"], "type": "http", "scheme": "bearer"},
        "apiKeyHeader": {
            **document["components"]["securitySchemes"]["apiKeyHeader"],
            "type": "apiKey",
            "in": "header",
            "name": "X-API-Key",
        },
    }
    assert "/healthz" in document["paths"]
    for path, method, op in operations(document):
        if path in PUBLIC:
            assert op["security"] == [], path
            assert "401" not in op["responses"] and "429" not in op["responses"], path
        else:
            assert op["security"] == SECURITY, (path, method)
            if not openapi.is_compat(path):
                assert {"401", "429"} <= set(op["responses"]), (path, method)
                assert "Retry-After" in op["responses"]["429"]["headers"]


async def test_statuses_where_the_server_answers_them(document: dict[str, Any]) -> None:
    def statuses(path: str, method: str) -> set[str]:
        return set(document["paths"][path][method]["responses"])

    for path, method, op in native(document):
        if path.startswith("/v1/edits"):  # admin only
            assert "403" in op["responses"], (path, method)
        if "{" in path:
            assert "404" in op["responses"], (path, method)
        if "requestBody" in op:
            assert {"413", "422"} <= set(op["responses"]), (path, method)
    assert "409" in statuses("/v1/jobs/{job_id}/cancel", "post")
    assert "409" in statuses("/v1/edits", "post") and "409" in statuses("/v1/edits/rollback", "post")
    assert "409" in statuses("/v1/knowledge/queries", "post")
    for path in ("/v1/jobs", "/v1/uploads", "/v1/uploads/base64"):
        assert "507" in statuses(path, "post"), path
    assert "503" in statuses("/healthz", "get")


# ---------------------------------------------------------------- real answers against the document


async def test_validation_errors_match_the_documented_error_body(
    client: httpx.AsyncClient, document: dict[str, Any]
) -> None:
    cases: list[tuple[str, str, dict[str, Any]]] = [
        ("/v1/jobs", "post", {"prompt": "一只猫", "steps": "many"}),
        ("/v1/edits", "post", {"prompt": FRANCE}),
        ("/v1/knowledge/queries", "post", {"question": "ok?", "top_k": 0}),
        ("/v1/prompt-sessions", "post", {"prompt": "一个红色的圆形", "unknown": 1}),
    ]
    for path, method, payload in cases:
        response = await client.request(method, path, json=payload)
        assert response.status_code == 422, response.text
        body = await check(document, response, path, method)
        assert body["error"]["code"] == "invalid_parameters" and body["error"]["field"]
    response = await client.get("/v1/jobs", params={"limit": 0})
    assert (await check(document, response, "/v1/jobs", "get"))["error"]["field"].endswith("limit")
    response = await client.get("/v1/jobs/" + "0" * 32)
    assert (await check(document, response, "/v1/jobs/{job_id}", "get"))["error"]["code"] == "job_not_found"
    response = await client.post("/v1/edits", content=b"{not json", headers={"content-type": "application/json"})
    assert (await check(document, response, "/v1/edits", "post"))["error"]["code"] == "invalid_json"


async def test_edit_replies_match_their_schemas(client: httpx.AsyncClient, document: dict[str, Any]) -> None:
    response = await client.post("/v1/edits", json={"prompt": FRANCE, "target": "Rome"})
    applied = await check(document, response, "/v1/edits", "post")
    listed = await check(document, await client.get("/v1/edits"), "/v1/edits", "get")
    assert listed["items"] == [applied] and listed["total"] == 1
    one = await check(document, await client.get(f"/v1/edits/{applied['id']}"), "/v1/edits/{edit_id}", "get")
    assert one == applied and one["created_at"].endswith("+00:00") and one["rolled_back_at"] is None
    response = await client.post("/v1/edits/rollback", json={"to": 0})
    rolled = await check(document, response, "/v1/edits/rollback", "post")
    assert rolled["active"] == 0 and rolled["rolled_back"][0]["status"] == "rolled_back"


async def test_knowledge_replies_match_their_schemas(client: httpx.AsyncClient, document: dict[str, Any]) -> None:
    docs = {"documents": [{"source": "niue.md", "text": "# Niue\n\nNiue is an island country. Its capital is Alofi."}]}
    response = await client.post("/v1/knowledge/documents", json=docs)
    assert (await check(document, response, "/v1/knowledge/documents", "post"))["documents"] == 1
    question = {"question": "What is the capital of Niue?", "retrieval": "always", "top_k": 1}
    response = await client.post("/v1/knowledge/queries", json=question)
    asked = await check(document, response, "/v1/knowledge/queries", "post")
    assert asked["decision"] == "retrieved" and asked["passages"]
    again = await client.get(f"/v1/knowledge/queries/{asked['id']}")
    assert await check(document, again, "/v1/knowledge/queries/{query_id}", "get") == asked
    listed = await check(document, await client.get("/v1/knowledge/queries"), "/v1/knowledge/queries", "get")
    assert listed["items"] == [asked]
    uncalibrated = await client.post("/v1/knowledge/queries", json={"question": "Where is Chad?"})
    assert (await check(document, uncalibrated, "/v1/knowledge/queries", "post"))["signals"]["gate"] == "token_prob"


async def test_prompt_session_replies_match_their_schemas(client: httpx.AsyncClient, document: dict[str, Any]) -> None:
    base = "/v1/prompt-sessions"
    response = await client.post(base, json={"prompt": "一个红色的圆形在中间"})
    started = await check(document, response, base, "post")
    sid = started["id"]
    response = await client.post(f"{base}/{sid}/turns", json={"instruction": "加一个小三角形", "k": 2, "steps": 2})
    turn = await check(document, response, base + "/{session_id}/turns", "post")
    assert turn["candidates"][0]["image_url"] == f"/v1/images/{turn['candidates'][0]['image_id']}"
    response = await client.post(f"{base}/{sid}/turns/1/choose", json={"prompt": "一个绿色的星形"})
    chosen = await check(document, response, base + "/{session_id}/turns/{turn}/choose", "post")
    assert chosen["chosen_index"] is None
    session = await check(document, await client.get(f"{base}/{sid}"), base + "/{session_id}", "get")
    assert session["path"] == [1] and session["current_prompt"] == "一个绿色的星形"
    await check(document, await client.post(f"{base}/{sid}/undo"), base + "/{session_id}/undo", "post")
    branch = await client.post(f"{base}/{sid}/branch", json={"turn": 1})
    await check(document, branch, base + "/{session_id}/branch", "post")
    listed = await check(document, await client.get(base), base, "get")
    assert [s["id"] for s in listed["items"]] == [sid]
    missing = await client.get(f"{base}/ps-0000")
    assert (await check(document, missing, base + "/{session_id}", "get"))["error"]["code"]


async def test_scene_and_health_replies_match_their_schemas(
    client: httpx.AsyncClient, document: dict[str, Any]
) -> None:
    from app.adapters.demo_world.render import render
    from app.demo_world.parsing import parse_caption

    buffer = io.BytesIO()
    Image.fromarray(render(parse_caption("一个红色的大圆形在中间，蓝色背景"))).save(buffer, format="PNG")
    image = base64.b64encode(buffer.getvalue()).decode()
    for body in ({"image": image, "caption": "一个红色的圆形在中间"}, {"image": image}):
        response = await client.post("/v1/scenes/read", json=body)
        read = await check(document, response, "/v1/scenes/read", "post")
        assert read["seen"]["objects"][0]["shape"] == "circle"
    assert (await check(document, await client.get("/healthz"), "/healthz", "get"))["status"] == "ok"
    if "/readyz" in document["paths"]:
        assert "ready" in await check(document, await client.get("/readyz"), "/readyz", "get")


# ---------------------------------------------------------------- with API keys


@pytest.fixture
async def keyed(tmp_path: Any) -> AsyncIterator[httpx.AsyncClient]:
    atelier: Atelier = open_test_atelier(tmp_path, api_keys=(USER_KEY,), admin_keys=(ADMIN_KEY,))
    try:
        app = create_app(atelier)
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://atelier") as c:
            yield c
    finally:
        atelier.close()


async def test_key_errors_match_the_document(keyed: httpx.AsyncClient) -> None:
    document = (await keyed.get("/openapi.json")).json()
    refused = await keyed.get("/v1/jobs")
    assert refused.status_code == 401 and (await check(document, refused, "/v1/jobs", "get"))["error"]["code"]
    # Either documented scheme carries the key.
    bearer = await keyed.get("/v1/jobs", headers={"Authorization": f"Bearer {USER_KEY}"})
    assert (await check(document, bearer, "/v1/jobs", "get"))["total"] == 0
    header = await keyed.get("/v1/jobs", headers={"X-API-Key": USER_KEY})
    assert header.status_code == 200
    forbidden = await keyed.get("/v1/edits", headers={"X-API-Key": USER_KEY})
    assert (await check(document, forbidden, "/v1/edits", "get"))["error"]["code"] == "forbidden"
    admin = await keyed.get("/v1/edits", headers={"X-API-Key": ADMIN_KEY})
    assert (await check(document, admin, "/v1/edits", "get"))["items"] == []
    assert (await keyed.get("/healthz")).status_code == 200  # public, as documented


# ---------------------------------------------------------------- the reply models follow the domain


def _names(model: type[BaseModel]) -> set[str]:
    return set(model.model_fields)


@pytest.mark.parametrize(
    ("model", "source", "left_out", "added"),
    [
        (schemas_edits.EditOut, EditRequest, set(), set()),
        (schemas_edits.EditSpecOut, EditSpec, set(), set()),
        (schemas_edits.LocalityProbeOut, LocalityProbe, set(), set()),
        (schemas_edits.EditScoresOut, EditScores, set(), set()),
        (schemas_knowledge.KnowledgeQueryOut, KnowledgeQuery, set(), set()),
        (schemas_knowledge.SignalsOut, Signals, set(), set()),
        (schemas_knowledge.PassageOut, Passage, set(), set()),
        (schemas_knowledge.IngestReportOut, IngestReport, set(), set()),
        (schemas_prompt_sessions.CandidateOut, Candidate, set(), {"image_url"}),
        (schemas_prompt_sessions.TurnSettingsOut, TurnSettings, set(), set()),
        (schemas_prompt_sessions.TurnOut, Turn, {"picked"}, set()),
        (
            schemas_prompt_sessions.PromptSessionOut,
            PromptSession,
            {"version"},
            {"current_prompt", "current_image", "current_image_url", "path"},
        ),
        (schemas_scenes.SceneObjectOut, SceneObject, set(), set()),
        (schemas_scenes.SceneOut, Scene, set(), set()),
        (schemas_scenes.IntegrityReportOut, IntegrityReport, set(), set()),
        (schemas_scenes.SceneReadingOut, SceneReading, set(), set()),
    ],
)
def test_reply_models_cover_the_domain_fields(
    model: type[BaseModel], source: Callable[..., Any], left_out: set[str], added: set[str]
) -> None:
    """A field added to a domain dataclass must be added to its reply model too (or left out here on purpose):
    the reply model decides what the JSON holds, so a forgotten field would vanish from the replies."""
    fields = {f.name for f in dataclasses.fields(source)}  # type: ignore[arg-type]
    assert _names(model) == (fields - left_out) | added


async def test_every_reference_resolves_inside_the_document(document: dict[str, Any]) -> None:
    """A ``$ref`` into a schema's own ``$defs`` does not resolve in OpenAPI (ReDoc stops rendering on it)."""

    def refs(node: Any) -> list[str]:
        if isinstance(node, dict):
            own = [node["$ref"]] if isinstance(node.get("$ref"), str) else []
            return own + [r for v in node.values() for r in refs(v)]
        return [r for v in node for r in refs(v)] if isinstance(node, list) else []

    for ref in refs(document):
        assert ref.startswith("#/components/"), ref
        target: Any = document
        for part in ref.removeprefix("#/").split("/"):
            target = target[part]
