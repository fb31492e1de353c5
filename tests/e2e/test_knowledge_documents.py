"""Documents over HTTP: PDF, HTML and DOCX uploaded as multipart files, listed, deleted by id and by source (from
both indexes), the size and page limits, and collections kept apart per API key."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest

from app.entrypoints.http.app import create_app
from app.entrypoints.library import Atelier
from tests.document_files import make_docx, make_html, make_pdf
from tests.e2e.conftest import open_test_atelier

pytestmark = pytest.mark.anyio
A, B, ADMIN = "key-a", "key-b", "key-admin"

FILES = {
    "tuvalu.pdf": (
        make_pdf(["Tuvalu is an island country.", "Its capital is Funafuti on an atoll."]),
        "application/pdf",
    ),
    "niue.html": (make_html("Niue", ["Niue is a coral island. Its capital is Alofi."]), "text/html"),
    "chad.docx": (
        make_docx([("Heading1", "Chad"), (None, "Chad is in Africa. Its capital is N'Djamena.")]),
        "application/vnd.openxmlformats-officedocument.wordprocessingml.document",
    ),
}


def key(name: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {name}"}


async def _client(atelier: Atelier) -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=create_app(atelier)), base_url="http://a") as c:
        yield c


@pytest.fixture
async def limited(tmp_path: Any) -> AsyncIterator[httpx.AsyncClient]:
    instance = open_test_atelier(tmp_path, knowledge_max_file_mb=1, knowledge_max_pages=2)
    async for c in _client(instance):
        yield c
    instance.close()


@pytest.fixture
async def keyed(tmp_path: Any) -> AsyncIterator[httpx.AsyncClient]:
    instance = open_test_atelier(tmp_path, api_keys=(A, B), admin_keys=(ADMIN,))
    async for c in _client(instance):
        yield c
    instance.close()


def _upload(names: list[str], **fields: str) -> dict[str, Any]:
    return {"files": [("files", (name, *FILES[name])) for name in names], "data": fields}


async def _ask(client: httpx.AsyncClient, question: str, **headers: str) -> list[str]:
    body = {"question": question, "retrieval": "always", "top_k": 3}
    reply = await client.post("/v1/knowledge/queries", json=body, headers=headers)
    assert reply.status_code == 201, reply.text
    return [p["source"] for p in reply.json()["passages"]]


async def test_uploaded_files_are_ingested_listed_and_deleted(client: httpx.AsyncClient) -> None:
    ingested = await client.post("/v1/knowledge/documents", **_upload(list(FILES)))
    assert ingested.status_code == 201, ingested.text
    assert ingested.json() == {"documents": 3, "chunks": 3, "replaced": 0}
    assert (await _ask(client, "What is the capital of Tuvalu? Funafuti"))[0] == "tuvalu.pdf"
    assert "chad.docx" in await _ask(client, "N'Djamena Chad capital")

    listing = (await client.get("/v1/knowledge/documents")).json()
    assert listing["total"] == 3 and [d["source"] for d in listing["items"]] == sorted(FILES)
    pdf = next(d for d in listing["items"] if d["source"] == "tuvalu.pdf")
    assert pdf["chunks"] == 1 and pdf["collection"] == "local" and pdf["characters"] > 40

    # the same file again replaces its chunks, and keeps its id
    again = await client.post("/v1/knowledge/documents", **_upload(["tuvalu.pdf"]))
    assert again.json()["replaced"] == 1
    assert (await client.get("/v1/knowledge/documents", params={"source": "tuvalu.pdf"})).json()["items"][0] == pdf

    deleted = await client.delete(f"/v1/knowledge/documents/{pdf['id']}")
    assert deleted.status_code == 200 and deleted.json() == pdf
    assert "tuvalu.pdf" not in await _ask(client, "Funafuti Tuvalu capital")  # gone from both indexes
    gone = await client.delete(f"/v1/knowledge/documents/{pdf['id']}")
    assert gone.status_code == 404 and gone.json()["error"]["code"] == "document_not_found"

    by_source = await client.delete("/v1/knowledge/documents", params={"source": "niue.html"})
    assert by_source.status_code == 200 and by_source.json()["source"] == "niue.html"
    assert [d["source"] for d in (await client.get("/v1/knowledge/documents")).json()["items"]] == ["chad.docx"]


@pytest.mark.parametrize(
    ("files", "status", "code", "words"),
    [
        ([("files", ("slides.pptx", b"...", "application/octet-stream"))], 422, "unsupported_format", "slides.pptx"),
        ([("files", ("scan.pdf", make_pdf([None]), "application/pdf"))], 422, "invalid_parameters", "OCR"),
        ([("files", ("long.pdf", make_pdf(["a", "b", "c"]), "application/pdf"))], 413, "request_too_large", "pages"),
        ([("files", ("big.md", b"x" * (1024 * 1024 + 1), "text/markdown"))], 413, "request_too_large", "1 MB"),
    ],
)
async def test_bad_uploads_are_refused_and_store_nothing(
    limited: httpx.AsyncClient, files: list[Any], status: int, code: str, words: str
) -> None:
    good = ("files", ("fine.md", b"A fine document.", "text/markdown"))
    reply = await limited.post("/v1/knowledge/documents", files=[good, *files])
    assert reply.status_code == status, reply.text
    assert reply.json()["error"]["code"] == code and words in reply.json()["error"]["message"]
    assert "/" not in reply.json()["error"]["message"].replace("N/A", "")  # no server path
    assert (await limited.get("/v1/knowledge/documents")).json()["total"] == 0  # not even the good file


async def test_a_multipart_body_without_files_is_refused(client: httpx.AsyncClient) -> None:
    reply = await client.post("/v1/knowledge/documents", files=[("other", ("a.md", b"text", "text/markdown"))])
    assert reply.status_code == 422 and reply.json()["error"]["field"] == "files"
    broken = await client.post(
        "/v1/knowledge/documents", content=b"{not json", headers={"Content-Type": "application/json"}
    )
    assert broken.status_code == 400 and broken.json()["error"]["code"] == "invalid_json"


async def test_collections_keep_keys_apart(keyed: httpx.AsyncClient) -> None:
    assert (await keyed.post("/v1/knowledge/documents", headers=key(A), **_upload(["tuvalu.pdf"]))).status_code == 201
    assert (await keyed.post("/v1/knowledge/documents", headers=key(B), **_upload(["niue.html"]))).status_code == 201
    shared = await keyed.post("/v1/knowledge/documents", headers=key(ADMIN), **_upload(["chad.docx"], shared="true"))
    assert shared.status_code == 201
    refused = await keyed.post("/v1/knowledge/documents", headers=key(A), **_upload(["chad.docx"], shared="true"))
    assert refused.status_code == 403

    mine = (await keyed.get("/v1/knowledge/documents", headers=key(A))).json()["items"]
    assert {d["source"]: d["collection"] == "shared" for d in mine} == {"tuvalu.pdf": False, "chad.docx": True}
    theirs = (await keyed.get("/v1/knowledge/documents", headers=key(B))).json()["items"]
    assert {d["source"] for d in theirs} == {"niue.html", "chad.docx"}
    assert "tuvalu.pdf" not in await _ask(keyed, "Funafuti Tuvalu capital", **key(B))

    a_pdf = next(d for d in mine if d["source"] == "tuvalu.pdf")
    assert (await keyed.delete(f"/v1/knowledge/documents/{a_pdf['id']}", headers=key(B))).status_code == 404
    chad = next(d for d in mine if d["source"] == "chad.docx")
    assert (await keyed.delete(f"/v1/knowledge/documents/{chad['id']}", headers=key(A))).status_code == 403
    assert (await keyed.delete(f"/v1/knowledge/documents/{chad['id']}", headers=key(ADMIN))).status_code == 200
    assert (await keyed.delete(f"/v1/knowledge/documents/{a_pdf['id']}", headers=key(A))).status_code == 200
    assert (await keyed.get("/v1/knowledge/documents", headers=key(A))).json()["total"] == 0
