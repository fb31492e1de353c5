"""Knowledge queries through HTTP (ASGI) and the CLI, on the tiny Llama, hashing embeddings and sqlite-vec."""

from __future__ import annotations

import json
from pathlib import Path

import httpx
import pytest
from click.testing import CliRunner

from app.adapters.transformers.tiny import build_tiny_llama
from app.entrypoints.cli.main import cli

pytestmark = pytest.mark.anyio

DOCS = [
    {"source": "tuvalu.md", "text": "# Tuvalu\n\nTuvalu is an island country. Its capital is Funafuti."},
    {"source": "niue.md", "text": "# Niue\n\nNiue is an island country. Its capital is Alofi."},
    {"source": "chad.md", "text": "# Chad\n\nChad is a country in Africa. Its capital is N'Djamena."},
]


async def test_ingest_ask_and_read_back(client: httpx.AsyncClient) -> None:
    ingested = await client.post("/v1/knowledge/documents", json={"documents": DOCS})
    assert ingested.status_code == 201 and ingested.json() == {"documents": 3, "chunks": 3, "replaced": 0}

    asked = await client.post(
        "/v1/knowledge/queries", json={"question": "What is the capital of Niue?", "retrieval": "always", "top_k": 2}
    )
    assert asked.status_code == 201
    body = asked.json()
    assert body["decision"] == "retrieved" and body["passages"][0]["source"] == "niue.md"
    assert set(body["timings"]) >= {"retrieve", "retrieved_answer", "total"}
    assert isinstance(body["answer"], str)

    plain = await client.post("/v1/knowledge/queries", json={"question": "Where is Chad?", "retrieval": "never"})
    assert plain.status_code == 201 and plain.json()["decision"] == "parametric" and plain.json()["passages"] == []

    again = await client.get(f"/v1/knowledge/queries/{body['id']}")
    assert again.status_code == 200 and again.json() == body
    listing = (await client.get("/v1/knowledge/queries", params={"limit": 1})).json()
    assert listing["total"] == 2 and [q["id"] for q in listing["items"]] == [plain.json()["id"]]


@pytest.mark.parametrize(
    ("method", "path", "payload", "status", "code"),
    [
        ("post", "/v1/knowledge/queries", {"question": "  "}, 422, "invalid_parameters"),
        ("post", "/v1/knowledge/queries", {"question": "x" * 2001, "retrieval": "never"}, 413, "request_too_large"),
        ("post", "/v1/knowledge/queries", {"question": "ok?", "top_k": 0}, 422, "invalid_parameters"),
        ("post", "/v1/knowledge/queries", {"question": "ok?", "retrieval": "maybe"}, 422, "invalid_parameters"),
        (
            "post",
            "/v1/knowledge/documents",
            {"documents": [{"source": "a.md", "text": " "}]},
            422,
            "invalid_parameters",
        ),
        ("post", "/v1/knowledge/documents", {"documents": []}, 422, "invalid_parameters"),
        ("get", "/v1/knowledge/queries/nope", None, 404, "knowledge_query_not_found"),
    ],
)
async def test_bad_requests_get_a_json_error(
    client: httpx.AsyncClient, method: str, path: str, payload: object, status: int, code: str
) -> None:
    response = await client.request(method.upper(), path, json=payload)
    assert response.status_code == status
    assert response.json()["error"]["code"] == code


async def test_the_openapi_document_lists_the_knowledge_routes(client: httpx.AsyncClient) -> None:
    paths = (await client.get("/openapi.json")).json()["paths"]
    assert {"/v1/knowledge/queries", "/v1/knowledge/queries/{query_id}", "/v1/knowledge/documents"} <= set(paths)


@pytest.fixture(scope="module")
def cli_env(tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    llm = build_tiny_llama(str(tmp_path_factory.mktemp("llm") / "tiny"))
    return {"ATELIER_LLM": llm, "ATELIER_EMBEDDER": "hashing"}


def run(env: dict[str, str], data_dir: Path, *args: str) -> tuple[int, str, str]:
    result = CliRunner().invoke(cli, ["--data-dir", str(data_dir), *args], env=env)
    return result.exit_code, result.stdout, result.stderr


def test_cli_ingest_calibrate_ask_list_show(cli_env: dict[str, str], tmp_path: Path) -> None:
    corpus = tmp_path / "corpus"
    corpus.mkdir()
    for doc in DOCS:
        (corpus / doc["source"]).write_text(doc["text"])
    questions = tmp_path / "questions.jsonl"
    countries = ["Tuvalu", "Niue", "Chad", "France", "Peru", "Japan", "Kenya", "Nauru", "Palau"]
    questions.write_text(
        "".join(json.dumps({"question": f"What is the capital of {c}?", "answers": [c[:3]]}) + "\n" for c in countries)
    )
    data = tmp_path / "data"

    code, out, err = run(cli_env, data, "ask", "What is the capital of Chad?")  # a fresh data dir answers
    assert code == 0 and "no calibration of this model: lowest token probability" in out, err

    code, out, _ = run(cli_env, data, "knowledge", "ingest", str(corpus), "--json")
    assert code == 0 and json.loads(out) == {"documents": 3, "chunks": 3, "replaced": 0}
    code, out, _ = run(cli_env, data, "knowledge", "calibrate", str(questions), "--json")
    assert code == 0 and json.loads(out)["n"] == 9

    code, out, _ = run(cli_env, data, "ask", "What is the capital of Tuvalu?", "--json")
    assert code == 0
    query = json.loads(out)
    assert query["decision"] in ("parametric", "retrieved") and query["signals"]["early_estimate"] is not None

    code, out, _ = run(cli_env, data, "ask", "What is the capital of Tuvalu?", "--retrieval", "always")
    assert code == 0 and "from retrieved passages" in out and "tuvalu.md" in out

    code, out, _ = run(cli_env, data, "knowledge", "list")
    lines = out.strip().splitlines()
    assert code == 0 and lines[0].split() == ["ID", "DECISION", "SECONDS", "QUESTION"] and len(lines) == 4
    code, out, _ = run(cli_env, data, "knowledge", "show", query["id"], "--json")
    assert code == 0 and json.loads(out)["id"] == query["id"]

    code, out, _ = run(cli_env, data, "knowledge", "eval", str(questions), "--mode", "never", "--json")
    assert code == 0 and json.loads(out)["never"]["n"] == 9 and json.loads(out)["never"]["retrieval_rate"] == 0.0


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["ask", ""], "empty"),
        (["knowledge", "ingest", "/no/such/file.md"], "No such file"),
        (["knowledge", "calibrate", "/no/such.jsonl"], "No such dataset"),
        (["knowledge", "show", "nope"], "No knowledge query"),
    ],
)
def test_cli_bad_input_is_one_line_and_exit_2(
    cli_env: dict[str, str], tmp_path: Path, args: list[str], message: str
) -> None:
    code, _, err = run(cli_env, tmp_path, *args)
    assert code == 2 and message in err and len(err.strip().splitlines()) == 1


def test_cli_ingests_pdf_html_docx_lists_and_deletes(cli_env: dict[str, str], tmp_path: Path) -> None:
    from tests.document_files import make_docx, make_html, make_pdf

    folder = tmp_path / "mixed"
    folder.mkdir()
    (folder / "tuvalu.pdf").write_bytes(make_pdf(["Tuvalu: its capital is Funafuti."]))
    (folder / "niue.html").write_bytes(make_html("Niue", ["Its capital is Alofi."]))
    (folder / "chad.docx").write_bytes(make_docx([(None, "Chad: its capital is N'Djamena.")]))
    data = tmp_path / "data"
    code, out, err = run(cli_env, data, "knowledge", "ingest", str(folder), "--json")
    assert code == 0 and json.loads(out)["documents"] == 3, err
    code, out, _ = run(cli_env, data, "knowledge", "documents")
    lines = out.strip().splitlines()
    assert code == 0 and lines[0].split() == ["ID", "CHUNKS", "CHARS", "COLLECTION", "SOURCE"] and len(lines) == 4
    pdf_id = next(line.split()[0] for line in lines if line.endswith("tuvalu.pdf"))
    code, out, _ = run(cli_env, data, "knowledge", "delete", pdf_id)
    assert code == 0 and "tuvalu.pdf" in out
    code, out, _ = run(cli_env, data, "knowledge", "delete", f"{folder}/niue.html", "--json")
    assert code == 0 and json.loads(out)["source"].endswith("niue.html")
    code, out, _ = run(cli_env, data, "knowledge", "documents", "--json")
    assert [d["source"].rsplit("/", 1)[-1] for d in json.loads(out)["items"]] == ["chad.docx"]
    code, _, err = run(cli_env, data, "knowledge", "delete", "nothing.md")
    assert code != 0 and "No document" in err and len(err.strip().splitlines()) == 1
